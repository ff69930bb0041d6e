"""The board-to-simulator "syscall gate": how the board's userspace reaches its simulated kernel and NPU.

``/usr/libexec/sim-gate`` on the board (busybox ``nc``) connects to this loopback server and sends the argument
count, the working directory and the arguments, NUL-separated. A handler streams output lines back; lines sent
with :meth:`GateReply.err` reach the caller's stderr, ``@@ka`` keep-alive lines are dropped, and the last line
carries the exit status. When the caller goes away (its adb or ssh session closed), :attr:`GateReply.closed`
turns true so a long handler can stop.
"""

from __future__ import annotations

import logging
import socket
import threading
from dataclasses import dataclass
from typing import Callable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GateRequest:
    cwd: str
    args: list[str]  # args[0] is the operation, e.g. "reboot", "rknn_server", "npu"


class GateReply:
    """The reply stream of one gate request, and (for a session such as the board's runtime library) what the
    caller sends after its request: :meth:`read_line` and :meth:`read_exact`."""

    def __init__(self, conn: socket.socket, pending: bytes = b"") -> None:
        self._conn = conn
        self._pending = pending
        self.closed = False

    def _fill(self) -> bool:
        try:
            chunk = self._conn.recv(65536)
        except OSError:
            chunk = b""
        self._pending += chunk
        return bool(chunk)

    def read_line(self, limit: int = 4096) -> str | None:
        """The caller's next line (without its newline), None when it closed or sent a line past ``limit``."""
        while b"\n" not in self._pending:
            if len(self._pending) > limit or not self._fill():
                return None
        line, _, self._pending = self._pending.partition(b"\n")
        return line.decode("utf-8", "replace")

    def read_exact(self, size: int) -> bytes | None:
        """The caller's next ``size`` bytes, None when it closed first."""
        while len(self._pending) < size:
            if not self._fill():
                return None
        data, self._pending = self._pending[:size], self._pending[size:]
        return data

    def send_bytes(self, data: bytes) -> None:
        """Raw bytes to the caller (a session's binary reply body)."""
        if not self.closed:
            try:
                self._conn.sendall(data)
            except OSError:
                self.closed = True

    def _send(self, text: str) -> None:
        if self.closed:
            return
        try:
            self._conn.sendall(text.encode("utf-8", "replace"))
        except OSError:
            self.closed = True

    def out(self, line: str = "") -> None:
        for part in line.split("\n"):
            self._send(part + "\n")

    def err(self, line: str) -> None:
        for part in line.split("\n"):
            self._send("@@err " + part + "\n")

    def peer_gone(self) -> bool:
        """True once the board-side caller has gone (its command was killed).

        busybox nc half-closes after sending the request, so an empty read means nothing; instead a keep-alive
        line (ignored by the board's sim-gate) is sent: once the caller is gone the kernel answers it with a reset.
        """
        self._send("@@ka\n")
        return self.closed


Handler = Callable[[GateRequest, GateReply], int]


def _read_request(conn: socket.socket) -> tuple[GateRequest, bytes]:
    """The request, and any bytes the caller already sent after it (a session's first call)."""
    data = b""
    while True:
        head, sep, _ = data.partition(b"\0")
        if sep:
            count = int(head)
            if data.count(b"\0") >= count + 1:
                fields = data.split(b"\0", count + 1)
                decoded = [f.decode("utf-8", "replace") for f in fields[1:count + 1]]
                rest = fields[count + 1] if len(fields) > count + 1 else b""
                return GateRequest(cwd=decoded[0], args=decoded[1:]), rest
        chunk = conn.recv(65536)
        if not chunk:
            raise ConnectionError("gate request cut short")
        data += chunk
        if len(data) > 1 << 20:
            raise ConnectionError("gate request too large")


class Gate:
    """Serves gate requests on a loopback listener, one thread each, dispatching on the first argument."""

    def __init__(self, listener: socket.socket) -> None:
        self.listener = listener
        self.handlers: dict[str, Handler] = {}
        self._stopping = threading.Event()

    @property
    def address(self) -> str:
        host, port = self.listener.getsockname()[:2]
        return f"{host}:{port}"

    def register(self, op: str, handler: Handler) -> None:
        self.handlers[op] = handler

    def start(self) -> None:
        threading.Thread(target=self._accept_loop, name="sim-gate", daemon=True).start()

    def stop(self) -> None:
        self._stopping.set()
        try:
            self.listener.close()
        except OSError:
            pass

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # sessions trade small request/replies
            threading.Thread(target=self._serve, args=(conn,), name="sim-gate-req", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        reply = GateReply(conn)
        code = 1
        try:
            request, pending = _read_request(conn)
            reply = GateReply(conn, pending)  # what the caller sent after its request is the session's start
            op = request.args[0] if request.args else ""
            handler = self.handlers.get(op)
            if handler is None:
                reply.err(f"{op or 'sim-gate'}: not supported on this board")
                code = 38  # ENOSYS
            else:
                code = handler(request, reply)
        except Exception as exc:  # a handler bug must not take the board's kernel down
            log.exception("gate request failed")
            reply.err(f"kernel: {type(exc).__name__}: {exc}")
        finally:
            reply._send(f"@@exit {code}\n")
            conn.close()
