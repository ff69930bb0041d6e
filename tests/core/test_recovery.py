"""The recovery ladder (soft reboot -> power cycle -> broken) on a simulated RV1126 opened as a run opens it.

Real pieces: the simulator's processes, our own adb server (port 15162, own HOME, stopped by PID), the board's
power through the simulator's control channel. A board whose boot hangs (fault ``boot-hang``) climbs the whole
ladder and is marked broken: every later use fails at once with one line, never a hang. The middle rung (reboot
fails, power cycle works) needs a board whose reboot alone fails, which the simulator has no fault for: that
order is shown on a recording stand-in board.
"""

from __future__ import annotations

import pytest
from support.opened import opened_sim_board
from support.sim import read_json

from harness.errors import BoardError, LinkTimeout
from harness.recovery import recover, recover_board
from harness.sim import api, state

ADB_PORT = 15162
BOARD = "sim-rv1126"


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory):
    with opened_sim_board(tmp_path_factory, BOARD, ADB_PORT) as opened:
        yield opened.board


def boot_count(board) -> int:
    """The simulator's boot counter (status.json), read once the board answers: it grows by one per boot."""
    board.shell("true", timeout=15, check=True)
    return int(read_json(state.board_dir(BOARD) / "status.json")["boot"])


def test_a_healthy_board_is_back_after_the_first_rung(board):
    before = boot_count(board)
    outcome = recover(board, "test")
    assert (outcome.outcome, outcome.ok, outcome.describe()) == ("rebooted", True, "rebooted")
    assert board.broken is None
    assert boot_count(board) == before + 1  # it really rebooted, once


def test_a_board_that_never_boots_is_marked_broken_and_fails_fast(board):
    api.fault(BOARD, "boot-hang")
    try:
        outcome = recover(board, "NPU hang running mobilenet", timeout=8)
        assert outcome.outcome == "broken" and not outcome.ok
        assert outcome.describe().startswith("marked broken (reboot failed: ")
        assert "power cycle failed" in outcome.describe()
        for _ in range(3):  # one clear error per later use, the same each time
            with pytest.raises(BoardError, match=r"marked broken for the rest of this run: NPU hang running "
                                                 r"mobilenet; reboot failed"):
                board.shell("true", timeout=5)
    finally:
        api.fault(BOARD, "boot-hang", clear=True)
        board.broken = None  # this test's own board comes back for the next tests
        board.power_cycle()
    assert board.shell("true", timeout=15).exit_code == 0


class RecordingBoard:
    """Stand-in for the middle rung only: its reboot fails, its power cycle works."""

    name = "stand-in"
    boot_timeout = 5.0

    def __init__(self, power_ok: bool) -> None:
        self.calls: list[str] = []
        self.power_ok = power_ok
        self.broken: str | None = None

    def reboot(self, *, timeout=None):
        self.calls.append("reboot")
        raise LinkTimeout("adb did not come back before the deadline")

    def power_cycle(self, *, timeout=None):
        self.calls.append("power_cycle")
        if not self.power_ok:
            raise BoardError("PDU port 3 does not answer")

    def mark_broken(self, reason: str) -> None:
        self.calls.append("mark_broken")
        self.broken = reason


def test_ladder_order_power_cycle_after_a_failed_reboot():
    ok = RecordingBoard(power_ok=True)
    assert recover_board(ok, "hang") == "power-cycled (reboot failed: adb did not come back before the deadline)"
    assert ok.calls == ["reboot", "power_cycle"] and ok.broken is None
    dead = RecordingBoard(power_ok=False)
    assert recover(dead, "hang").outcome == "broken"
    assert dead.calls == ["reboot", "power_cycle", "mark_broken"]
    assert dead.broken == ("hang; reboot failed (adb did not come back before the deadline); "
                           "power cycle failed (PDU port 3 does not answer)")


class ReconnectingBoard(RecordingBoard):
    """Its links come back on a reconnect: the ladder stops at the first rung."""

    def wait_ready(self, *, timeout=None):
        self.calls.append("wait_ready")


def test_ladder_reconnects_first_when_asked_and_skips_the_reboot_when_told():
    back = ReconnectingBoard(power_ok=True)
    found = recover(back, "links lost", reconnect=True)
    assert found.outcome == "reconnected" and back.calls == ["wait_ready"]
    silent = RecordingBoard(power_ok=True)
    found = recover(silent, "silent on every link", reboot=False)
    assert found.outcome == "power-cycled" and silent.calls == ["power_cycle"]
    assert [s.rung for s in found.steps] == ["power cycle"]


def test_ladder_stops_at_its_budget_and_says_so():
    slow = RecordingBoard(power_ok=True)
    found = recover(slow, "hang", budget=0.5)
    assert found.outcome == "broken" and slow.calls == ["mark_broken"]  # no rung had time to start
    assert "the recovery budget of 0.5 s is spent" in found.describe()
