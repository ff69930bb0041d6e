"""The Debian ``adb`` CLI on an adb server of the test's own, for tests that reach simulated boards over adb.

Why: a test must never touch the user's adb server (port 5037, ~/.android), and every adb call must have a
deadline; each test module passes its own port, and the server's PID is checked to be gone at the end.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.links.adb_server import AdbServer
from support.processes import alive
from support.sim import BOOT_TIMEOUT


class AdbCli:
    """The Debian ``adb`` CLI on our own server (own port, HOME, TMPDIR); every call has a deadline."""

    def __init__(self, port: int, home: Path) -> None:
        self.port = port
        self.server = AdbServer(port=port, home=home, usb=False)

    def start(self) -> AdbCli:
        self.server.start(timeout=15)
        return self

    def stop(self) -> None:
        """``adb kill-server``, then the server's PID is killed if it is still there."""
        try:
            self.run("kill-server", timeout=10)
        finally:
            self.server.stop()

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(["adb", "-P", str(self.port), *args], env=self.server.environment(),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def run(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
        """Run one adb command; on its deadline the client is killed and TimeoutExpired raised."""
        proc = self.popen(*args)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
        return subprocess.CompletedProcess(proc.args, proc.returncode, out.decode(errors="replace"),
                                           err.decode(errors="replace"))

    def shell(self, serial: str, command: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
        return self.run("-s", serial, "shell", command, timeout=timeout)

    def state(self, serial: str) -> str | None:
        """The serial's state in ``adb devices`` (device, offline, ...), None when it is not listed."""
        for line in self.run("devices", timeout=10).stdout.splitlines()[1:]:
            parts = line.split()
            if len(parts) >= 2 and parts[0] == serial:
                return parts[1]
        return None

    def connect(self, serial: str, timeout: float = BOOT_TIMEOUT) -> None:
        """Bring ``serial`` to ``device`` state: the server retries a lost device only every 10 s, so loop
        disconnect + connect ourselves (adb-notes.md)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.state(serial) == "device":
                return
            if time.monotonic() >= deadline:
                raise AssertionError(f"adb: {serial} not in device state within {timeout} s: "
                                     f"{self.run('devices', timeout=10).stdout!r}")
            self.run("disconnect", serial, timeout=10)
            try:
                self.run("connect", serial, timeout=min(5.0, max(0.5, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                pass
            time.sleep(0.2)


def adb_cli(tmp_path_factory: pytest.TempPathFactory, port: int) -> Iterator[AdbCli]:
    """Body of a module-scoped fixture: our own adb server on ``port``, killed (and its PID checked) after."""
    adb = AdbCli(port, tmp_path_factory.mktemp(f"adb{port}")).start()
    pid = adb.server.pid
    try:
        yield adb
    finally:
        adb.stop()
        assert pid is not None and not alive(pid), f"adb server pid {pid} survived kill-server"


def adb_fixture(port: int) -> Any:
    """A module-scoped fixture named ``adb`` on server port ``port`` (assign it as ``adb = adb_fixture(PORT)``)."""

    @pytest.fixture(scope="module", name="adb")
    def adb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdbCli]:
        yield from adb_cli(tmp_path_factory, port)

    return adb
