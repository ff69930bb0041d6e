"""Whole simulated boards as separate processes (``harness.sim.api``), reached the way a lab reaches a board.

Why: the tests of ``npu-hil sim`` and of the manual's faults start boards in a simulator home of their own,
talk to them only through the endpoints the board advertised (console pty, SSH), and must prove at the end
that ``api.down`` left no process behind. These helpers were first written in ``test_sim_board.py``; they live
here so that no test module imports another one.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paramiko
import pytest

from harness.links.console import ConsoleLink
from harness.sim import api
from support.processes import leftovers

BOOT_TIMEOUT = 30.0


def sim_cli(*args: str, home: Path, timeout: float = 60.0) -> subprocess.CompletedProcess:
    """``npu-hil sim ARGS`` as a real subprocess of this interpreter, against the simulator home ``home``."""
    env = dict(os.environ, NPU_HIL_SIM_HOME=str(home))
    return subprocess.run([sys.executable, "-m", "harness", "sim", *args], env=env, capture_output=True, text=True,
                          check=False, timeout=timeout, stdin=subprocess.DEVNULL,
                          cwd=Path(__file__).resolve().parents[2])


def read_json(path: Path) -> dict[str, Any]:
    """A board's state file ({} while it is missing or being replaced)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


class SimBoards:
    """The boards one test module starts in its own simulator home; :meth:`stop_all` proves nothing is left."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.names: list[str] = []

    def up(self, profile: str, **kwargs: Any) -> dict[str, Any]:
        name = kwargs.get("name") or profile
        if name not in self.names:
            self.names.append(name)
        return api.up(profile, timeout=BOOT_TIMEOUT, **kwargs)

    def pids(self, name: str) -> list[int]:
        """The board's supervisor and its current board-OS process (read before ``down``: it rewrites status)."""
        pids = []
        for file, key in (("endpoints.json", "supervisor_pid"), ("status.json", "board_pid")):
            pid = read_json(self.home / name / file).get(key)
            if pid:
                pids.append(int(pid))
        return pids

    def down(self, name: str) -> list[str]:
        """Stop one board; returns what is left of it (empty when the board is really gone)."""
        pids = self.pids(name)
        api.down(name)
        return leftovers(pids, self.home / name)

    def stop_all(self) -> None:
        left = []
        for name in self.names:
            left += self.down(name)
        left += leftovers([], self.home)
        assert not left, f"processes left after api.down: {left}"

    def wait_boot(self, name: str, boot: int, timeout: float = BOOT_TIMEOUT) -> dict[str, Any]:
        """Wait until boot number ``boot`` of the board is running (a stale "running" of the last boot won't do)."""
        deadline = time.monotonic() + timeout
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = read_json(self.home / name / "status.json")
            if status.get("boot") == boot and status.get("state") == "running":
                return status
            time.sleep(0.05)
        raise AssertionError(f"{name}: boot {boot} not running within {timeout} s; status {status}")


def sim_boards(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimBoards]:
    """Body of a module-scoped fixture: a fresh NPU_HIL_SIM_HOME for the module, every board downed after."""
    home = tmp_path_factory.mktemp("simhome")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NPU_HIL_SIM_HOME", str(home))
        boards = SimBoards(home)
        try:
            yield boards
        finally:
            boards.stop_all()


def sim_fixture() -> Any:
    """A module-scoped fixture named ``sim`` (assign it as ``sim = sim_fixture()``): :func:`sim_boards`."""

    @pytest.fixture(scope="module", name="sim")
    def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimBoards]:
        yield from sim_boards(tmp_path_factory)

    return sim


def open_console(endpoints: dict[str, Any], capture: Path) -> ConsoleLink:
    """The harness's console link, logged in with what the board advertised, capturing to ``capture``."""
    console = endpoints["console"]
    return ConsoleLink(console["path"], baud=console["baud"], capture=capture, login=console["login"],
                       password=console["password"]).open()


def ssh_client(endpoints: dict[str, Any]) -> paramiko.SSHClient:
    """paramiko with strict host-key checking against the key the board advertised in its endpoints."""
    ssh = endpoints["ssh"]
    client = paramiko.SSHClient()
    key_type, key_b64 = ssh["host_key"].split()[:2]
    host_key = paramiko.PKey.from_type_string(key_type, base64.b64decode(key_b64))
    client.get_host_keys().add(f"[{ssh['host']}]:{ssh['port']}", key_type, host_key)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(ssh["host"], port=ssh["port"], username=ssh["user"], password=ssh["password"], timeout=10,
                   banner_timeout=10, auth_timeout=10, allow_agent=False, look_for_keys=False)
    return client


def ssh_exec(client: paramiko.SSHClient, command: str, timeout: float = 30.0) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of one command over ``client``; the channel has a ``timeout`` deadline."""
    _, stdout, stderr = client.exec_command(command, timeout=timeout)
    out, err = stdout.read().decode(), stderr.read().decode()
    return stdout.channel.recv_exit_status(), out, err
