"""One adb server the harness owns: a known binary, its own port, its own HOME/TMPDIR, a PID we can kill.

Why own it: adbutils silently runs ``adb start-server`` on the default port 5037 (with whatever ``adb`` is on
PATH, or one it bundles) when it cannot reach a server. That server is shared with every other tool on the
host, keeps its keys in the user's ~/.android and probes 127.0.0.1:5555-5585 for emulators. A harness that
must say *whose* fault a failure is cannot stand on that, so this module starts ``adb nodaemon server`` as a
child process with an isolated environment (see docs/reference/adb-notes.md), and hands out adbutils
clients that can never start a server by themselves. ``AdbServer.remote()`` wraps a lab's server that
someone else runs (``adb -a -P 5037 nodaemon server``): we talk to it but never start or stop it.
:class:`DeadlineSocket` gives a stream to the server one hard deadline; :func:`state_error` turns the
server's device states ("offline", "no permissions (...)") into errors that carry their fix.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import adbutils
from adbutils.errors import AdbError

from harness.errors import ConfigError, LinkDown

_APT_FIX = "sudo apt-get install adb (Debian/Ubuntu), or set the adb path in boards.toml"

#: Variables of the caller's environment that would make our server share state with another one.
_DROPPED_ENV = ("ANDROID_SERIAL", "ANDROID_ADB_SERVER_ADDRESS", "ANDROID_ADB_SERVER_HOST",
                "ADB_VENDOR_KEYS", "ANDROID_VENDOR_KEYS", "ADB_TRACE", "ANDROID_USER_HOME")


class _NoSpawnConnection(adbutils.AdbConnection):
    """adbutils' connection minus its fallback of starting a server on a failed connect."""

    def _safe_connect(self):  # type: ignore[override]
        return self._create_socket()


class ServerClient(adbutils.AdbClient):
    """An ``adbutils.AdbClient`` bound to one server; a refused connection is an error, never a new server."""

    def __init__(self, host: str, port: int, socket_timeout: float | None) -> None:
        super().__init__(host=host, port=port, socket_timeout=socket_timeout)
        self.default_timeout = socket_timeout

    def make_connection(self, timeout: float | None = None) -> adbutils.AdbConnection:
        conn = _NoSpawnConnection(self.host, self.port)
        wanted = timeout or self.default_timeout
        if wanted:
            conn.conn.settimeout(wanted)
        return conn

    def devices_raw(self) -> list[tuple[str, str]]:
        """``(serial, state)`` pairs as the server prints them.

        adbutils' ``list()`` splits on any whitespace, which cuts "no permissions (user ... plugdev group)"
        down to "no"; the server separates serial and state with a tab, so split on that alone.
        """
        with self.make_connection() as c:
            c.send_command("host:devices")
            c.check_okay()
            text = c.read_string_block()
        pairs = []
        for line in text.splitlines():
            serial, tab, state = line.partition("\t")
            if tab:
                pairs.append((serial.strip(), state.strip()))
        return pairs


class DeadlineSocket:
    """A stream socket to the server whose every operation gets the time left until ONE deadline.

    adbutils' timeouts are per recv (an inactivity timeout): a command that prints a line a second never
    times out. Arming each operation with what is left of the overall deadline makes it a hard one.
    """

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock, self.deadline = sock, deadline

    def _arm(self) -> None:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("deadline passed")
        self.sock.settimeout(left)

    def sendall(self, data: bytes) -> None:
        self._arm()
        self.sock.sendall(data)

    def recv_exact(self, n: int) -> bytes:
        buf = bytearray(n)
        view, got = memoryview(buf), 0
        while got < n:
            self._arm()
            k = self.sock.recv_into(view[got:])
            if not k:
                raise EOFError(f"connection closed after {got} of {n} bytes")
            got += k
        return bytes(buf)

    def recv_some(self) -> bytes:
        self._arm()
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("end of stream")
        return data


# --- what the server's device states mean, and their fixes --------------------------------------------------
_FIX_OFFLINE = ("the board's adbd does not answer: check that it is booted and adbd runs, replug the USB "
                "cable or power-cycle the board")
