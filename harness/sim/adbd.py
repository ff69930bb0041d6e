"""The simulated board's adb device endpoint: the device side of adb over TCP, for the real adb server.

Why our own: the harness must be tested against the real ``adb`` server and CLI, and those only talk to a
device. This speaks exactly what Debian adb 29 uses (reference/adb-notes.md): CNXN without AUTH, streams with
one WRTE in flight each way, shell v1/v2 (pipes or a pty), exec, sync (STAT/STA2/LST2, LIST/LIS2, SEND, RECV),
reboot, root and remount. Board commands run through ``BoardContext.spawn_shell`` (busybox in the board root);
files are reached through ``ctx.host_path`` so nothing outside the board root is touched. Faults are read at
each use: ``adb-offline`` (connections never get a CNXN), ``adb-drop=N`` (the TCP connection is reset after N
bytes of a file transfer), ``userdata-full`` (a push under /userdata fails with ENOSPC).

This module is the daemon, its connections and stream dispatch; the services that do the work live beside it:
:mod:`harness.sim.adbd_shell` (shell and exec) and :mod:`harness.sim.adbd_sync` (file transfer).
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
import time
from typing import Callable

from harness.sim import adb_wire as wire
from harness.sim import board_exec
from harness.sim.adbd_shell import exec_service, shell_service
from harness.sim.adbd_stream import Stream, StreamClosed
from harness.sim.adbd_sync import sync_service
from harness.sim.context import BoardContext

log = logging.getLogger("npu-hil.sim.adbd")
#: The features adb 29 looks for (its host CNXN offers these); ``remount_shell`` is left out on purpose, so
#: ``adb remount`` uses the ``remount:`` service instead of a board ``remount`` command busybox lacks.
FEATURES = ["shell_v2", "cmd", "stat_v2", "ls_v2", "fixed_push_mkdir", "fixed_push_symlink_timestamp"]
#: Socket timeout: bounds every send; an idle read just waits again.
IO_TIMEOUT_S = 30.0


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
        # "recovery" while the board runs its recovery system: ``adb devices`` then lists it as recovery
        return wire.banner(self.ctx.extra.get("adb_state", "device"), props, FEATURES)

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
            board_exec.kill(proc)
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


# -- services: each runs on its own thread with its stream; returning closes the stream ---------------------------

def _reboot(daemon: AdbDaemon, stream: Stream, args: list[str], mode: str) -> None:
    daemon.ctx.request_reboot(mode)  # returns at once; asked before the CLI sees EOF and returns
    stream.close()


def _answer(text: str) -> Callable[[AdbDaemon, Stream, list[str], str], None]:
    return lambda daemon, stream, args, argument: stream.write(text.encode())


#: Service name (before ``:`` and ``,``) to handler(daemon, stream, args, argument).
SERVICES = {
    "shell": shell_service, "exec": exec_service, "sync": sync_service, "reboot": _reboot,
    "root": _answer("adbd is already running as root\n"),
    "remount": _answer("remount succeeded\n"),
}

