"""The remote end of the legacy scp protocol (``scp -O``, and every scp older than OpenSSH 9.0), in the board's sshd.

Why here: the client runs ``scp -t TARGET`` (upload, the board is the sink) or ``scp -f PATH...`` (download, the
board is the source) as an ssh command, so a board needs an ``scp`` program; Rockchip images built without one
make ``scp -O`` fail with ``sh: scp: not found``, and a lab whose tools use the old protocol could not talk to the
simulated board. The simulated image has no scp binary either, so the sshd speaks the protocol itself on the
channel, on the board's files (every path through ``BoardContext.host_path``, the ``userdata-full`` fault
honoured), and ends with the exit status a real scp would: 0, or 1 after any error.

The protocol (OpenSSH scp.c, rcp before it): every record is one line; the receiver answers each record and each
file's data with one byte, ``\\0`` for fine, or ``\\1`` (error, go on) / ``\\2`` (fatal) followed by a message
line. Records: ``C<mode> <size> <name>`` then the bytes and a ``\\0``; ``D<mode> 0 <name>`` enters a folder
(with ``-r``); ``E`` leaves it; ``T<mtime> 0 <atime> 0`` gives the next entry's times (with ``-p``).
Flags understood: ``-t``, ``-f``, ``-r``, ``-p``, ``-d``, ``-v``, ``-q``; anything else is left to the board's
shell (which has no scp). The command line is split as the board's shell would (quotes; a wildcard in a
source's last part is expanded on the board).
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
import re
import shlex
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from harness.sim.context import BoardContext
from harness.sim.rootpath import OutsideRoot

#: Where relative paths start, as for the board's SFTP (root's home).
HOME = "/root"
#: A peer silent this long ends the transfer (exit 1), so a stuck client never holds a session forever.
IDLE_TIMEOUT_S = 60.0
_CHUNK = 65536
_MAX_LINE = 4096
_RECORD = re.compile(rb"^([CD])([0-7]{4}) (\d+) (.+)$")
_TIMES = re.compile(rb"^T(\d+) (\d+) (\d+) (\d+)$")
_FLAGS = set("tfrpdvq")


@dataclass(frozen=True)
class ScpRequest:
    """What ``scp -t``/``scp -f`` was asked to do."""

    sink: bool  # -t: the board receives; else -f: the board sends
    paths: list[str]
    recursive: bool
    preserve: bool
    target_is_dir: bool


def parse(command: str | None) -> ScpRequest | None:
    """The scp request in an exec command, or None when the command is not one the board's scp would serve."""
    try:
        words = shlex.split(command or "")
    except ValueError:
        return None
    if not words or posixpath.basename(words[0]) != "scp":
        return None
    flags: set[str] = set()
    rest = words[1:]
    while rest and rest[0].startswith("-") and rest[0] != "-":
        word = rest.pop(0)
        if word == "--":
            break
        if not set(word[1:]) <= _FLAGS:
            return None
        flags |= set(word[1:])
    if ("t" in flags) == ("f" in flags) or not rest or ("t" in flags and len(rest) != 1):
        return None
    return ScpRequest(sink="t" in flags, paths=rest, recursive="r" in flags, preserve="p" in flags,
                      target_is_dir="d" in flags)


class _Fatal(Exception):
    """The transfer cannot go on (protocol error, peer gone or silent): exit status 1."""


