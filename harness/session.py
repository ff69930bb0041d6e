"""One test run's shared state: its id and report folder, the inventory, the adb server, the open boards.

Boards open lazily (the first test that needs one) and once per run; a board that fails to open is remembered
as broken so every later request fails at once with the same diagnosis instead of retrying for minutes.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

from harness.board import Board
from harness.config.loader import Inventory
from harness.config.models import BoardSpec
from harness.connect import open_board
from harness.errors import BoardError, HarnessError

log = logging.getLogger("npu-hil.session")


def _free_port() -> int:
    """A free loopback port for this run's adb server (started right away, so nobody takes it meanwhile)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"


class RunSession:
    def __init__(self, *, inventory: Inventory, specs: list[BoardSpec], reports_dir: Path, run_id: str | None = None,
                 toolkit: str | None = None) -> None:
        self.inventory = inventory
        self.specs = specs
        self.run_id = run_id or new_run_id()
        self.run_dir = Path(reports_dir) / self.run_id
        self.toolkit = toolkit
        self.boards: dict[str, Board] = {}
        self.failures: dict[str, str] = {}
        self._adb_server: Any = None
        self._started_sims: list[str] = []

    def adb_server(self) -> Any:
        """The run's own adb server (started on first use, on a free port, with its own HOME)."""
        if self._adb_server is None:
            from harness.links.adb_server import AdbServer

            home = self.run_dir / ".adb"
            home.mkdir(parents=True, exist_ok=True)
            self._adb_server = AdbServer(port=_free_port(), home=home)
            self._adb_server.start()
        return self._adb_server

    def board(self, name: str) -> Board:
        if name in self.failures:
            raise BoardError(self.failures[name])
        if name not in self.boards:
            spec = next(s for s in self.specs if s.name == name)
            needs_adb = spec.is_simulated or spec.adb is not None
            try:
                self.run_dir.mkdir(parents=True, exist_ok=True)
                board = open_board(spec, self.inventory, run_dir=self.run_dir,
                                   adb_server=self.adb_server() if needs_adb and not (spec.adb and spec.adb.server)
                                   else None)
            except HarnessError as exc:
                self.failures[name] = str(exc)
                raise
            if self.toolkit:
                board.toolkit = self.toolkit
            if board.owns_simulator:
                self._started_sims.append(name)
            self.boards[name] = board
        return self.boards[name]

    def close(self) -> None:
        for board in self.boards.values():
            board.close()
        self.boards.clear()
        if self._started_sims:
            from harness.sim import api

            for name in self._started_sims:
                try:
                    api.down(name)
                except HarnessError as exc:
                    log.warning("stopping simulated board %s: %s", name, exc)
        if self._adb_server is not None:
            self._adb_server.stop()
            self._adb_server = None
