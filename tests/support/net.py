"""Loopback sockets for the simulated boards' endpoints.

Why: every simulated endpoint (adbd, sshd, gate) is handed a listening socket on 127.0.0.1 that the test made,
so the port is known before the daemon starts and can be reused for a "rebooted" daemon on the same address.
"""

from __future__ import annotations

import socket


def listen(port: int = 0) -> socket.socket:
    """A TCP socket listening on 127.0.0.1:``port`` (0: any free port), with SO_REUSEADDR for quick re-binds."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(8)
    return sock


def refuses(host: str, port: int) -> bool:
    """True when a TCP connect to ``host:port`` is refused (nothing listens); False when it is accepted."""
    try:
        socket.create_connection((host, port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False
