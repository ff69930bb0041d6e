"""One test run's shared state: its id and report folder, the inventory, the adb server, the open boards.

Boards open lazily (the first test that needs one) and once per run; a board that fails to open is remembered
as broken so every later request fails at once with the same diagnosis instead of retrying for minutes.
A board is locked (:mod:`harness.lab.locks`) before it is opened and released after it is closed, so two runs
(two users, two CI jobs, two xdist workers) never drive one board at the same time.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.board import Board
from harness.config.loader import Inventory
from harness.config.models import BoardSpec
from harness.connect import open_board, power_for
from harness.errors import BoardError, HarnessError
from harness.lab.locks import BoardLock, lock_for
from harness.links.ports import free_port
from harness.recovery import DEFAULT_BUDGET_S, FIRST_OPEN_TIMEOUT_S, Recovery, Step, recover_lost_links

log = logging.getLogger("npu-hil.session")


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"


class RunSession:
    def __init__(self, *, inventory: Inventory, specs: list[BoardSpec], reports_dir: Path, run_id: str | None = None,
                 toolkit: str | None = None, lock_dir: str | Path | None = None, board_wait: float = 0.0,
                 recovery_budget: float = DEFAULT_BUDGET_S) -> None:
        self.inventory = inventory
        self.specs = specs
        self.run_id = run_id or new_run_id()
        self.run_dir = Path(reports_dir) / self.run_id
        self.toolkit = toolkit
        self.boards: dict[str, Board] = {}
        self.failures: dict[str, str] = {}
        self._adb_server: Any = None
        self._started_sims: list[str] = []
        self.lock_dir = lock_dir
        self.board_wait = board_wait
        self.locks: dict[str, BoardLock] = {}
        self.recovery_budget = recovery_budget
        #: Called with (board name, Recovery) after every climb of the ladder (the plugin records it).
        self.on_recovery: Callable[[str, Recovery], None] | None = None

    def lock_of(self, spec: BoardSpec) -> BoardLock:
        """The lock this run takes (or took) for ``spec``."""
        if spec.name not in self.locks:
            self.locks[spec.name] = lock_for(spec, self.inventory, lock_dir=self.lock_dir, run_id=self.run_id)
        return self.locks[spec.name]

    def adb_server(self) -> Any:
        """The run's own adb server (started on first use, on a free port, with its own HOME)."""
        if self._adb_server is None:
            from harness.links.adb_server import AdbServer

            home = self.run_dir / ".adb" / str(os.getpid())  # xdist workers of one run each have their own
            home.mkdir(parents=True, exist_ok=True)
            self._adb_server = AdbServer(port=free_port(), home=home)  # started at once: nobody takes it meanwhile
            self._adb_server.start()
        return self._adb_server

    def board(self, name: str) -> Board:
        if name in self.failures:
            raise BoardError(self.failures[name])
        if name not in self.boards:
            spec = next(s for s in self.specs if s.name == name)
            needs_adb = spec.is_simulated or spec.adb is not None
            lock = None
            try:
                lock = self.lock_of(spec)
                lock.acquire(self.board_wait)
                self.run_dir.mkdir(parents=True, exist_ok=True)
                adb_server = self.adb_server() if needs_adb and not (spec.adb and spec.adb.server) else None
                started = time.monotonic()
                try:
                    board = open_board(spec, self.inventory, run_dir=self.run_dir, adb_server=adb_server,
                                       health_timeout=self._first_open_timeout(spec))
                except BoardError as exc:  # unreachable at the start of the run: power-cycle it before giving up
                    board = self._open_after_power_cycle(spec, exc, time.monotonic() - started, adb_server)
            except HarnessError as exc:
                self.failures[name] = str(exc)
                if lock is not None:
                    lock.release()  # a board we could not open is free for whoever can
                raise
            if self.toolkit:
                board.toolkit = self.toolkit
            if board.owns_simulator:
                self._started_sims.append(name)
            self.boards[name] = board
        return self.boards[name]

    @staticmethod
    def _first_open_timeout(spec: BoardSpec) -> float | None:
        """How long the run's first open waits for the board: a board with power control gets
        :data:`~harness.recovery.FIRST_OPEN_TIMEOUT_S` (a board up and running answers well within it; one that
        does not is power-cycled and then given its boot timeout); one without, the default boot wait, since
        nothing else could bring it back."""
        from harness.links.power import NoPower

        return None if isinstance(power_for(spec), NoPower) else FIRST_OPEN_TIMEOUT_S

    def _open_after_power_cycle(self, spec: BoardSpec, failure: BoardError, open_seconds: float,
                                adb_server: Any) -> Board:
        """The ladder for a board that does not answer when the run starts: its links could not be opened, so
        there is nothing to reconnect or reboot over; a power cycle, then one more open, within the budget."""
        from harness.links.power import NoPower

        power = power_for(spec)
        if isinstance(power, NoPower):
            raise failure
        reason = f"unreachable at the start of the run: {str(failure).splitlines()[0]}"
        steps = [Step("open", False, round(open_seconds, 3), str(failure).splitlines()[0])]
        started = time.monotonic()
        try:
            power.cycle()
            board = open_board(spec, self.inventory, run_dir=self.run_dir, adb_server=adb_server,
                               health_timeout=max(5.0, min(self.recovery_budget, 120.0)), booting=True)
        except HarnessError as exc:
            steps.append(Step("power cycle", False, round(time.monotonic() - started, 3), str(exc).splitlines()[0]))
            self._recovered(spec.name, Recovery("broken", tuple(steps), reason))
            raise BoardError(f"{failure}; a power cycle did not bring it back: {exc}") from None
        steps.append(Step("power cycle", True, round(time.monotonic() - started, 3)))
        self._recovered(spec.name, Recovery("power-cycled", tuple(steps), reason))
        return board

    def ensure_usable(self, board: Board) -> Recovery | None:
        """Before a test: a board whose links failed during an earlier test climbs the ladder if it does not
        answer (:func:`harness.recovery.recover_lost_links`, within the run's budget); what the ladder did, or
        None when the board was not suspect or answered."""
        if board.suspect is None or board.broken:
            return None
        recovery = recover_lost_links(board, budget=self.recovery_budget)
        if recovery is not None:
            self._recovered(board.name, recovery)
        return recovery

    def _recovered(self, name: str, recovery: Recovery) -> None:
        log.warning("%s: %s: %s", name, recovery.reason, recovery.describe())
        if self.on_recovery is not None:
            self.on_recovery(name, recovery)

    def close(self) -> None:
        """Close the boards, stop the simulators this run started, then let the boards go (also after Ctrl-C:
        pytest_unconfigure calls this)."""
        try:
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
                self._started_sims.clear()
            if self._adb_server is not None:
                self._adb_server.stop()
                self._adb_server = None
        finally:
            for name, lock in self.locks.items():
                try:
                    lock.release()
                except HarnessError as exc:
                    log.warning("releasing the lock of %s: %s", name, exc)
