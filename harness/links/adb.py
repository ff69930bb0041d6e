"""The adb link: shell, push/pull and reboot through a real adb server, each with a hard deadline.

Built on adbutils' connection to the server (framing, host:transport), with three things it lacks done here:
shell v2 with a deadline for the whole command (adbutils' timeout is an inactivity timeout, and its default
shell is v1 with no exit code); sync transfers in 64 KiB DATA frames (adbutils sends 4 KiB and is ~2.3x slower
than the adb CLI) followed by a sha256 check on the board; and an active reconnect loop after a reboot (the
server alone retries a TCP device only every 10 s). Every server/device failure comes out as a harness error:
LinkTimeout for a missed deadline, LinkDown (a BoardError) for a device that is gone or in a bad state.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shlex
import socket
import stat
import struct
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from adbutils.errors import AdbError, AdbTimeout

from harness.errors import BoardError, ConfigError, HarnessError, LinkDown, LinkTimeout
from harness.links.adb_server import AdbServer, DeadlineSocket, state_error
from harness.links.base import ShellResult

__all__ = ["AdbLink", "AdbServer", "state_error"]

Progress = Callable[[int, int], None]  # (bytes done, bytes total)

#: Sync DATA frames are at most 64 KiB by protocol; sending the maximum is what makes the CLI fast.
SYNC_CHUNK = 64 * 1024
#: How often wait_ready() forces a reconnect while the board is away.
RECONNECT_PERIOD_S = 0.25
#: Budget of one reconnect attempt: a board that is going down may still accept TCP and never answer, and the
#: server then holds `connect` for 10 s; a live board answers CNXN in milliseconds, so give up and retry.
CONNECT_ATTEMPT_S = 1.0
_EXIT_MARK = "__npu_hil_exit="  # shell v1 only: the exit code follows this on the last line

class AdbLink:
    """One board reached through an adb server, by USB ``serial`` or by network ``address`` (host:port)."""

    def __init__(self, *, server: AdbServer, serial: str, address: str | None = None, name: str = "adb",
                 log: logging.Logger | None = None, op_timeout: float = 30.0,
                 shell_v2: bool | None = None) -> None:
        if not (serial or address):
            raise ConfigError("an adb link needs a serial (USB) or an address (host:port)")
        self.server, self.address, self.name, self.op_timeout = server, address, name, op_timeout
        self.serial = serial or address or ""
        self.log = log or logging.getLogger(f"harness.links.{name}")
        self.shell_v2 = shell_v2  # None: ask adbd's feature list on first use
        self._reboot_pending = False

    # --- server, state ----------------------------------------------------------------------------------
    @contextmanager
    def _wire(self, what: str) -> Iterator[None]:
        """Turn whatever the server, the socket or adbutils raise into LinkTimeout / LinkDown."""
        try:
            yield
        except HarnessError:
            raise
        except (AdbTimeout, socket.timeout) as exc:
            raise LinkTimeout(f"{self.name} {self.serial}: {what} missed its deadline") from exc
        except AdbError as exc:  # "device offline", "device 'X' not found": say which state, with its fix
            seen = self._devices() if "device" in str(exc) else None
            err = None if seen is None else state_error(self.serial, dict(seen).get(self.serial, "absent"), seen)
            raise (err or LinkDown(f"{self.name} {self.serial}: {what} failed: {exc}")) from exc
        except (OSError, EOFError) as exc:
            raise LinkDown(f"{self.name} {self.serial}: {what}: connection lost ({exc})") from exc

    def _devices(self) -> list[tuple[str, str]]:
        try:
            return self.server.client(socket_timeout=5.0).devices_raw()
        except (AdbError, OSError) as exc:
            raise LinkDown(f"adb server {self.server.host}:{self.server.port} unreachable: {exc}",
                           fix="is the harness's adb server running?") from exc

    def state(self) -> str:
        """The device's state as the server prints it (device, offline, unauthorized, no permissions ...), or absent."""
        return dict(self._devices()).get(self.serial, "absent")

    def connect(self, timeout: float | None = None) -> None:
        """``adb connect`` a network device (a USB one just has to be listed), then wait until it is ready."""
        timeout = self.op_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        if self.address:
            answer = self._connect_once(timeout)
            if answer.startswith("already connected") and self.state() != "device":
                # a transport the server kept from before the board was reset (power cycle, crash): it would sit
                # offline until the server's own retry, ~10 s; a fresh one answers as soon as adbd does
                self.server.client(socket_timeout=max(0.1, deadline - time.monotonic())).disconnect(self.address)
                answer = self._connect_once(max(0.1, deadline - time.monotonic()))
            if answer.startswith(("failed", "unable", "cannot")):
                raise LinkDown(f"adb connect {self.address}: {answer}",
                               fix="is the board up, on the network, with adbd listening on that port?")
        self.ensure_ready(max(0.0, deadline - time.monotonic()))

    def _connect_once(self, timeout: float) -> str:
        try:
            answer = self.server.client(socket_timeout=max(timeout, 0.1)).connect(self.address, timeout=timeout)
        except (AdbTimeout, socket.timeout):
            answer = f"connect to {self.address} did not finish within {timeout:.1f} s"  # ensure_ready explains
        except (AdbError, OSError) as exc:
            raise LinkDown(f"adb server cannot take `connect {self.address}`: {exc}") from exc
        self.log.debug("adb connect %s -> %s", self.address, answer)
        return answer

    def ensure_ready(self, timeout: float | None = None) -> None:
        """Wait (up to ``timeout``) for state ``device``; else LinkDown naming the state and its fix."""
        deadline = time.monotonic() + (self.op_timeout if timeout is None else timeout)
        while True:
            seen = self._devices()
            state = dict(seen).get(self.serial, "absent")
            err = state_error(self.serial, state, seen)
            if err is None:
                return
            if state.startswith("no permissions") or time.monotonic() >= deadline:
                self.log.warning("%s %s not ready: %s", self.name, self.serial, err)
                raise err
            time.sleep(0.1)

    # --- streams ----------------------------------------------------------------------------------------
    def _open(self, service: str, deadline: float) -> socket.socket:
        """A socket to ``service`` on the device, after ``host:transport`` (one round trip, no version query)."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("deadline passed")
        conn = self.server.client(socket_timeout=left).make_connection()
        try:
            conn.send_command(f"host:transport:{self.serial}")
            conn.check_okay()
            conn.send_command(service)
            conn.check_okay()
        except BaseException:
            conn.close()
            raise
        return conn.conn

    def _has_shell_v2(self, deadline: float) -> bool:
        """Whether adbd speaks shell v2 (from its feature list, asked once); old Linux adbds do not."""
        if self.shell_v2 is None:
            left = max(0.1, deadline - time.monotonic())
            with self.server.client(socket_timeout=left).make_connection() as conn:
                conn.send_command(f"host-serial:{self.serial}:features")
                conn.check_okay()
                self.shell_v2 = "shell_v2" in conn.read_string_block().split(",")
        return self.shell_v2

    def shell(self, command: str, timeout: float | None = None) -> ShellResult:
        """Run ``command`` (busybox sh on the board): real exit code, separate stderr, hard deadline.

        Shell v2 where adbd has it; else v1 with the exit code printed after a subshell (stderr then comes
        merged into stdout). Past the deadline the stream is closed, which makes adbd kill the command.
        """
        timeout = self.op_timeout if timeout is None else timeout
        start = time.monotonic()
        deadline = start + timeout
        out, err, code = bytearray(), bytearray(), None
        with self._wire(f"shell `{command}`"):
            v2 = self._has_shell_v2(deadline)
            service = f"shell,v2,raw:{command}" if v2 else f"shell:({command}\n); echo {_EXIT_MARK}$?"
            wire = DeadlineSocket(self._open(service, deadline), deadline)
            try:
                if v2:
                    wire.sendall(b"\x04" + struct.pack("<I", 0))  # close stdin: the command never waits on us
                while code is None:
                    if not v2:
                        out += wire.recv_some()
                        continue
                    kind, length = struct.unpack("<BI", wire.recv_exact(5))
                    data = wire.recv_exact(length) if length else b""
                    if kind in (1, 2):
                        (out if kind == 1 else err).extend(data)
                    elif kind == 3 and data:
                        code = data[0]
            except socket.timeout:
                raise LinkTimeout(f"{self.name} {self.serial}: `{command}` did not finish within {timeout:g} s; "
                                  "its stream was closed so the board kills it") from None
            except EOFError as exc:
                mark = out.rfind(_EXIT_MARK.encode())
                if v2 or mark < 0:
                    raise LinkDown(f"{self.name} {self.serial}: `{command}` lost its connection before "
                                   f"exiting ({exc})") from None
                tail = re.match(rb"\s*(\d+)", out[mark + len(_EXIT_MARK):])
                code, out = (int(tail.group(1)) if tail else 255), out[:mark]
            finally:
                wire.sock.close()
        result = ShellResult(command, out.decode(errors="replace"), err.decode(errors="replace"), code,
                             time.monotonic() - start, self.name)
        self.log.info("%s $ %s -> exit %d in %.3f s (%d B out, %d B err)", self.name, command, code,
                      result.duration_s, len(out), len(err))
        return result

    @contextmanager
    def _sync(self, what: str, deadline: float, label: str, total: int,
              progress: bool | Progress | None) -> Iterator[tuple[DeadlineSocket, Callable[[int], None]]]:
        """A ``sync:`` stream with the deadline and a progress callback; QUIT and closed afterwards."""
        with self._wire(what), _progress(label, total, progress) as step:
            wire = DeadlineSocket(self._open("sync:", deadline), deadline)
            try:
                yield wire, step
                wire.sendall(b"QUIT" + struct.pack("<I", 0))
            finally:
                wire.sock.close()

    @staticmethod
    def _request(wire: DeadlineSocket, cmd: bytes, path: str) -> None:
        raw = path.encode()
        if len(raw) > 1024:
            raise ConfigError(f"board path longer than adb's 1024-byte limit: {path[:60]}...")
        wire.sendall(cmd + struct.pack("<I", len(raw)) + raw)

    def push(self, local: Path, remote: str, *, timeout: float | None = None,
             progress: bool | Progress | None = None, verify: bool = True, mode: int = 0o644) -> int:
        """Copy ``local`` to the board path ``remote`` (a trailing / keeps the name); returns the bytes sent.

        Sync SEND in 64 KiB frames; ``verify`` compares sha256 with ``sha256sum`` on the board (BoardError
        on a mismatch). The default timeout is op_timeout plus 1 s per MB, so big images are not cut off.
        """
        local = Path(local)
        if not local.is_file():
            raise ConfigError(f"cannot push {local}: not a file")
        remote = self._remote_path(remote, local.name)
        size = local.stat().st_size
        timeout = timeout if timeout is not None else self.op_timeout + size / 1e6
        start, digest, sent = time.monotonic(), hashlib.sha256(), 0
        with self._sync(f"push {local} -> {remote}", start + timeout, f"push {local.name}", size,
                        progress) as (wire, step):
            self._request(wire, b"SEND", f"{remote},{stat.S_IFREG | mode}")
            with local.open("rb") as src:
                while chunk := src.read(SYNC_CHUNK):
                    wire.sendall(b"DATA" + struct.pack("<I", len(chunk)) + chunk)
                    digest.update(chunk)
                    sent += len(chunk)
                    step(sent)
            wire.sendall(b"DONE" + struct.pack("<I", int(time.time())))
            reply, length = struct.unpack("<4sI", wire.recv_exact(8))
            if reply != b"OKAY":
                msg = wire.recv_exact(length).decode(errors="replace") if reply == b"FAIL" else repr(reply)
                raise BoardError(f"board refused push to {remote}: {msg}")
        self._log_transfer("push", local, remote, sent, start)
        if verify:
            self._verify(remote, digest.hexdigest(), start + timeout)
        return sent

    def pull(self, remote: str, local: Path, *, timeout: float | None = None,
             progress: bool | Progress | None = None, verify: bool = True) -> int:
        """Copy the board file ``remote`` to ``local`` (a folder keeps the name); returns the bytes received.

        Sync RECV, then the same sha256 check as push; a failed or unverified pull leaves no file behind.
        """
        remote = self._remote_path(remote, None)
        local = Path(local) / Path(remote).name if Path(local).is_dir() else Path(local)
        timeout = self.op_timeout if timeout is None else timeout
        start, digest, got = time.monotonic(), hashlib.sha256(), 0
        partial = local.with_name(local.name + ".partial")
        try:
            with self._sync(f"pull {remote} -> {local}", start + timeout, f"pull {local.name}", 0,
                            progress) as (wire, step), partial.open("wb") as dst:
                self._request(wire, b"RECV", remote)
                while True:
                    tag, length = struct.unpack("<4sI", wire.recv_exact(8))
                    if tag == b"DONE":
                        break
                    if tag == b"FAIL":
                        raise BoardError(f"board cannot send {remote}: "
                                         + wire.recv_exact(length).decode(errors="replace"))
                    if tag != b"DATA" or length > SYNC_CHUNK:
                        raise LinkDown(f"bad sync frame {tag!r} ({length} bytes) pulling {remote}")
                    chunk = wire.recv_exact(length)
                    dst.write(chunk)
                    digest.update(chunk)
                    got += length
                    step(got)
            self._log_transfer("pull", local, remote, got, start)
            if verify:
                self._verify(remote, digest.hexdigest(), start + timeout)
            partial.replace(local)
        finally:
            partial.unlink(missing_ok=True)
        return got

    @staticmethod
    def _remote_path(remote: str, name: str | None) -> str:
        if not remote.startswith("/"):
            raise ConfigError(f"board path {remote!r} must be absolute")
        return remote + name if (name and remote.endswith("/")) else remote

    def _log_transfer(self, verb: str, local: Path, remote: str, nbytes: int, start: float) -> None:
        took = max(time.monotonic() - start, 1e-6)
        self.log.info("%s %s %s %s: %d B in %.3f s (%.1f MB/s)", self.name, verb, local, remote, nbytes, took,
                      nbytes / took / 1e6)

    def _verify(self, remote: str, expected: str, deadline: float) -> None:
        """sha256 of the board's copy must equal the host's; anything else is the link's or board's fault."""
        res = self.shell(f"sha256sum {shlex.quote(remote)}", timeout=max(5.0, deadline - time.monotonic()))
        found = res.stdout.split()[0] if res.ok and res.stdout.split() else ""
        if not re.fullmatch(r"[0-9a-f]{64}", found):
            raise BoardError(f"cannot checksum {remote} on the board: {res.output.strip()[:200]}")
        if found != expected:
            raise BoardError(f"{remote} is corrupt after transfer: board sha256 {found[:16]}..., "
                             f"host {expected[:16]}...", fix="retry; check the cable or network")
        self.log.info("%s sha256 %s ok (%s...)", self.name, remote, expected[:16])

    # --- reboot, liveness -------------------------------------------------------------------------------
    def reboot(self, mode: str = "") -> None:
        """Ask adbd to reboot (``mode``: "", "loader", "recovery"...); returns once asked. Then wait_ready()."""
        deadline = time.monotonic() + self.op_timeout
        with self._wire(f"reboot {mode}".strip()):
            sock = self._open(f"reboot:{mode}", deadline)
            sock.close()
        self._reboot_pending = True
        self.log.info("%s %s: reboot%s requested", self.name, self.serial, f" {mode}" if mode else "")

    def wait_ready(self, timeout: float | None = None) -> float:
        """Wait until the board answers a shell again; after reboot(), first until it was seen gone.

        Instead of the server's 10 s retry, a network device is disconnected and connected again every
        RECONNECT_PERIOD_S while it is away. Returns the seconds waited; LinkTimeout past ``timeout``.
        """
        timeout = self.op_timeout if timeout is None else timeout
        start = time.monotonic()
        deadline, seen_down, state = start + timeout, not self._reboot_pending, "unknown"
        while True:
            tick = time.monotonic()
            state, up = self._probe(min(2.0, max(0.1, deadline - tick)))
            self.log.debug("%s %s wait_ready: state %s, answers %s", self.name, self.serial, state, up)
            if up and seen_down:
                self._reboot_pending = False
                waited = time.monotonic() - start
                self.log.info("%s %s ready after %.2f s", self.name, self.serial, waited)
                return waited
            seen_down = seen_down or not up
            if time.monotonic() >= deadline:
                raise LinkTimeout(f"{self.name} {self.serial} not ready within {timeout:g} s (last state: {state})",
                                  fix="check the board's console for a hung boot")
            time.sleep(max(0.0, min(RECONNECT_PERIOD_S - (time.monotonic() - tick), deadline - time.monotonic())))

    def _probe(self, budget: float) -> tuple[str, bool]:
        """One look at the board: (state, answers a shell). A network device not in 'device' is reconnected."""
        state = self.state()
        if state != "device" and self.address:
            self.server.client(socket_timeout=budget).disconnect(self.address)
            self._connect_once(min(budget, CONNECT_ATTEMPT_S))
            state = self.state()
        if state != "device":
            return state, False
        try:
            return state, self.shell("true", timeout=budget).ok
        except BoardError:
            if self.address:  # a transport the server still believes in: drop it so the next try reconnects
                self.server.client(socket_timeout=budget).disconnect(self.address)
            return "no answer", False

    def is_alive(self) -> bool:
        """True when the board is in state device and answers ``true`` within 5 s."""
        try:
            return self.state() == "device" and self.shell("true", timeout=5.0).ok
        except BoardError:
            return False

    def close(self) -> None:
        """Forget a network device on the server; a USB device stays listed (the server owns it)."""
        if self.address:
            try:
                self.server.client(socket_timeout=2.0).disconnect(self.address)
            except (AdbError, OSError):
                pass


@contextmanager
def _progress(label: str, total: int, progress: bool | Progress | None) -> Iterator[Callable[[int], None]]:
    """A ``step(done)`` callback: the caller's, a rich bar (auto: when stdout is a terminal), or nothing."""
    if callable(progress):
        yield lambda done: progress(done, total)
        return
    if not (progress if progress is not None else sys.stdout.isatty()):
        yield lambda done: None
        return
    from rich.progress import BarColumn, DownloadColumn, TransferSpeedColumn
    from rich.progress import Progress as Bar

    with Bar("[progress.description]{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
             transient=True) as bar:
        task = bar.add_task(label, total=total or None)
        yield lambda done: bar.update(task, completed=done)
