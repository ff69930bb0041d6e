"""The simulated board's kernel: its log (dmesg), its /proc and /sys, its processes, reboot requests.

/proc and /sys on the board are plain folders this class keeps up to date, because the board's facts (the
device tree's ``compatible``, ``/sys/kernel/debug/rknpu/version``, rknn_server's ``/proc/PID/fd``) must be
what the profile says, not what the host runs. The kernel also serves the gate operations that need it:
``reboot``/``poweroff``/``halt``, ``rknn_server start|stop|restart|run`` and ``dmesg-clear``.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from typing import Callable

from harness.sim import bootlog, foreign_exec, partitions
from harness.sim.context import BoardContext
from harness.sim.gate import Gate, GateReply, GateRequest

#: File descriptors rknn_server opens at start, and its RLIMIT_NOFILE (small so a leak shows within a soak).
SERVER_BASE_FDS = 6
FD_LIMIT = 128


class Kernel:
    def __init__(self, ctx: BoardContext, *, console_write: Callable[[str], None] | None = None) -> None:
        self.ctx = ctx
        self.proc = ctx.root / "proc"
        self.console_write = console_write or (lambda text: None)
        self.boot_time = time.monotonic()
        self._lock = threading.RLock()
        self._next_pid = 300
        self.server_pid: int | None = None
        self.server_loglevel = 0
        self.reboot_requested = threading.Event()
        self.reboot_mode = ""
        ctx.kernel = self

    # -- log -----------------------------------------------------------------------------------------------
    def uptime(self) -> float:
        return time.monotonic() - self.boot_time

    def log(self, message: str, *, at: float | None = None) -> None:
        """Append a line to the kernel log, as ``printk`` would (also echoed to the console for errors)."""
        line = bootlog.stamp(self.uptime() if at is None else at, message)
        with self._lock, open(self.proc / "kmsg", "a") as kmsg:
            kmsg.write(line + "\n")

    # -- procfs --------------------------------------------------------------------------------------------
    def populate(self, *, driver_version: str, gate_address: str) -> None:
        """Write the board's /proc and /sys for this boot (the folders were emptied by the reboot)."""
        profile = self.ctx.profile
        self.proc.mkdir(exist_ok=True)
        (self.proc / "kmsg").write_text("")
        for seconds, message in bootlog.kernel_lines(profile, driver_version):
            self.log(message, at=seconds)
        (self.proc / "version").write_text(profile.kernel + "\n")
        (self.proc / "cpuinfo").write_text(f"processor\t: 0\nmodel name\t: {profile.cpu}\nHardware\t: "
                                           f"Generic DT based system\n")
        dt = self.proc / "device-tree"
        dt.mkdir(exist_ok=True)
        (dt / "compatible").write_bytes(b"".join(c.encode() + b"\0" for c in profile.compatible))
        (dt / "model").write_bytes(profile.model.encode() + b"\0")
        (self.proc / "sim-gate").write_text(gate_address + "\n")
        foreign_exec.write_loader(self.proc)
        (self.proc / "mounts").write_text("/dev/root / ext4 rw,relatime 0 0\ntmpfs /tmp tmpfs rw 0 0\n"
                                          "/dev/mmcblk0p8 /userdata ext4 rw,relatime 0 0\n")
        partitions.write(self.ctx.root, self.proc)
        self.write_driver_files(driver_version)

    def reload_driver(self, driver_version: str) -> None:
        """A different NPU driver module loaded while the board runs (rmmod + insmod): logged as the kernel would."""
        for _, message in bootlog.kernel_lines(self.ctx.profile, driver_version):
            if "galcore" in message.lower() or "rknpu" in message.lower():
                self.log(message)
        self.write_driver_files(driver_version)

    def write_driver_files(self, driver_version: str) -> None:
        debug = self.ctx.root / "sys" / "kernel" / "debug" / "rknpu"
        if self.ctx.profile.npu == "rknpu2":
            debug.mkdir(parents=True, exist_ok=True)
            (debug / "version").write_text(f"RKNPU driver: v{driver_version}\n")
            (debug / "load").write_text("NPU load:  Core0:  0%, Core1:  0%, Core2:  0%,\n")
            (self.proc / "rknpu").mkdir(exist_ok=True)
            (self.proc / "rknpu" / "version").write_text(f"RKNPU driver: v{driver_version}\n")
        else:
            shutil.rmtree(debug, ignore_errors=True)

    # -- processes -----------------------------------------------------------------------------------------
    def start_process(self, comm: str, cmdline: list[str], fds: int = 3, rss_kb: int = 6212,
                      pid: int | None = None) -> int:
        """A process in the board's /proc: one the simulator runs itself (its next PID), or a real board program
        known by its own ``pid`` (a C program on the runtime library); FileExistsError when that PID is taken."""
        with self._lock:
            if pid is None:
                pid = self._next_pid
                self._next_pid += 1 + (pid % 7)
            folder = self.proc / str(pid)
            (folder / "fd").mkdir(parents=True)
            (folder / "comm").write_text(comm + "\n")
            (folder / "cmdline").write_bytes(b"".join(a.encode() + b"\0" for a in cmdline))
            (folder / "status").write_text(f"Name:\t{comm}\nState:\tS (sleeping)\nPid:\t{pid}\nPPid:\t1\n"
                                           f"Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nVmRSS:\t{rss_kb:8d} kB\n")
            # what busybox ps reads: pid (comm) state ppid pgrp session tty tpgid flags ... (man 5 proc)
            (folder / "stat").write_text(f"{pid} ({comm}) S 1 {pid} {pid} 0 -1 4194560 612 0 0 0 3 5 0 0 20 0 "
                                         f"4 0 {int(self.uptime() * 100)} 99328000 1553 4294967295 0 0 0 0 0 0 0 "
                                         f"0 0 0 0 0 0 17 0 0 0 0 0 0\n")
            self.add_fds(pid, fds)
            return pid

    def stop_process(self, pid: int) -> None:
        shutil.rmtree(self.proc / str(pid), ignore_errors=True)

    def fd_count(self, pid: int) -> int:
        try:
            return len(os.listdir(self.proc / str(pid) / "fd"))
        except FileNotFoundError:
            return 0

    def find_process(self, comm: str) -> int | None:
        """The lowest PID whose comm is ``comm`` (what ``pidof`` would list last), or None."""
        for entry in sorted((e for e in os.listdir(self.proc) if e.isdigit()), key=int):
            try:
                if (self.proc / entry / "comm").read_text().strip() == comm:
                    return int(entry)
            except OSError:
                continue
        return None

    def rss_kb(self, pid: int) -> int | None:
        """VmRSS of process ``pid`` in kB, None when it is gone."""
        try:
            text = (self.proc / str(pid) / "status").read_text()
        except OSError:
            return None
        return next((int(line.split()[1]) for line in text.splitlines() if line.startswith("VmRSS:")), None)

    def add_rss(self, pid: int, kb: int) -> int | None:
        """Grow process ``pid``'s resident memory by ``kb`` (a leak per inference); the new VmRSS."""
        with self._lock:
            status = self.proc / str(pid) / "status"
            now = self.rss_kb(pid)
            if now is None:
                return None
            text = status.read_text()
            status.write_text(re.sub(r"VmRSS:\s*\d+ kB", f"VmRSS:\t{now + int(kb):8d} kB", text))
            return now + int(kb)

    def add_fds(self, pid: int, count: int) -> int:
        """Open ``count`` more descriptors in process ``pid``; raises OSError(EMFILE) past the limit."""
        with self._lock:
            fd_dir = self.proc / str(pid) / "fd"
            have = self.fd_count(pid)
            if have + count > FD_LIMIT:
                raise OSError(24, "Too many open files")
            targets = ["/dev/null", "/dev/console", "/dev/console"]
            device = "/dev/galcore" if self.ctx.profile.npu == "rknpu1" else "/dev/dri/renderD129"
            for fd in range(have, have + count):
                target = targets[fd] if fd < len(targets) else device
                os.symlink(target, fd_dir / str(fd))
            return have + count

    # -- rknn_server ---------------------------------------------------------------------------------------
    def start_server(self, loglevel: int = 0) -> int:
        with self._lock:
            if self.server_pid is not None:
                return self.server_pid
            server = self.ctx.profile.paths.server_bin
            self.server_pid = self.start_process("rknn_server", [server], fds=SERVER_BASE_FDS)
            self.server_loglevel = loglevel
        version = self.ctx.extra.get("versions", self.ctx.profile.versions).rknn_server
        self.console_write(f"start rknn server, version:{version}\n")
        if loglevel >= 3:
            self.console_write(f"I NPUTransfer: Starting NPU Transfer Server, Transfer version 2.1.0 "
                               f"(log level {loglevel})\n")
        return self.server_pid

    def stop_server(self) -> None:
        with self._lock:
            if self.server_pid is not None:
                self.stop_process(self.server_pid)
                self.server_pid = None

    # -- reboot --------------------------------------------------------------------------------------------
    def request_reboot(self, mode: str = "") -> None:
        self.reboot_mode = mode
        self.reboot_requested.set()

    # -- gate operations -----------------------------------------------------------------------------------
    def register(self, gate: Gate) -> None:
        gate.register("reboot", self._gate_reboot)
        gate.register("poweroff", self._gate_reboot)
        gate.register("halt", self._gate_reboot)
        gate.register("rknn_server", self._gate_server)
        gate.register("dmesg-clear", self._gate_dmesg_clear)

    def _gate_reboot(self, request: GateRequest, reply: GateReply) -> int:
        op, args = request.args[0], [a for a in request.args[1:] if not a.startswith("-")]
        mode = "poweroff" if op in ("poweroff", "halt") else (args[0] if args else "")
        self.log(f"reboot: Restarting system with command '{mode}'" if op == "reboot" else "reboot: Power down")
        self.request_reboot(mode)
        return 0

    def _gate_server(self, request: GateRequest, reply: GateReply) -> int:
        action = request.args[1] if len(request.args) > 1 else "run"
        try:
            loglevel = int(request.args[2]) if len(request.args) > 2 else 0
        except ValueError:
            loglevel = 0
        if action == "stop":
            self.stop_server()
            return 0
        if action == "restart":
            self.stop_server()
        elif action == "run" and self.server_pid is not None:
            reply.err("rknn_server: bind port failed, another rknn_server is running")
            return 1
        pid = self.start_server(loglevel)
        reply.out(f"rknn_server started, pid {pid}" if action != "run" else "")
        return 0

    def _gate_dmesg_clear(self, request: GateRequest, reply: GateReply) -> int:
        with self._lock:
            (self.proc / "kmsg").write_text("")
        return 0
