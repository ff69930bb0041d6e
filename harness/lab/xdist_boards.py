"""Several boards at once on one host with pytest-xdist: one worker per board, one run id, one report folder.

    pytest -n auto --board-tag nightly suites/      # as many workers as selected boards

Why a scheduler of our own instead of ``xdist_group`` marks and ``--dist loadgroup``: loadgroup appends
``@group`` to every node id, so results.json, JUnit and allure would name tests differently with and without
``-n`` (and baselines keyed by node id would stop matching). :class:`BoardScheduling` is xdist's own
LoadScopeScheduling with the board as the scope: every test of board B goes to one worker, which alone opens
and locks B (two workers of one run would otherwise fight over B's lock). The board is read from the node id's
parameter part, whose ``board`` id is the board's name (``test_x[sim-rk3588]``, ``test_y[pkg-sim-rk3588]``).
A test that uses no board joins a board's unit round-robin, so work units == boards and, with one worker per
board, each worker gets exactly one board. With a single board every test is that board's (one worker).

The controller fixes the run id and hands it to the workers (``pytest_configure_node``): they parse the
command line themselves, so without this each would invent its own reports/<run-id>/.
"""

from __future__ import annotations

import os
from typing import Any, Literal

import pytest

RUN_ID_KEY = "npu_hil_run_id"
Role = Literal["single", "controller", "worker"]


def role(config: pytest.Config) -> Role:
    """``worker`` inside an xdist worker, ``controller`` in the process that only distributes, else ``single``."""
    if hasattr(config, "workerinput"):
        return "worker"
    if config.getoption("dist", "no") != "no" and config.getoption("tx", None):
        return "controller"
    return "single"


def worker_id(config: pytest.Config) -> str | None:
    """``gw0``, ``gw1``... inside a worker, else None."""
    workerinput = getattr(config, "workerinput", None)
    return workerinput.get("workerid") if workerinput else None


def worker_count(config: pytest.Config) -> int:
    """How many workers the run has (1 without xdist)."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput:
        return int(workerinput.get("workercount", 1))
    return int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)


def controller_run_id(config: pytest.Config) -> str | None:
    """The run id the controller chose (inside a worker), else None."""
    workerinput = getattr(config, "workerinput", None)
    return workerinput.get(RUN_ID_KEY) if workerinput else None


def param_part(nodeid: str) -> str | None:
    """``a-b`` of ``file.py::test[a-b]``; None for a test without parameters."""
    last = nodeid.rsplit("::", 1)[-1]
    if not last.endswith("]") or "[" not in last:
        return None
    return last[last.index("[") + 1:-1]


def board_in_nodeid(nodeid: str, boards: list[str]) -> str | None:
    """The board whose name is one of the ``-``-joined parameter ids of ``nodeid`` (the longest, if several fit)."""
    params = param_part(nodeid)
    if params is None:
        return None
    fits = [b for b in boards
            if params == b or params.startswith(b + "-") or params.endswith("-" + b) or f"-{b}-" in params]
    return max(fits, key=len) if fits else None


def _load_scope_scheduling() -> type:
    from xdist.scheduler import LoadScopeScheduling

    return LoadScopeScheduling


def make_scheduler(config: pytest.Config, log: Any, boards: list[str]) -> Any:
    """A :class:`BoardScheduling` for ``boards`` (built lazily: xdist is only imported when it runs)."""
    base = _load_scope_scheduling()

    class BoardScheduling(base):  # type: ignore[misc, valid-type]
        """LoadScopeScheduling whose scope is the board a test runs on."""

        def __init__(self, config: pytest.Config, log: Any = None) -> None:
            super().__init__(config, log)
            self.boards = list(boards)
            self._boardless: dict[str, str] = {}

        def _split_scope(self, nodeid: str) -> str:
            if len(self.boards) == 1:
                return self.boards[0]
            found = board_in_nodeid(nodeid, self.boards)
            if found is not None:
                return found
            if nodeid not in self._boardless:  # spread tests without a board over the boards' workers
                self._boardless[nodeid] = self.boards[len(self._boardless) % len(self.boards)]
            return self._boardless[nodeid]

    return BoardScheduling(config, log)