class ScpSession:
    """One scp run on one channel: :meth:`run` returns the exit status."""

    def __init__(self, ctx: BoardContext, channel: Any, request: ScpRequest) -> None:
        self.ctx, self.channel, self.request = ctx, channel, request
        self.errors = 0
        self._buffer = b""
        channel.settimeout(IDLE_TIMEOUT_S)

    def run(self) -> int:
        try:
            if self.request.sink:
                self._sink()
            else:
                self._source()
        except _Fatal:
            return 1
        return 1 if self.errors else 0

    # -- wire ------------------------------------------------------------------------------------------------
    def _recv(self, size: int) -> bytes:
        if not self._buffer:
            try:
                self._buffer = self.channel.recv(max(size, _CHUNK))
            except (OSError, EOFError) as exc:  # socket.timeout is an OSError
                raise _Fatal(f"connection lost: {exc}") from None
            if not self._buffer:
                return b""
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def _exact(self, size: int, out: Callable[[bytes], None]) -> None:
        while size > 0:
            data = self._recv(min(size, _CHUNK))
            if not data:
                raise _Fatal("lost connection in the middle of a file")
            out(data)
            size -= len(data)

    def _line(self) -> bytes | None:
        """One record line without its newline; None at a clean end of input."""
        line = b""
        while not line.endswith(b"\n"):
            byte = self._recv(1)
            if not byte:
                if line:
                    raise _Fatal("lost connection in the middle of a record")
                return None
            line += byte
            if len(line) > _MAX_LINE:
                raise _Fatal("record too long")
        return line[:-1]

    def _send(self, data: bytes) -> None:
        try:
            self.channel.sendall(data)
        except (OSError, EOFError) as exc:
            raise _Fatal(f"connection lost: {exc}") from None

    def _ok(self) -> None:
        self._send(b"\0")

    def _error(self, message: str, *, fatal: bool = False) -> None:
        """run_err of scp.c: the message goes to the peer, which prints it; a fatal one ends the run."""
        self.errors += 1
        self._send((b"\2" if fatal else b"\1") + f"scp: {message}\n".encode("utf-8", "replace"))
        if fatal:
            raise _Fatal(message)

    def _response(self) -> bool:
        """The peer's answer: True for ``\\0``; False after an error line (counted); fatal ones end the run."""
        code = self._recv(1)
        if code == b"\0":
            return True
        if code in (b"\1", b"\2"):
            self._line()
            self.errors += 1
            if code == b"\2":
                raise _Fatal("peer reported a fatal error")
            return False
        raise _Fatal("lost connection" if not code else f"protocol error: unexpected byte {code!r}")

    def _host(self, board_path: str) -> Path:
        path = board_path if board_path.startswith("/") else posixpath.join(HOME, board_path)
        return self.ctx.host_path(path)

    # -- the board receives (scp -t) ---------------------------------------------------------------------------
    def _sink(self) -> None:
        target = self.request.paths[0]
        try:
            host = self._host(target)
        except OutsideRoot:
            host = None
        if self.request.target_is_dir and (host is None or not host.is_dir()):
            self._error(f"{target}: Not a directory", fatal=True)
        self._ok()
        self._sink_into(target, host, top=True)

    def _sink_into(self, board: str, host: Path | None, *, top: bool) -> None:
        times: tuple[int, int] | None = None
        while True:
            line = self._line()
            if line is None:
                if not top:
                    raise _Fatal("lost connection inside a folder")
                return
            kind = line[:1]
            if kind in (b"\1", b"\2"):  # the source's own errors (a file it could not read)
                self.errors += 1
                if kind == b"\2":
                    raise _Fatal("source reported a fatal error")
                continue
            if kind == b"E":  # end of a folder (at the top it ends the run, as in scp.c)
                self._ok()
                return
            if kind == b"T":
                match = _TIMES.match(line)
                if not match:
                    self._error("protocol error: mtime.sec not delimited", fatal=True)
                times = (int(match.group(3)), int(match.group(1)))  # (atime, mtime)
                self._ok()
                continue
            match = _RECORD.match(line)
            if not match:
                self._error(f"protocol error: expected control record ({line[:40]!r})", fatal=True)
            name = match.group(4).decode("utf-8", "replace")
            if "/" in name or name in (".", ".."):
                self._error(f"error: unexpected filename: {name}", fatal=True)
            into_dir = host is not None and host.is_dir()
            child_board = posixpath.join(board, name) if into_dir else board
            child = (host / name) if into_dir and host is not None else host
            mode, size = int(match.group(2), 8), int(match.group(3))
            if match.group(1) == b"D":
                self._sink_dir(child_board, child, mode, times)
            else:
                self._sink_file(child_board, child, mode, size, times)
            times = None

    def _sink_dir(self, board: str, host: Path | None, mode: int, times: tuple[int, int] | None) -> None:
        if not self.request.recursive:
            self._error("received directory without -r", fatal=True)
        try:
            if host is None:
                raise FileNotFoundError(2, "No such file or directory")
            if not host.is_dir():
                os.mkdir(host, mode | 0o700)
        except OSError as exc:
            self._error(f"{board}: {exc.strerror}", fatal=True)
        self._ok()
        self._sink_into(board, host, top=False)
        self._set_attrs(host, mode, times)

    def _sink_file(self, board: str, host: Path | None, mode: int, size: int,
                   times: tuple[int, int] | None) -> None:
        try:
            if host is None:
                raise FileNotFoundError(2, "No such file or directory")
            fd = os.open(host, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode & 0o777)
        except OSError as exc:
            self._error(f"{board}: {exc.strerror}")
            return
        failure: str | None = None
        full = size > 0 and self.ctx.userdata_full(host)

        def write(data: bytes) -> None:
            nonlocal failure
            if failure is None:
                try:
                    if full:
                        raise OSError(28, "No space left on device")
                    os.write(fd, data)
                except OSError as exc:
                    failure = exc.strerror or str(exc)

        self._ok()
        try:
            self._exact(size, write)  # keep reading after a failed write: the stream must stay in step
        finally:
            os.close(fd)
        self._response()
        if failure is not None:
            self._error(f"{board}: write: {failure}")
            return
        self._set_attrs(host, mode, times)
        self._ok()

    def _set_attrs(self, host: Path | None, mode: int, times: tuple[int, int] | None) -> None:
        if host is None or not self.request.preserve:
            return
        try:
            os.chmod(host, mode & 0o7777)
            if times is not None:
                os.utime(host, times)
        except OSError:
            pass  # scp -p reports nothing for a failed chmod/utime on a file it wrote

    # -- the board sends (scp -f) ------------------------------------------------------------------------------
    def _source(self) -> None:
        if not self._response():
            return
        for board in [match for path in self.request.paths for match in self._expand(path)]:
            self._send_path(board)

    def _expand(self, board: str) -> list[str]:
        """A wildcard in the last part (``/userdata/*.npy``), expanded as the board's shell would; else as given."""
        folder, pattern = posixpath.split(board)
        if not any(ch in pattern for ch in "*?[") or any(ch in folder for ch in "*?["):
            return [board]
        try:
            names = os.listdir(self._host(folder or "."))
        except (OSError, OutsideRoot):
            return [board]
        found = sorted(n for n in names if fnmatch.fnmatchcase(n, pattern) and (pattern[0] == "." or n[0] != "."))
        return [posixpath.join(folder, n) for n in found] or [board]

    def _send_path(self, board: str) -> None:
        """Send one board path, or report why not (scp's own wording) and go on with the next."""
        try:  # a link is followed inside the board, as the board's own scp would see it
            host = self._host(board)
            info = os.stat(host)
        except OutsideRoot:
            self._error(f"{board}: No such file or directory")
            return
        except OSError as exc:
            self._error(f"{board}: {exc.strerror}")
            return
        self._send_entry(board, host, info)

    def _send_entry(self, board: str, host: Path, info: os.stat_result) -> None:
        name = posixpath.basename(board.rstrip("/")) or "/"
        if stat.S_ISDIR(info.st_mode):
            if not self.request.recursive:
                self._error(f"{board}: not a regular file")
                return
            self._send_dir(board, host, name, info)
        elif stat.S_ISREG(info.st_mode):
            self._send_file(board, host, name, info)
        else:
            self._error(f"{board}: not a regular file")

    def _send_times(self, info: os.stat_result) -> bool:
        if not self.request.preserve:
            return True
        self._send(f"T{int(info.st_mtime)} 0 {int(info.st_atime)} 0\n".encode())
        return self._response()

    def _send_file(self, board: str, host: Path, name: str, info: os.stat_result) -> None:
        try:
            handle = open(host, "rb")
        except OSError as exc:
            self._error(f"{board}: {exc.strerror}")
            return
        with handle:
            if not self._send_times(info):
                return
            self._send(f"C{info.st_mode & 0o7777:04o} {info.st_size} {name}\n".encode())
            if not self._response():
                return
            left, failure = info.st_size, None
            while left > 0:  # exactly the announced size, padded with zeros if the file shrank meanwhile
                try:
                    block = handle.read(min(_CHUNK, left)) if failure is None else b""
                except OSError as exc:
                    failure, block = exc.strerror, b""
                block = block or bytes(min(_CHUNK, left))
                self._send(block)
                left -= len(block)
        if failure is not None:
            self._error(f"{board}: read: {failure}")
        else:
            self._ok()
        self._response()

    def _send_dir(self, board: str, host: Path, name: str, info: os.stat_result) -> None:
        if not self._send_times(info):
            return
        self._send(f"D{info.st_mode & 0o7777:04o} 0 {name}\n".encode())
        if not self._response():
            return
        for entry in sorted(os.listdir(host)):
            self._send_path(posixpath.join(board, entry))
        self._send(b"E\n")
        self._response()
