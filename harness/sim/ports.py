"""Stable loopback addresses for a simulated board that vanish while it is off, as a real board's do.

The supervisor *reserves* a port with a bound but not listening socket (SO_REUSEPORT): connections are refused,
nobody else can take the port. Each boot, the board process binds its own listening socket to the same port
(also SO_REUSEPORT) and closes it on power off. Ports come from below Linux's ephemeral range (so an outgoing
connection never squats on one) and outside 5555-5585, which the adb server probes for emulators, and off 20408,
labgrid's default coordinator port.
"""

from __future__ import annotations

import random
import socket

PORT_RANGE = (20000, 32000)
ADB_EMULATOR_PORTS = range(5555, 5586)
#: labgrid's default coordinator port (``npu-hil lab up`` listens there): a board must not squat on it.
LABGRID_PORTS = (20408,)


def _socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    return sock


def reserve(host: str = "127.0.0.1", *, tries: int = 200) -> socket.socket:
    """A bound, non-listening socket holding a free port for the board's lifetime."""
    rng = random.SystemRandom()
    for _ in range(tries):
        port = rng.randrange(*PORT_RANGE)
        if port in ADB_EMULATOR_PORTS or port in LABGRID_PORTS:
            continue
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            probe.bind((host, port))  # without SO_REUSEPORT: fails if anyone (reserving or not) holds it
        except OSError:
            continue
        finally:
            probe.close()
        sock = _socket()
        try:
            sock.bind((host, port))
            return sock
        except OSError:
            sock.close()
    raise OSError(f"no free port in {PORT_RANGE} on {host}")


def listen(host: str, port: int, backlog: int = 16) -> socket.socket:
    """The board's listening socket on a reserved port."""
    sock = _socket()
    sock.bind((host, port))
    sock.listen(backlog)
    return sock


def listen_ephemeral(host: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((host, 0))
    sock.listen(16)
    return sock
