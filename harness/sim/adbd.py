"""The simulated board's adb device endpoint: the device side of adb over TCP, for the real adb server.

Why our own: the harness must be tested against the real ``adb`` server and CLI, and those only talk to a
device. This speaks exactly what Debian adb 29 uses (reference/adb-notes.md): CNXN without AUTH, streams with
one WRTE in flight each way, shell v1/v2 (pipes or a pty), exec, sync (STAT/STA2/LST2, LIST/LIS2, SEND, RECV),
reboot, root and remount. Board commands run through ``BoardContext.spawn_shell`` (busybox in the board root);
files are reached through ``ctx.host_path`` so nothing outside the board root is touched. Faults are read at
each use: ``adb-offline`` (connections never get a CNXN), ``adb-drop=N`` (the TCP connection is reset after N
bytes of a file transfer), ``userdata-full`` (a push under /userdata fails with ENOSPC).
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import pty
import queue
import selectors
import socket
import stat
import struct
import subprocess
import tempfile
import termios
import threading
import time
from pathlib import Path
from typing import Callable

from harness.sim import adb_wire as wire
from harness.sim.context import BoardContext

log = logging.getLogger("npu-hil.sim.adbd")
#: The features adb 29 looks for (its host CNXN offers these); ``remount_shell`` is left out on purpose, so
#: ``adb remount`` uses the ``remount:`` service instead of a board ``remount`` command busybox lacks.
FEATURES = ["shell_v2", "cmd", "stat_v2", "ls_v2", "fixed_push_mkdir", "fixed_push_symlink_timestamp"]
#: How long a stream waits for the host's OKAY before it gives the connection up as dead.
ACK_DEADLINE_S = 60.0
#: Socket timeout: bounds every send; an idle read just waits again.
IO_TIMEOUT_S = 30.0


class StreamClosed(ConnectionError):
    """The stream (or its whole connection) is gone; the service using it stops."""


class Stream:
    """One adb stream: host-to-device data is queued and OKAYed when taken; device-to-host waits for OKAYs."""

    def __init__(self, conn: "Connection", local_id: int, remote_id: int) -> None:
        self.conn, self.local_id, self.remote_id = conn, local_id, remote_id
        self._inbox: queue.Queue[bytes | None] = queue.Queue()
        self._can_write = threading.Event()
        self._can_write.set()
        self.closed = threading.Event()
        self._cleanups: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    @property
    def max_payload(self) -> int:
        return self.conn.max_payload

    def on_close(self, cleanup: Callable[[], None]) -> None:
        """Run ``cleanup`` (kill a process, remove a temp file) when the stream closes, whoever closes it."""
        with self._lock:
            if not self.closed.is_set():
                self._cleanups.append(cleanup)
                return
        cleanup()

    def read(self) -> bytes:
        """The next chunk the host wrote (OKAYed now, so the host may send the next); b"" once closed."""
        data = self._inbox.get()
        if data is None:
            self._inbox.put(None)
            return b""
        self.conn.send(wire.OKAY, self.local_id, self.remote_id)
        return data

    def write(self, data: bytes) -> None:
        """Send ``data`` as WRTE messages, each after the host acknowledged the previous one."""
        view = memoryview(data)
        for start in range(0, len(view), self.max_payload):
            if not self._can_write.wait(ACK_DEADLINE_S) or self.closed.is_set():
                raise StreamClosed("stream closed" if self.closed.is_set() else "host stopped acknowledging")
            self._can_write.clear()
            self.conn.send(wire.WRTE, self.local_id, self.remote_id, view[start:start + self.max_payload])

    def close(self, *, notify: bool = True) -> None:
        """Close once: CLSE to the host (unless the connection is dead), then run the cleanups."""
        with self._lock:
            if self.closed.is_set():
                return
            self.closed.set()
            cleanups, self._cleanups = self._cleanups, []
        self._can_write.set()
        self._inbox.put(None)
        self.conn.forget(self)
        if notify:
            self.conn.send(wire.CLSE, self.local_id, self.remote_id)
        for cleanup in cleanups:
            try:
                cleanup()
            except Exception:  # noqa: BLE001 - one failed cleanup must not skip the others
                log.exception("adbd: stream cleanup failed")

    # called by the connection's reader thread
    def _deliver(self, data: bytes) -> None:
        self._inbox.put(data)

    def _acknowledged(self) -> None:
        self._can_write.set()


class Connection:
    """One TCP connection from the adb server: reads messages, owns the streams, serialises writes."""

    def __init__(self, daemon: "AdbDaemon", sock: socket.socket) -> None:
        self.daemon, self.sock = daemon, sock
        self.max_payload = wire.MAX_PAYLOAD
        self.version = wire.VERSION
        self.online = False
        self.streams: dict[int, Stream] = {}
        self._next_id = 1
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._dead = threading.Event()
        self._reset = False

    @property
    def ctx(self) -> BoardContext:
        return self.daemon.ctx

    def send(self, command: int, arg0: int, arg1: int, data: bytes = b"") -> None:
        if self._dead.is_set():
            raise StreamClosed("connection closed")
        try:
            head = wire.header(command, arg0, arg1, data, checksum=self.version < wire.VERSION)
            with self._send_lock:
                sent = self.sock.sendmsg([head, data])  # no copy of the payload into one buffer
                if sent < len(head) + len(data):
                    self.sock.sendall((head + bytes(data))[sent:])
        except OSError as exc:
            self.close()
            raise StreamClosed(f"connection lost: {exc}") from None

    def forget(self, stream: Stream) -> None:
        with self._lock:
            self.streams.pop(stream.local_id, None)

    def close(self) -> None:
        """Orderly close: wake the reader, which closes the socket and every stream."""
        self._dead.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def reset(self) -> None:
        """Abrupt drop (fault adb-drop): the reader closes the socket with SO_LINGER 0, so the host gets a RST.

        SHUT_RD wakes the reader's blocked recv without sending anything; only the reader may close, since a
        socket closed under a blocked recv is not released (and no RST goes out) until that recv returns.
        """
        self._reset = True
        self._dead.set()
        try:
            self.sock.shutdown(socket.SHUT_RD)
        except OSError:
            pass

    def _recv_exact(self, n: int) -> bytes:
        buf = bytearray(n)
        view, got = memoryview(buf), 0
        while got < n:
            try:
                count = self.sock.recv_into(view[got:])
            except TimeoutError:
                if self._dead.is_set():
                    raise EOFError from None
                continue
            if count == 0 or self._dead.is_set():
                raise EOFError
            got += count
        return bytes(buf)

    def serve(self) -> None:
        """Reader loop, on its own thread, until the host goes away or the daemon stops."""
        try:
            while True:
                command, arg0, arg1, length = wire.decode_header(self._recv_exact(wire.HEADER.size),
                                                                 max(self.max_payload, wire.MAX_PAYLOAD))
                self._dispatch(wire.Message(command, arg0, arg1, self._recv_exact(length) if length else b""))
        except (EOFError, OSError, StreamClosed):
            pass
        except wire.WireError as exc:
            log.warning("adbd: dropping connection: %s", exc)
        finally:
            self._dead.set()
            with self._lock:
                streams, self.streams = list(self.streams.values()), {}
            for s in streams:
                s.close(notify=False)
            if self._reset:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.sock.close()

    def _dispatch(self, msg: wire.Message) -> None:
        if msg.command == wire.CNXN:
            if "adb-offline" in self.ctx.faults:
                return  # the fault: TCP is up, the device never introduces itself
            self.max_payload = max(4096, min(msg.arg1, wire.MAX_PAYLOAD))
            self.version = min(msg.arg0, wire.VERSION)
            self.online = True
            self.send(wire.CNXN, self.version, self.max_payload, self.daemon.banner())
        elif not self.online:
            return
        elif msg.command == wire.OPEN:
            if "adb-offline" in self.ctx.faults:
                self.close()  # the device drops off; the host's reconnection then meets the fault above
                return
            self._open(msg.arg0, wire.parse_service(msg.data))
        else:
            with self._lock:
                stream = self.streams.get(msg.arg1)
            if stream is None:
                return  # e.g. the host's echo of our own CLSE
            if msg.command == wire.OKAY:
                stream._acknowledged()
            elif msg.command == wire.WRTE:
                stream._deliver(msg.data)
            elif msg.command == wire.CLSE:
                stream.close()  # echo it: some clients wait for the echo

    def _open(self, remote_id: int, service: str) -> None:
        name, _, argument = service.partition(":")
        handler = SERVICES.get(name.split(",")[0])
        if handler is None or remote_id == 0:
            self.send(wire.CLSE, 0, remote_id)
            return
        with self._lock:
            local_id, self._next_id = self._next_id, self._next_id + 1
            stream = Stream(self, local_id, remote_id)
            self.streams[local_id] = stream
        self.send(wire.OKAY, local_id, remote_id)
        thread = threading.Thread(target=self._run_service, args=(handler, stream, name, argument),
                                  name=f"adbd-{name}-{local_id}", daemon=True)
        self.daemon._track(thread)
        thread.start()

    def _run_service(self, handler, stream: Stream, name: str, argument: str) -> None:  # noqa: ANN001
        try:
            handler(self.daemon, stream, name.split(",")[1:], argument)
        except StreamClosed:
            pass
        except Exception:  # noqa: BLE001 - a broken service closes its stream, never the daemon
            log.exception("adbd: service %s failed", name)
        finally:
            try:
                stream.close()
            except StreamClosed:
                pass


class AdbDaemon:
    """The board's adbd on a listening socket the caller owns (bound and listening, on 127.0.0.1)."""

    def __init__(self, ctx: BoardContext, listener: socket.socket) -> None:
        self.ctx, self.listener = ctx, listener
        self._connections: set[Connection] = set()
        self._threads: list[threading.Thread] = []
        self._processes: set = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    @property
    def address(self) -> tuple[str, int]:
        return self.listener.getsockname()[:2]

    def banner(self) -> bytes:
        p = self.ctx.profile
        props = {"ro.product.name": p.product, "ro.product.model": p.model, "ro.product.device": p.chip}
        return wire.banner("device", props, FEATURES)

    def start(self) -> None:
        """Serve connections on background threads; returns at once."""
        self.listener.settimeout(0.5)  # the accept loop looks at _stopping twice a second
        thread = threading.Thread(target=self._accept_loop, name="adbd-accept", daemon=True)
        self._track(thread)
        thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Close the listener and every connection, kill every board process started, join the threads."""
        deadline = time.monotonic() + timeout
        self._stopping.set()
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # stops accepting now (close alone waits for accept())
        except OSError:
            pass
        self.listener.close()
        with self._lock:
            connections, processes = list(self._connections), list(self._processes)
        for conn in connections:
            conn.close()
        for proc in processes:
            kill_process(proc)
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                sock, _peer = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # listener closed
            sock.settimeout(IO_TIMEOUT_S)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = Connection(self, sock)
            with self._lock:
                if self._stopping.is_set():
                    sock.close()
                    return
                self._connections.add(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), name="adbd-conn", daemon=True)
            self._track(thread)
            thread.start()

    def _serve(self, conn: Connection) -> None:
        try:
            conn.serve()
        finally:
            with self._lock:
                self._connections.discard(conn)

    def _track(self, thread: threading.Thread) -> None:
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]

    def track_process(self, proc) -> None:  # noqa: ANN001 - subprocess.Popen
        """Remember a board process so stop() can kill it; services untrack it once it was reaped."""
        with self._lock:
            self._processes.add(proc)

    def untrack_process(self, proc) -> None:  # noqa: ANN001
        with self._lock:
            self._processes.discard(proc)

    def process_ids(self) -> list[int]:
        """PIDs of the board commands this daemon is running now (for checks and diagnostics)."""
        with self._lock:
            return sorted(p.pid for p in self._processes if p.poll() is None)


def kill_process(proc) -> None:  # noqa: ANN001
    """Kill a board command by its Popen handle: unshare's death takes its whole PID namespace along."""
    if proc.poll() is None:
        try:
            proc.kill()
        except OSError:
            pass
    try:
        proc.wait(timeout=10)
    except Exception:  # noqa: BLE001
        log.warning("adbd: board process %s did not exit after SIGKILL", proc.pid)


