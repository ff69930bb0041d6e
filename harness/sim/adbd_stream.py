"""One adb stream of the simulated board's adbd, and what the services on it may ask of the daemon.

Why a module of its own: the services (:mod:`harness.sim.adbd_shell`, :mod:`harness.sim.adbd_sync`) work on
streams and the daemon (:mod:`harness.sim.adbd`) dispatches streams to them; with the stream here, below both,
each imports downwards only. The daemon and its connections are seen through the two small protocols below.
"""

from __future__ import annotations

import logging
import queue
import subprocess
import threading
from typing import Callable, NoReturn, Protocol

from harness.sim import adb_wire as wire
from harness.sim.context import BoardContext

log = logging.getLogger("npu-hil.sim.adbd")
#: How long a stream waits for the host's OKAY before it gives the connection up as dead.
ACK_DEADLINE_S = 60.0


class StreamConnection(Protocol):
    """What a stream needs of the TCP connection it lives on (:class:`harness.sim.adbd.Connection`)."""

    max_payload: int

    def send(self, command: int, arg0: int, arg1: int, data: bytes | memoryview = b"") -> None: ...
    def forget(self, stream: Stream) -> None: ...
    def reset(self) -> None: ...


class ServiceHost(Protocol):
    """What a service needs of the daemon (:class:`harness.sim.adbd.AdbDaemon`): the board, and a register of
    the board processes it starts, so stopping the daemon kills them."""

    ctx: BoardContext

    def track_process(self, proc: subprocess.Popen) -> None: ...
    def untrack_process(self, proc: subprocess.Popen) -> None: ...


class StreamClosed(ConnectionError):
    """The stream (or its whole connection) is gone; the service using it stops."""


class Stream:
    """One adb stream: host-to-device data is queued and OKAYed when taken; device-to-host waits for OKAYs."""

    def __init__(self, conn: StreamConnection, local_id: int, remote_id: int) -> None:
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

    def read_some(self) -> bytes:
        """As read(), for services that cannot stop half-way: a closed stream raises StreamClosed."""
        data = self.read()
        if not data:
            raise StreamClosed("stream closed")
        return data

    def drop_connection(self, reason: str) -> NoReturn:
        """Reset the whole TCP connection under this stream (fault ``adb-drop``) and stop the calling service."""
        self.conn.reset()
        raise StreamClosed(reason)

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
