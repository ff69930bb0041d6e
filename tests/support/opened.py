"""A simulated board opened the way a run opens one (open_board over its real links), for harness-level tests.

Why: the Board, flashing and recovery tests each need one running board per module with its own simulator home
and adb server, and must stop both by PID however the module ends; written once here.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

import pytest

from harness.board import Board
from harness.config.loader import Inventory
from harness.connect import open_board
from harness.links.adb_server import AdbServer
from harness.sim import api


@dataclass
class Opened:
    board: Board
    server: AdbServer


@contextlib.contextmanager
def opened_sim_board(tmp_path_factory: pytest.TempPathFactory, name: str, adb_port: int) -> Iterator[Opened]:
    """Start ``name`` (sim-<profile>) in a fresh simulator home, open it, and stop everything afterwards."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NPU_HIL_SIM_HOME", str(tmp_path_factory.mktemp("sim-home")))  # never share a running board
        run_dir = tmp_path_factory.mktemp("run")
        server = AdbServer(port=adb_port, home=run_dir / ".adb").start()
        inventory = Inventory(path=None)
        try:
            board = open_board(inventory.get(name), inventory, run_dir=run_dir, adb_server=server)
        except BaseException:
            api.down(name)
            server.stop()
            raise
        try:
            yield Opened(board, server)
        finally:
            board.close()
            api.down(name)  # stops the supervisor and the board by PID
            server.stop()