_FIX_UNAUTHORIZED = "accept the 'Allow USB debugging' RSA key prompt on the board (or install the host's adbkey.pub)"
_UDEV = ("add a udev rule for Rockchip's USB vendor 0x2207, e.g. "
         "SUBSYSTEM==\"usb\", ATTR{idVendor}==\"2207\", MODE=\"0666\", GROUP=\"plugdev\" in "
         "/etc/udev/rules.d/51-android.rules (or run the SDK's update_rk_usb_rule script), "
         "then `sudo udevadm control --reload-rules && sudo udevadm trigger` and replug the board")
_FIX_PLUGDEV = ("add the user to the plugdev group (`sudo usermod -aG plugdev $USER`, then log in again) and "
                + _UDEV + "; see the troubleshooting manual 4.1.1")
_FIX_UDEV = _UDEV + "; see the troubleshooting manual 4.1.1"


def state_error(serial: str, state: str, seen: list[tuple[str, str]]) -> LinkDown | None:
    """The LinkDown (with its fix) for a device in ``state`` as the adb server prints it; None for ``device``."""
    if state == "device":
        return None
    if state == "offline":
        return LinkDown(f"adb device {serial} is offline", fix=_FIX_OFFLINE)
    if state == "unauthorized":
        return LinkDown(f"adb device {serial} is unauthorized", fix=_FIX_UNAUTHORIZED)
    if state.startswith("no permissions"):
        fix = _FIX_PLUGDEV if "not in the plugdev group" in state else _FIX_UDEV
        return LinkDown(f"adb device {serial}: {state}", fix=fix)
    if state == "absent":
        listed = ", ".join(f"{s} ({st})" for s, st in seen) or "no devices at all"
        return LinkDown(f"adb device {serial} is not listed by the adb server; it sees: {listed}",
                        fix="check the cable/network and the serial or address in boards.toml")
    return LinkDown(f"adb device {serial} is in state {state!r}, not 'device'",
                    fix="boot the board into its normal system (it may be in recovery, bootloader or sideload)")


def find_adb(configured: str | os.PathLike[str] | None = None) -> Path:
    """The adb binary to run: the configured path, else ``adb`` on PATH; LinkDown with the install fix if none."""
    if configured:
        path = Path(configured).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ConfigError(f"adb binary {str(path)!r} does not exist or is not executable", fix=_APT_FIX)
        return path
    found = shutil.which("adb")
    if not found:
        raise LinkDown("no adb binary on PATH", fix=_APT_FIX)
    return Path(found)


