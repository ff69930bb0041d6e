"""What a test instance concerns: the run's session, its board(s), and whether a board fits its markers.

Shared by the fixtures, the evidence hooks and the report hooks, so each asks the same question the same way;
it holds no hooks itself (importing it registers nothing).
"""

from __future__ import annotations

import re

import pytest

from harness.board import Board
from harness.config.models import BoardSpec
from harness.errors import HarnessError
from harness.session import RunSession

SESSION_KEY = pytest.StashKey[RunSession]()
#: when the test's setup started: the console excerpt of a test begins here
MARK_KEY = pytest.StashKey[float]()
#: Why the harness itself skipped a test: "not-selected" (destructive without --destructive) or "not-applicable"
#: (the board's chip, NPU or links do not fit). The gate reports such a suite as not run, not as a gap.
SKIP_KIND_KEY = pytest.StashKey[str]()


def excerpt_name(nodeid: str) -> str:
    """The file name of a test's console excerpt in its board's report folder."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid)[-150:] + ".console.txt"


def run_session(config: pytest.Config) -> RunSession:
    return config.stash[SESSION_KEY]


def item_board(item: pytest.Item) -> str | None:
    """The board this test instance runs on: its ``board`` parameter, or the only selected board."""
    callspec = getattr(item, "callspec", None)
    name = callspec.params.get("board") if callspec is not None else None
    if name is not None:
        return str(name)
    specs = run_session(item.config).specs
    return specs[0].name if len(specs) == 1 else None


def item_specs(item: pytest.Item) -> list[BoardSpec]:
    """The boards a test instance concerns: its own board, or every selected board for a test without one."""
    specs = run_session(item.config).specs
    name = item_board(item)
    return [s for s in specs if s.name == name] if name is not None else list(specs)


def item_boards(item: pytest.Item) -> list[tuple[str, Board]]:
    """(name, Board) of the opened boards this test concerns (never another board's console)."""
    opened = run_session(item.config).boards
    return [(s.name, opened[s.name]) for s in item_specs(item) if s.name in opened]


def mismatch_reason(item: pytest.Item, spec: BoardSpec, npu: str) -> str | None:
    """Why the test does not fit the board (chip, NPU generation, links), or None when it does."""
    for mark in item.iter_markers("chip"):
        if spec.chip not in {c.lower() for c in mark.args}:
            return f"needs chip {'/'.join(mark.args)}; board {spec.name} is {spec.chip}"
    for mark in item.iter_markers("npu"):
        if npu not in {n.lower() for n in mark.args}:
            return f"needs {'/'.join(mark.args)}; board {spec.name} is {npu}"
    for mark in item.iter_markers("needs"):
        missing = set(mark.args) - set(spec.link_names)
        if missing:
            return f"needs link(s) {', '.join(sorted(missing))}; board {spec.name} has none configured"
    return None


def board_or_stop(request: pytest.FixtureRequest, name: str) -> Board:
    """Open a board for a fixture; if it cannot be opened, this test errors and, when it is the run's only board,
    the run stops (one error, not N). With several boards the others go on: the broken board's later tests fail
    at once with the same reason (the session remembers it), and stopping would end every worker's run."""
    session = run_session(request.config)
    try:
        return session.board(name)
    except HarnessError as exc:
        reason = f"board {name} is unusable: {exc}"
    # failed outside the except block: inside it, pytest would print the HarnessError too, as "During handling
    # of the above exception, another exception occurred"
    if len(session.specs) == 1:
        request.session.shouldstop = reason
    pytest.fail(reason, pytrace=False)
