"""adbd's sync service (``adb push``/``pull``/``ls``, adbutils' ``device.sync``): file requests until QUIT.

Split from :mod:`harness.sim.adbd` so the daemon module keeps to connections and stream dispatch; this one owns
the sync protocol (STAT/STA2/LST2, LIST/LIS2, SEND, RECV) and the board's files. Every path goes through
``ctx.host_path`` so nothing outside the board root is reached; a pushed file appears only once complete
(:class:`_AtomicFile`); the ``adb-drop`` and ``userdata-full`` faults are read per transfer.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

from harness.sim import adb_wire as wire
from harness.sim.adbd_stream import ServiceHost, Stream
from harness.sim.context import BoardContext


class _AtomicFile:
    """A pushed file: written under a temp name beside the target, renamed over it only on DONE."""

    def __init__(self, target: Path, mode: int) -> None:
        self.target, self.mode, self.is_link = target, mode, stat.S_ISLNK(mode)
        target.parent.mkdir(parents=True, exist_ok=True)  # fixed_push_mkdir: the device makes the folders
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".adbd-tmp", dir=target.parent)
        self.tmp, self.file, self.link_target = Path(tmp), os.fdopen(fd, "wb"), bytearray()

    def write(self, data: bytes) -> None:
        if self.is_link:
            self.link_target += data  # a symlink's DATA is its target
        else:
            self.file.write(data)

    def commit(self, mtime: int) -> None:
        self.file.close()
        if self.is_link:
            self.tmp.unlink()
            os.symlink(os.fsdecode(bytes(self.link_target)), self.tmp)
        else:
            os.chmod(self.tmp, self.mode & 0o7777)
        os.utime(self.tmp, (mtime, mtime), follow_symlinks=False)
        os.replace(self.tmp, self.target)

    def discard(self) -> None:
        self.file.close()
        self.tmp.unlink(missing_ok=True)


class SyncSession:
    """``sync:``: requests until QUIT. Replies are batched into WRTEs of up to the connection's payload size."""

    def __init__(self, ctx: BoardContext, stream: Stream) -> None:
        self.ctx, self.stream = ctx, stream
        self._in, self._out = bytearray(), bytearray()

    def run(self) -> None:
        handlers = {b"STAT": self._stat_v1, b"STA2": self._stat_v2, b"LST2": self._stat_v2,
                    b"LIST": self._list, b"LIS2": self._list, b"SEND": self._send, b"RECV": self._recv}
        while True:
            self._flush()
            tag, length = wire.SYNC_REQUEST.unpack(self._read(wire.SYNC_REQUEST.size))
            if tag == b"QUIT":
                return
            handler = handlers.get(tag)
            if handler is None or length > wire.SYNC_MAX_PATH:
                self._reply(wire.sync_fail(f"bad sync request {tag!r} of length {length}"))
                return self._flush()
            if handler(tag, os.fsdecode(self._read(length))) is False:
                return self._flush()  # a failed SEND/RECV ends the session, as with adbd

    def _read(self, n: int) -> bytes:
        while len(self._in) < n:
            self._in += self.stream.read_some()
        out = bytes(self._in[:n])
        del self._in[:n]
        return out

    def _reply(self, data: bytes) -> None:
        self._out += data
        if len(self._out) >= self.stream.max_payload:
            self._flush()

    def _flush(self) -> None:
        if self._out:
            data, self._out = self._out, bytearray()
            self.stream.write(data)

    def _lstat(self, path: str, *, follow: bool):
        try:
            host = self.ctx.host_path(path, follow_last=follow)
            return os.stat(host) if follow else os.lstat(host), 0
        except ValueError:
            return None, errno.ENOENT
        except OSError as exc:
            return None, exc.errno or errno.EIO

    def _stat_v1(self, tag: bytes, path: str) -> None:
        st, _ = self._lstat(path, follow=False)
        fields = (st.st_mode, st.st_size & 0xFFFFFFFF, int(st.st_mtime) & 0xFFFFFFFF) if st else (0, 0, 0)
        self._reply(wire.STAT_V1.pack(b"STAT", *fields))

    def _stat_v2(self, tag: bytes, path: str) -> None:
        st, error = self._lstat(path, follow=tag == b"STA2")
        self._reply(wire.stat_v2(tag, st, error))

    def _list(self, tag: bytes, path: str) -> None:
        v2 = tag == b"LIS2"
        try:
            names = [".", ".."] + sorted(os.listdir(self.ctx.host_path(path)))
        except (OSError, ValueError):
            names = []
        for name in names:
            st, _ = self._lstat(path.rstrip("/") + "/" + name, follow=False)
            if st is None:
                continue
            raw = os.fsencode(name)
            if v2:
                self._reply(wire.DENT_V2.pack(b"DNT2", 0, *wire.stat_v2_fields(st), len(raw)) + raw)
            else:
                self._reply(wire.DENT_V1.pack(b"DENT", st.st_mode, st.st_size & 0xFFFFFFFF,
                                              int(st.st_mtime) & 0xFFFFFFFF, len(raw)) + raw)
        done = wire.DENT_V2.pack(b"DONE", *[0] * 12) if v2 else wire.DENT_V1.pack(b"DONE", 0, 0, 0, 0)
        self._reply(done)

    def _drop_after(self) -> float | None:
        """Bytes of file data after which the connection is reset (fault ``adb-drop``), read per transfer."""
        return self.ctx.faults.number("adb-drop")

    def _send(self, tag: bytes, spec: str) -> bool:
        path, _, mode_text = spec.rpartition(",")
        failure, target, out = None, None, None
        try:
            mode = int(mode_text)
            target = self.ctx.host_path(path)
            if self.ctx.userdata_full(target):
                failure = "write failed: " + os.strerror(errno.ENOSPC)
            else:
                out = _AtomicFile(target, mode)
        except ValueError as exc:
            failure = f"bad path or mode in {spec!r}: {exc}"
        except OSError as exc:
            failure = f"{path}: {os.strerror(exc.errno) if exc.errno else exc}"
        drop_after, received = self._drop_after(), 0
        try:
            while True:  # read every frame up to DONE even after a failure, so the reply lands in sync
                frame, length = wire.SYNC_REQUEST.unpack(self._read(wire.SYNC_REQUEST.size))
                if frame == b"DONE":
                    break
                if frame != b"DATA" or length > wire.SYNC_DATA_MAX:
                    self._reply(wire.sync_fail(f"bad sync frame {frame!r} of length {length}"))
                    return False
                data = self._read(length)
                received += length
                if drop_after is not None and received >= drop_after:
                    if out is not None:
                        out.discard()  # before the reset: the host may look the moment it sees the RST
                        out = None
                    self.stream.drop_connection("adb-drop fault")
                if out is not None and failure is None:
                    try:
                        out.write(data)
                    except OSError as exc:
                        failure = "write failed: " + os.strerror(exc.errno or errno.EIO)
            if failure is None and out is not None:
                try:
                    out.commit(length)
                    out = None
                except OSError as exc:
                    failure = f"{path}: {os.strerror(exc.errno) if exc.errno else exc}"
            self._reply(wire.sync_fail(failure) if failure else wire.sync_status(b"OKAY"))
            return failure is None
        finally:
            if out is not None:
                out.discard()

    def _recv(self, tag: bytes, path: str) -> bool:
        try:
            source = open(self.ctx.host_path(path), "rb")  # noqa: SIM115 - closed below
        except ValueError as exc:
            self._reply(wire.sync_fail(str(exc)))
            return False
        except OSError as exc:
            self._reply(wire.sync_fail(os.strerror(exc.errno) if exc.errno else str(exc)))
            return False
        drop_after, sent = self._drop_after(), 0
        with source:
            while chunk := source.read(wire.SYNC_DATA_MAX):
                self._reply(wire.sync_status(b"DATA", len(chunk)))
                self._reply(chunk)
                sent += len(chunk)
                if drop_after is not None and sent >= drop_after:
                    self._flush()
                    self.stream.drop_connection("adb-drop fault")
        self._reply(wire.sync_status(b"DONE"))
        return True


def sync_service(daemon: ServiceHost, stream: Stream, args: list[str], argument: str) -> None:
    """``sync:``: one SyncSession on the stream, until the host sends QUIT or goes away."""
    SyncSession(daemon.ctx, stream).run()