# -- services: each runs on its own thread with its stream; returning closes the stream ---------------------------

class _ShellSession:
    """A board command behind a shell/exec stream: pipes (raw) or a pty, v1 (bare bytes) or v2 (packets)."""

    def __init__(self, daemon: AdbDaemon, stream: Stream, command: str, *, v2: bool, use_pty: bool,
                 env: dict[str, str]) -> None:
        self.daemon, self.stream, self.command = daemon, stream, command
        self.v2, self.use_pty, self.env = v2, use_pty, env
        self.stdin_fd: int | None = None
        self.fds: list[int] = []

    def run(self) -> None:
        try:
            outputs = self._spawn()
        except OSError as exc:
            for fd in self.fds:
                os.close(fd)
            message = f"adbd: cannot start the board shell: {exc}\n".encode()
            if self.v2:  # exit 127, as a shell reports a command it cannot run
                message = wire.shell_packet(wire.SHELL_STDERR, message) + wire.shell_packet(wire.SHELL_EXIT, b"\x7f")
            self.stream.write(message)
            return
        proc = self.proc
        self.daemon.track_process(proc)
        self.stream.on_close(lambda: kill_process(proc))
        feeder = threading.Thread(target=self._feed_input, name="adbd-stdin", daemon=True)
        feeder.start()
        try:
            self._pump_output(outputs)
            while proc.poll() is None and not self.stream.closed.is_set():
                try:
                    proc.wait(timeout=0.5)
                except subprocess.TimeoutExpired:
                    pass
            if self.v2 and proc.returncode is not None:
                code = proc.returncode if proc.returncode >= 0 else 128 - proc.returncode
                self.stream.write(wire.shell_packet(wire.SHELL_EXIT, bytes([code & 0xFF])))
        finally:
            self.stream.close()  # kills the process if still running, wakes the input feeder
            feeder.join(10)
            for fd in self.fds:
                os.close(fd)
            self.daemon.untrack_process(proc)

    def _spawn(self) -> dict[int, int]:
        ctx = self.daemon.ctx
        if self.use_pty:
            master, slave = pty.openpty()
            self.fds.append(master)
            try:
                self.proc = ctx.spawn_shell(self.command or None, env=self.env, login=not self.command,
                                            stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
            finally:
                os.close(slave)
            self.stdin_fd = master
            return {master: wire.SHELL_STDOUT}
        # Raw with no command reads a script from stdin (``adb shell < script.sh``), non-interactively.
        self.proc = ctx.spawn_shell(self.command or "exec /bin/sh", env=self.env, stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE if self.v2 else subprocess.STDOUT)
        outputs = {os.dup(self.proc.stdout.fileno()): wire.SHELL_STDOUT}
        if self.v2:
            outputs[os.dup(self.proc.stderr.fileno())] = wire.SHELL_STDERR
        self.stdin_fd = os.dup(self.proc.stdin.fileno())
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        self.fds += [*outputs, self.stdin_fd]
        return outputs

    def _pump_output(self, outputs: dict[int, int]) -> None:
        chunk = self.stream.max_payload - (wire.SHELL_HEADER.size if self.v2 else 0)
        with selectors.DefaultSelector() as sel:
            for fd, packet_id in outputs.items():
                sel.register(fd, selectors.EVENT_READ, packet_id)
            while sel.get_map() and not self.stream.closed.is_set():
                for key, _ in sel.select(timeout=0.5):
                    try:
                        data = os.read(key.fd, chunk)
                    except OSError:  # EIO: every holder of the pty's slave side is gone
                        data = b""
                    if not data:
                        sel.unregister(key.fd)
                    elif self.v2:
                        self.stream.write(wire.shell_packet(key.data, data))
                    else:
                        self.stream.write(data)

    def _feed_input(self) -> None:
        pending = bytearray()
        while data := self.stream.read():
            if not self.v2:
                self._to_stdin(data)
                continue
            pending += data
            for packet_id, payload in wire.split_shell_packets(pending):
                if packet_id == wire.SHELL_STDIN:
                    self._to_stdin(payload)
                elif packet_id == wire.SHELL_CLOSE_STDIN and not self.use_pty and self.stdin_fd is not None:
                    self.fds.remove(self.stdin_fd)
                    os.close(self.stdin_fd)  # a pty cannot close only its input: adbd leaves it open too
                    self.stdin_fd = None
                elif packet_id == wire.SHELL_WINSIZE and self.use_pty:
                    size = wire.parse_winsize(payload)
                    if size:
                        fcntl.ioctl(self.stdin_fd, termios.TIOCSWINSZ, struct.pack("HHHH", *size))

    def _to_stdin(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view and self.stdin_fd is not None:
                view = view[os.write(self.stdin_fd, view):]
        except OSError:
            pass  # the command exited or closed its input: what it did not read is lost, as on a board


def _shell(daemon: AdbDaemon, stream: Stream, args: list[str], command: str) -> None:
    """``shell[,v2][,TERM=x][,raw|pty]:cmd``; like adbd, no command means a pty, a command means pipes."""
    env = {"TERM": a[5:] for a in args if a.startswith("TERM=")}
    use_pty = "pty" in args or ("raw" not in args and not command)
    _ShellSession(daemon, stream, command, v2="v2" in args, use_pty=use_pty, env=env).run()


def _exec(daemon: AdbDaemon, stream: Stream, args: list[str], command: str) -> None:
    """``exec:cmd``: binary-clean output over pipes, stderr merged into it as adbd does."""
    _ShellSession(daemon, stream, command, v2=False, use_pty=False, env={}).run()


def _reboot(daemon: AdbDaemon, stream: Stream, args: list[str], mode: str) -> None:
    daemon.ctx.request_reboot(mode)  # returns at once; asked before the CLI sees EOF and returns
    stream.close()


def _answer(text: str) -> Callable[[AdbDaemon, Stream, list[str], str], None]:
    return lambda daemon, stream, args, argument: stream.write(text.encode())


def _sync(daemon: AdbDaemon, stream: Stream, args: list[str], argument: str) -> None:
    SyncSession(daemon.ctx, stream).run()


SERVICES = {
    "shell": _shell, "exec": _exec, "sync": _sync, "reboot": _reboot,
    "root": _answer("adbd is already running as root\n"),
    "remount": _answer("remount succeeded\n"),
}


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
            data = self.stream.read()
            if not data:
                raise StreamClosed("sync stream closed")
            self._in += data
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
                    self.stream.conn.reset()
                    raise StreamClosed("adb-drop fault")
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
                    self.stream.conn.reset()
                    raise StreamClosed("adb-drop fault")
        self._reply(wire.sync_status(b"DONE"))
        return True