class AdbServer:
    """An adb server process on ``host:port`` (started and stopped by us unless made with :meth:`remote`)."""

    def __init__(self, *, port: int, home: Path | None = None, adb: str | os.PathLike[str] | None = None,
                 usb: bool = True, host: str = "127.0.0.1", log: logging.Logger | None = None,
                 managed: bool = True) -> None:
        if not 1 <= int(port) <= 65535:
            raise ConfigError(f"adb server port {port} is not a TCP port")
        if managed and home is None:
            raise ConfigError("an adb server we start needs its own home folder (keys, logs)")
        self.host, self.port, self.usb, self.managed = host, int(port), usb, managed
        self.home = Path(home) if home is not None else None
        self.adb = find_adb(adb) if managed else None
        self.log = log or logging.getLogger(f"harness.adb.server.{self.port}")
        self._proc: subprocess.Popen | None = None

    @classmethod
    def remote(cls, host: str, port: int = 5037, *, log: logging.Logger | None = None) -> "AdbServer":
        """A server someone else runs (a lab host's ``adb -a nodaemon server``): used, never started or stopped."""
        return cls(port=port, host=host, log=log, managed=False)

    # --- process -----------------------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def environment(self) -> dict[str, str]:
        """The server's environment: the caller's minus anything shared, plus an isolated home and port."""
        assert self.home is not None
        env = {k: v for k, v in os.environ.items() if k not in _DROPPED_ENV}
        env.update(HOME=str(self.home), TMPDIR=str(self.home / "tmp"), ANDROID_SDK_HOME=str(self.home),
                   ANDROID_ADB_SERVER_PORT=str(self.port), ADB_MDNS="0", ADB_EMU="0",
                   ADB_USB="1" if self.usb else "0")
        return env

    def start(self, timeout: float = 10.0) -> "AdbServer":
        """Start ``adb -P PORT nodaemon server`` (PID known) and wait until it answers ``host:version``."""
        if not self.managed:
            self.wait_answering(timeout)
            return self
        if self._proc is not None and self._proc.poll() is None:
            return self
        if self.answers():
            raise LinkDown(f"port {self.port} already has an adb server that is not ours",
                           fix=f"stop it (adb -P {self.port} kill-server) or give this board another port")
        assert self.home is not None and self.adb is not None
        (self.home / "tmp").mkdir(parents=True, exist_ok=True)
        log_path = self.home / "adb-server.log"
        with open(log_path, "ab") as out:
            self._proc = subprocess.Popen([str(self.adb), "-P", str(self.port), "nodaemon", "server"],
                                          env=self.environment(), stdin=subprocess.DEVNULL, stdout=out,
                                          stderr=subprocess.STDOUT, start_new_session=True,
                                          preexec_fn=functools.partial(_die_with_owner, os.getpid()))
        self.log.info("adb server pid %d on %s:%d (home %s)", self._proc.pid, self.host, self.port, self.home)
        try:
            self.wait_answering(timeout)
        except LinkDown:
            self.stop()
            raise
        return self

    def wait_answering(self, timeout: float) -> int:
        """Poll until the server answers; returns its version (41 for adb 1.0.41)."""
        deadline = time.monotonic() + timeout
        while True:
            if self._proc is not None and self._proc.poll() is not None:
                tail = self._log_tail()
                raise LinkDown(f"adb server on port {self.port} exited with {self._proc.returncode}: {tail}")
            try:
                return self.client(socket_timeout=2.0).server_version()
            except (AdbError, OSError, ValueError):
                if time.monotonic() >= deadline:
                    raise LinkDown(f"adb server {self.host}:{self.port} does not answer after {timeout:.0f} s",
                                   fix="check the host/port, or that the lab's server runs with -a") from None
                time.sleep(0.05)

    def answers(self) -> bool:
        try:
            self.client(socket_timeout=1.0).server_version()
            return True
        except (AdbError, OSError, ValueError):
            return False

    def stop(self, timeout: float = 5.0) -> None:
        """``host:kill`` politely, then SIGKILL the PID if it is still alive. Remote servers are left alone."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            try:
                self.client(socket_timeout=2.0).server_kill()
            except (AdbError, OSError):
                pass
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.log.warning("adb server pid %d ignored kill-server; killing it", proc.pid)
                proc.kill()
                proc.wait(timeout)
        self.log.info("adb server pid %d stopped (exit %s)", proc.pid, proc.returncode)

    def _log_tail(self, lines: int = 3) -> str:
        try:
            text = (self.home / "adb-server.log").read_text(errors="replace") if self.home else ""
        except OSError:
            return "(no log)"
        return " | ".join(text.strip().splitlines()[-lines:]) or "(empty log)"

    # --- clients -----------------------------------------------------------------------------------------
    def client(self, socket_timeout: float | None = 30.0) -> ServerClient:
        """An adbutils client for this server whose every socket operation times out after ``socket_timeout``."""
        return ServerClient(self.host, self.port, socket_timeout)

    def __enter__(self) -> "AdbServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        kind = f"pid {self.pid}" if self.managed else "remote"
        return f"AdbServer({self.host}:{self.port}, {kind})"


def _die_with_owner(owner: int) -> None:
    """Runs in the adb server before exec: the server dies with the process that started it, even after a
    ``kill -9`` of pytest or an xdist worker terminated mid-cleanup, so no run leaves an adb server behind.
    (A lab host's long-lived server is started by the lab stand itself, not through :meth:`AdbServer.start`.)
    PR_SET_PDEATHSIG follows the *thread* that forked: start servers from a thread that lives as long as the run
    (the fixtures do, from pytest's main thread). An owner already gone before the prctl is caught by getppid."""
    import ctypes
    import signal

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != owner:
        os._exit(1)
