"""The simulated board's serial console: boot log, ``login:``, then a real busybox shell, all on a pty.

The harness reaches it exactly as it reaches a real board's UART: it opens the pty's slave with pyserial. So
this module behaves like the far end of a serial line: it prints the boot log, plays getty/login (echo, no echo
for the password, ``Login incorrect``), then proxies bytes between the line and an interactive busybox shell
that runs on its *own* pty, so the shell's line discipline (echo, ``^C`` -> SIGINT, ``\\n`` -> ``\\r\\n``) is a
real kernel's, not an imitation.

The caller creates the line's pty, sets its slave raw at the profile's baud and keeps both ends open; the master
is handed here (and set non-blocking, so a stalled reader can never freeze the board's other threads).
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import select
import subprocess
import threading
import time
from typing import Sequence

from harness.sim import board_exec, bootlog
from harness.sim.context import BoardContext

log = logging.getLogger(__name__)

#: How long a write may make no progress (nobody reading the line) before the bytes are lost, as on a UART.
WRITE_STALL_S = 5.0
#: Delay before ``Login incorrect``, as login(1) has (shortened: the harness pays it on every bad password).
LOGIN_FAIL_DELAY_S = 0.3
#: The boot log stops after the kernel line that starts with this when ``boot-hang`` is active.
HANG_AFTER = "Galcore version"
HANG_AFTER_RKNPU2 = "[drm] Initialized rknpu"
#: ``panic-at-boot`` replaces the root mount (this line) with the VFS panic.
PANIC_INSTEAD_OF = "EXT4-fs (mmcblk0p7)"


def panic_lines(profile_kernel: str, at: float) -> list[str]:
    """A real-looking kernel panic for a root filesystem that cannot be mounted (mmcblk0p7 = 179,7)."""
    parts = profile_kernel.split()
    release = parts[2] if len(parts) > 2 else "4.19.111"
    reason = "VFS: Unable to mount root fs on unknown-block(179,7)"
    body = [
        'VFS: Cannot open root device "mmcblk0p7" or unknown-block(179,7): error -6',
        'Please append a correct "root=" boot option; here are the available partitions:',
        "b300         7634944 mmcblk0 ",
        " driver: mmcblk",
        f"Kernel panic - not syncing: {reason}",
        f"CPU: 0 PID: 1 Comm: swapper/0 Not tainted {release} #1",
        "Hardware name: Generic DT based system",
        "[<b010f408>] (unwind_backtrace) from [<b010b6c4>] (show_stack+0x10/0x14)",
        "[<b010b6c4>] (show_stack) from [<b0a1d3a0>] (dump_stack+0x90/0xa4)",
        "[<b0a1d3a0>] (dump_stack) from [<b0124c8c>] (panic+0x100/0x2a0)",
        "[<b0124c8c>] (panic) from [<b0f01578>] (mount_block_root+0x1d4/0x27c)",
        "[<b0f01578>] (mount_block_root) from [<b0f01870>] (prepare_namespace+0x150/0x190)",
        "[<b0f01870>] (prepare_namespace) from [<b0a30b28>] (kernel_init+0x8/0x110)",
        "[<b0a30b28>] (kernel_init) from [<b01010e8>] (ret_from_fork+0x14/0x2c)",
        "CPU1: stopping",
        f"---[ end Kernel panic - not syncing: {reason} ]---",
    ]
    return [bootlog.stamp(at + i * 0.000011, line) for i, line in enumerate(body)]


class Console:
    """One board's serial console on the master side of a pty (see the module docstring)."""

    def __init__(self, ctx: BoardContext, master_fd: int) -> None:
        self.ctx = ctx
        self.fd = master_fd
        flags = fcntl.fcntl(master_fd, fcntl.F_GETFL)
        fcntl.fcntl(master_fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._shell: subprocess.Popen | None = None
        self._pending = b""  # bytes read from the line but not consumed by the login prompt yet
        self._skip_lf = False  # a "\r" ended the last line: its "\n" (from a CRLF terminal) is not a new line

    @property
    def shell(self) -> subprocess.Popen | None:
        """The current (or last) login shell's process, for supervisors and tests that must see it end."""
        return self._shell

    # -- output --------------------------------------------------------------------------------------------
    def write(self, text: str) -> None:
        """Print text on the console as a tty with ONLCR would (``\\n`` -> ``\\r\\n``); thread-safe."""
        self._write_bytes(text.replace("\n", "\r\n").encode("utf-8", "replace"))

    def _write_bytes(self, data: bytes) -> None:
        """Write every byte, waiting while the line is full; give up only after WRITE_STALL_S of no progress."""
        with self._write_lock:
            view = memoryview(data)
            stalled_since = time.monotonic()
            while view:
                try:
                    done = os.write(self.fd, view)
                except BlockingIOError:
                    done = 0
                except OSError as exc:  # EIO: the line's other end is gone; what a UART sends then is lost
                    log.debug("console write failed: %s", exc)
                    return
                if done:
                    view = view[done:]
                    stalled_since = time.monotonic()
                    continue
                if time.monotonic() - stalled_since > WRITE_STALL_S or self._stop.is_set():
                    log.warning("console: nobody reads the line, %d bytes lost", len(view))
                    return
                select.select([], [self.fd], [], 0.1)

    def _pause(self, seconds: float) -> bool:
        """Sleep (interruptible by stop()); False when the console was stopped meanwhile."""
        return not self._stop.wait(max(0.0, seconds))

    # -- boot ----------------------------------------------------------------------------------------------
    def boot(self, kernel_lines: Sequence[tuple[float, str]], *, pace: float = 0.6,
             init: Sequence[str] | None = None, reset_after: str | None = None) -> bool:
        """Print U-Boot, the kernel (timestamped) and init; True when the boot reached userspace.

        ``pace`` is the whole boot's duration: a quarter for U-Boot, half for the kernel (spread by the lines'
        own timestamps), a quarter for init. ``panic-at-boot`` and ``boot-hang`` stop the board here (False).
        ``init`` replaces the normal system's init lines (recovery prints its own); ``reset_after`` ends the
        boot (False) after the kernel line starting with it, as a board that resets there (``boot-loop``).
        """
        self._stop.clear()  # a new power-on after stop(); stop() during the boot still cuts it short
        profile = self.ctx.profile
        faults = self.ctx.faults
        panic, hang = "panic-at-boot" in faults, "boot-hang" in faults
        uboot = bootlog.uboot_lines(profile)
        for line in uboot:
            self.write(line + "\n")
            if not self._pause(pace * 0.25 / len(uboot)):
                return False
        last = kernel_lines[-1][0] if kernel_lines else 1.0
        previous = 0.0
        hang_marker = HANG_AFTER if profile.npu == "rknpu1" else HANG_AFTER_RKNPU2
        for seconds, message in kernel_lines:
            if not self._pause(pace * 0.5 * (seconds - previous) / (last or 1.0)):
                return False
            previous = seconds
            if panic and message.startswith(PANIC_INSTEAD_OF):
                self.write("".join(line + "\n" for line in panic_lines(profile.kernel, seconds)))
                log.info("console: kernel panic at boot (fault panic-at-boot)")
                return False
            self.write(bootlog.stamp(seconds, message) + "\n")
            if reset_after is not None and message.startswith(reset_after):
                return False
            if hang and message.startswith(hang_marker):
                log.info("console: boot hangs after %r (fault boot-hang)", message)
                return False
        init = bootlog.init_lines(profile) if init is None else init
        for line in init:
            if not self._pause(pace * 0.25 / len(init)):
                return False
            self.write(line + "\n")
        return True

    # -- login and shell -----------------------------------------------------------------------------------
    def serve_login(self) -> None:
        """Start the getty/login/shell loop in a background thread (returns at once)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._serve, name=f"console-{self.ctx.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the login thread and kill the shell (its whole PID namespace dies with it)."""
        self._stop.set()
        if self._shell is not None:
            board_exec.kill(self._shell, timeout=5)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self._thread = None

    def _serve(self) -> None:
        self._drain_input()  # like agetty's tcflush: keys typed during boot are not a user name
        profile = self.ctx.profile
        try:
            while not self._stop.is_set():
                self.write(f"\n{profile.hostname} login: ")
                user = self._read_line(echo=True)
                if user is None:
                    return
                if not user:
                    continue
                self.write("Password: ")
                password = self._read_line(echo=False)
                if password is None:
                    return
                if user == "root" and password == profile.root_password:
                    self._run_shell()
                else:
                    if not self._pause(LOGIN_FAIL_DELAY_S):
                        return
                    self.write("\nLogin incorrect\n")
        except Exception:  # never let a console bug pass silently: it would look like a hung board
            log.exception("console %s: login loop failed", self.ctx.name)

    def _drain_input(self) -> None:
        self._pending = b""
        while True:
            try:
                if not os.read(self.fd, 4096):
                    return
            except OSError:
                return

    def _read_byte(self) -> int | None:
        """The next byte the user typed, or None once stopped."""
        while not self._pending:
            if self._stop.is_set():
                return None
            ready, _, _ = select.select([self.fd], [], [], 0.1)
            if not ready:
                continue
            try:
                self._pending = os.read(self.fd, 4096)
            except BlockingIOError:
                continue
            except OSError as exc:
                if exc.errno == errno.EIO:  # nobody holds the slave open right now: wait for a terminal
                    self._stop.wait(0.1)
                    continue
                raise
        byte, self._pending = self._pending[0], self._pending[1:]
        return byte

    def _read_line(self, *, echo: bool) -> str | None:
        """A line as getty/login read it: ends at CR or LF (CRLF counts once), backspace edits, ^C/^U clear."""
        line = bytearray()
        while True:
            byte = self._read_byte()
            if byte is None:
                return None
            if byte == 0x0A and self._skip_lf:
                self._skip_lf = False
                continue
            self._skip_lf = byte == 0x0D
            if byte in (0x0D, 0x0A):
                self.write("\n")
                return line.decode("utf-8", "replace")
            if byte in (0x08, 0x7F):
                if line:
                    line.pop()
                    if echo:
                        self._write_bytes(b"\b \b")
            elif byte in (0x03, 0x15):
                if echo and line:
                    self._write_bytes(b"\b \b" * len(line))
                line.clear()
            elif byte >= 0x20:
                line.append(byte)
                if echo:
                    self._write_bytes(bytes([byte]))

    def _run_shell(self) -> None:
        """Run the login shell on its own pty and proxy bytes both ways until it exits."""
        shell_master, shell_slave = os.openpty()
        try:
            # getty's job on a real board: the console pty becomes the shell's controlling tty (^C works)
            self._shell = self.ctx.spawn_shell(None, login=True, controlling_tty=True,
                                               stdin=shell_slave, stdout=shell_slave, stderr=shell_slave)
        finally:
            os.close(shell_slave)
        try:
            self._proxy(shell_master)
        finally:
            os.close(shell_master)
            board_exec.kill(self._shell, timeout=5)

    def _proxy(self, shell_master: int) -> None:
        """Copy line -> shell and shell -> line byte for byte (the shell's pty already turned \\n into \\r\\n)."""
        fcntl.fcntl(shell_master, fcntl.F_SETFL, fcntl.fcntl(shell_master, fcntl.F_GETFL) | os.O_NONBLOCK)
        to_shell, self._pending = self._pending, b""  # typed ahead of the shell: the shell gets it
        if self._skip_lf and to_shell.startswith(b"\n"):
            to_shell = to_shell[1:]  # the LF of the password's CRLF
        while not self._stop.is_set():
            readers = [shell_master] + ([self.fd] if len(to_shell) < 65536 else [])
            ready, writable, _ = select.select(readers, [shell_master] if to_shell else [], [], 0.1)
            if shell_master in ready:
                try:
                    data: bytes | None = os.read(shell_master, 65536)
                except BlockingIOError:
                    data = None
                except OSError:  # EIO: every holder of the shell's pty closed it, i.e. the shell exited
                    return
                if data == b"":
                    return
                if data:
                    self._write_bytes(data)
            if self.fd in ready:
                try:
                    to_shell += os.read(self.fd, 65536)
                except BlockingIOError:
                    pass
                except OSError:  # EIO: no terminal holds the line open at the moment
                    self._stop.wait(0.1)
            if writable and to_shell:
                try:
                    to_shell = to_shell[os.write(shell_master, to_shell):]
                except BlockingIOError:
                    pass
                except OSError:
                    return
            if not ready and self._shell is not None and self._shell.poll() is not None:
                return
