"""The supervisor of one simulated board: owns its addresses, powers it on and off, takes control requests.

It runs detached (``python -m harness.sim.supervisor STATE_DIR``) for the board's whole life. It reserves the
adb and ssh ports, creates the console pty, listens on the control port, and runs the board's OS
(:mod:`harness.sim.board_os`) as a child process: power off kills that child (its board commands die with it),
a reboot is the child exiting with :data:`EXIT_REBOOT` and being started again. Addresses never change.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import termios
import threading
import time
import tty
from pathlib import Path
from typing import Any, Callable

import paramiko

from harness.sim import board_exec, ports, rootfs, state
from harness.sim import faults as faults_mod
from harness.sim.profile import load as load_profile
from harness.sim.sshd import load_or_create_host_key

EXIT_POWEROFF = state.EXIT_POWEROFF
EXIT_REBOOT = state.EXIT_REBOOT
log = logging.getLogger("npu-hil.sim.supervisor")


class Supervisor:
    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir
        self.config = state.read_json(state_dir / "config.json") or {}
        self.profile = load_profile(self.config["profile"])
        self.faults = faults_mod.FaultSet(state_dir)
        self.child: subprocess.Popen | None = None
        self.power = "off"
        self.lock = threading.RLock()
        self.stopping = threading.Event()
        self.boots = 0

    # -- set-up --------------------------------------------------------------------------------------------
    def prepare(self) -> None:
        rootfs.build(self.dir / "root", self.profile)
        self._keys()
        self.adb_reserved = ports.reserve()
        self.ssh_reserved = ports.reserve()
        self.control = ports.listen_ephemeral()
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        attrs = termios.tcgetattr(self.slave)
        speed = getattr(termios, f"B{self.profile.console_baud}", termios.B115200)
        attrs[4] = attrs[5] = speed
        termios.tcsetattr(self.slave, termios.TCSANOW, attrs)
        pts = os.ttyname(self.slave)
        link = self.dir / "console"
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(pts)
        host = "127.0.0.1"
        self.endpoints = {
            "name": self.config["name"], "profile": self.profile.name, "chip": self.profile.chip,
            "npu": self.profile.npu, "state_dir": str(self.dir), "supervisor_pid": os.getpid(),
            "console": {"path": pts, "link": str(link), "baud": self.profile.console_baud, "login": "root",
                        "password": self.profile.root_password, "hostname": self.profile.hostname},
            "adb": {"serial": f"{host}:{self.adb_reserved.getsockname()[1]}", "host": host,
                    "port": self.adb_reserved.getsockname()[1]},
            "ssh": {"host": host, "port": self.ssh_reserved.getsockname()[1], "user": "root",
                    "password": self.profile.root_password, "key": str(self.dir / "id_ecdsa"),
                    "host_key": self.host_key_line},
            "control": f"{host}:{self.control.getsockname()[1]}",
        }
        state.write_json(self.dir / "endpoints.json", self.endpoints)

    def _keys(self) -> None:
        """A host key kept across power cycles (so known_hosts stays valid) and a client key for key login."""
        host_key = load_or_create_host_key(self.dir / state.HOST_KEY_FILE)
        self.host_key_line = f"{host_key.get_name()} {host_key.get_base64()}"
        client_key_path = self.dir / "id_ecdsa"
        if not client_key_path.exists():
            key = paramiko.ECDSAKey.generate()
            key.write_private_key_file(str(client_key_path))
            client_key_path.chmod(0o600)
            (self.dir / "id_ecdsa.pub").write_text(f"{key.get_name()} {key.get_base64()} npu-hil\n")
        ssh_dir = self.dir / "root" / "root" / ".ssh"
        ssh_dir.mkdir(parents=True, exist_ok=True)
        (ssh_dir / "authorized_keys").write_text((self.dir / "id_ecdsa.pub").read_text())

    # -- power ---------------------------------------------------------------------------------------------
    # The board process dies with the thread that started it (PR_SET_PDEATHSIG is per thread), so every start
    # happens on one long-lived thread: callers queue the request and wait for it.
    def start_power_thread(self) -> None:
        self.requests: queue.Queue[tuple[Callable[[], None], threading.Event]] = queue.Queue()
        threading.Thread(target=self._power_loop, name="power", daemon=True).start()

    def _power_loop(self) -> None:
        while True:
            action, done = self.requests.get()
            try:
                action()
            except Exception:
                log.exception("power action failed")
            finally:
                done.set()

    def _on_power_thread(self, action: Callable[[], None], wait: bool = True) -> None:
        if threading.current_thread().name == "power":
            action()
            return
        done = threading.Event()
        self.requests.put((action, done))
        if wait:
            done.wait(60)

    def power_on(self) -> None:
        self._on_power_thread(self._power_on)

    def _power_on(self) -> None:
        with self.lock:
            if self.child and self.child.poll() is None:
                return
            self.boots += 1
            self._status("booting")
            env = dict(os.environ, NPU_HIL_SIM_CONSOLE_FD=str(self.master),
                       NPU_HIL_SIM_ADB_PORT=str(self.endpoints["adb"]["port"]),
                       NPU_HIL_SIM_SSH_PORT=str(self.endpoints["ssh"]["port"]),
                       NPU_HIL_SIM_BOOT=str(self.boots))
            with open(self.dir / "board.log", "ab") as board_log:
                self.child = subprocess.Popen([sys.executable, "-m", "harness.sim.board_os", str(self.dir)],
                                              pass_fds=(self.master,), env=env, stdin=subprocess.DEVNULL,
                                              stdout=board_log, stderr=subprocess.STDOUT,
                                              preexec_fn=board_exec._die_with_parent)
            self.power = "on"
            threading.Thread(target=self._watch_child, args=(self.child,), daemon=True).start()

    def power_off(self) -> None:
        with self.lock:
            self.power = "off"
            child, self.child = self.child, None
        if child and child.poll() is None:
            child.kill()  # board commands carry PDEATHSIG, so they die with it
            child.wait(10)
        self._status("off")

    def _watch_child(self, child: subprocess.Popen) -> None:
        code = child.wait()
        with self.lock:
            if child is not self.child or self.stopping.is_set():
                return  # killed on purpose by power_off/cycle
            self.child = None
            if code == EXIT_REBOOT:
                log.info("board rebooting")
            elif code == EXIT_POWEROFF:
                self.power = "off"
                self._status("off")
                return
            else:
                log.error("board OS exited with %s; see board.log", code)
                self.power = "off"
                self._status("crashed", exit_code=code)
                return
        self._on_power_thread(self._power_on, wait=False)

    def _status(self, name: str, **extra: Any) -> None:
        state.write_json(self.dir / "status.json", {"state": name, "boot": self.boots, "since": time.time(),
                                                     "supervisor_pid": os.getpid(), **extra})

    # -- control -------------------------------------------------------------------------------------------
    def serve_control(self) -> None:
        self.control.settimeout(1.0)
        while not self.stopping.is_set():
            try:
                conn, _ = self.control.accept()
            except socket.timeout:
                self._check_owner()
                continue
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _check_owner(self) -> None:
        owner = self.config.get("owner_pid")
        if owner and not state.pid_alive(owner):
            log.warning("owner process %s is gone: shutting the board down", owner)
            self.shutdown()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(30)
            try:
                request = json.loads(conn.makefile().readline() or "{}")
                reply = {"ok": True, **(self.dispatch(request) or {})}
            except (ValueError, KeyError, faults_mod.UnknownFault) as exc:
                reply = {"ok": False, "error": str(exc)}
            try:
                conn.sendall((json.dumps(reply) + "\n").encode())
            except OSError:
                pass

    def dispatch(self, request: dict[str, Any]) -> dict[str, Any] | None:
        op = request.get("op")
        if op == "status":
            return {"status": state.read_json(self.dir / "status.json"), "faults": self.faults.active(),
                    "power": self.power}
        if op == "fault":
            self.faults.set(request["fault"])
            return {"faults": self.faults.active()}
        if op == "clear":
            self.faults.clear(request.get("fault"))
            return {"faults": self.faults.active()}
        if op == "power":
            action = request["action"]
            if action not in ("on", "off", "cycle"):
                raise ValueError(f"power action must be on, off or cycle, not {action!r}")
            if action in ("off", "cycle"):
                self.power_off()
            if action in ("on", "cycle"):
                if action == "cycle":
                    time.sleep(float(request.get("off_seconds", 0.2)))
                self.power_on()
            return {"power": self.power}
        if op == "down":
            threading.Thread(target=self.shutdown, daemon=True).start()
            return {}
        raise ValueError(f"unknown control operation {op!r}")

    def shutdown(self) -> None:
        if self.stopping.is_set():
            return
        self.stopping.set()
        self.power_off()
        self._status("down")
        for sock in (self.control, self.adb_reserved, self.ssh_reserved):
            sock.close()
        (self.dir / "supervisor.pid").unlink(missing_ok=True)
        os._exit(0)


def main(argv: list[str]) -> int:
    state_dir = Path(argv[0]).resolve()
    logging.basicConfig(filename=state_dir / "supervisor.log", level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s")
    supervisor = Supervisor(state_dir)
    signal.signal(signal.SIGTERM, lambda *_: supervisor.shutdown())
    try:
        supervisor.faults.write(supervisor.config.get("faults", {}))
        supervisor.prepare()
        supervisor.start_power_thread()
        (state_dir / "supervisor.pid").write_text(str(os.getpid()))
        if supervisor.config.get("power_on", True):
            supervisor.power_on()
        else:
            supervisor._status("off")
    except Exception as exc:
        log.exception("supervisor failed to start")
        state.write_json(state_dir / "status.json", {"state": "failed", "error": f"{type(exc).__name__}: {exc}"})
        return 1
    supervisor.serve_control()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
