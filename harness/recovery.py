"""The recovery ladder for a board that stopped answering: reconnect, soft reboot, power cycle, then broken.

Why one ladder for everything (links lost mid-run, an NPU hang, a flash that did not come back, a boot loop): a
lab run must not hang on one sick board, and must not retry forever either. Each rung has its own deadline (the
board's boot timeout) and the whole climb a time budget (``--recovery-budget``, default 5 minutes), so one dead
board cannot stall a night. When the last rung fails the board is marked broken, so every later test on it
fails at once with one clear line (:meth:`harness.board.Board.mark_broken`) instead of waiting for its own
timeouts. Every step, with its time and error, is kept in :class:`Recovery` for the log and results.json.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError

if TYPE_CHECKING:
    from harness.board import Board

log = logging.getLogger("npu-hil.recovery")
DEFAULT_BUDGET_S = 300.0
#: A reconnect only helps links that dropped while the board kept running: it gets a short deadline.
RECONNECT_TIMEOUT_S = 15.0
#: How long each link gets to answer ``true`` when a suspect board's health is checked (links side by side).
HEALTH_TIMEOUT_S = 10.0
#: How long a board with power control gets to answer when a run first opens it: a board that is up answers in
#: a few seconds (console login, adb, ssh side by side); one that does not is power-cycled, then given its boot
#: timeout, instead of the run waiting a full boot timeout on a board that is dead.
FIRST_OPEN_TIMEOUT_S = 20.0
RUNGS = {"reconnect": "reconnected", "reboot": "rebooted", "power cycle": "power-cycled"}


@dataclass(frozen=True)
class Step:
    """One rung tried: its name, whether the board answered after it, how long it took, and why not."""

    rung: str
    ok: bool
    seconds: float
    error: str | None = None


@dataclass(frozen=True)
class Recovery:
    """What the ladder did: ``reconnected``, ``rebooted``, ``power-cycled`` or ``broken``, rung by rung."""

    outcome: str
    steps: tuple[Step, ...] = ()
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome != "broken"

    def describe(self) -> str:
        failed = "; ".join(f"{s.rung} failed: {s.error}" for s in self.steps if not s.ok)
        word = "marked broken" if self.outcome == "broken" else self.outcome
        return f"{word} ({failed})" if failed else word

    def to_dict(self) -> dict[str, Any]:
        return {"reason": self.reason, "outcome": self.outcome, "steps": [asdict(s) for s in self.steps],
                "seconds": round(sum(s.seconds for s in self.steps), 3)}


def recover(board: Board, reason: str, *, timeout: float | None = None, budget: float | None = None,
            reconnect: bool = False, reboot: bool = True) -> Recovery:
    """Climb the ladder until the board answers again; never raises for the board's own failures.

    ``timeout`` is each rung's wait for the board (default: the board's boot timeout); ``budget`` bounds the
    whole climb (default :data:`DEFAULT_BUDGET_S`); ``reconnect`` tries reopening the links before rebooting
    (links lost mid-run, where the board may still be up); ``reboot=False`` skips the soft reboot, which needs
    a link to carry it (a board silent on every link gets the power cycle at once).
    """
    deadline = time.monotonic() + (budget if budget is not None else DEFAULT_BUDGET_S)
    actions = [("reboot", board.reboot)] if reboot else []
    actions.append(("power cycle", board.power_cycle))
    if reconnect:
        actions.insert(0, ("reconnect", board.wait_ready))
    steps: list[Step] = []
    for rung, action in actions:
        left = deadline - time.monotonic()
        if left <= 1.0:
            steps.append(Step(rung, False, 0.0, f"the recovery budget of {budget or DEFAULT_BUDGET_S:g} s is spent"))
            continue
        wait = min(timeout or board.boot_timeout, left)
        if rung == "reconnect":
            wait = min(wait, RECONNECT_TIMEOUT_S)
        started = time.monotonic()
        log.info("%s: recovery after %s: trying %s (deadline %.0f s)", board.name, reason, rung, wait)
        try:
            action(timeout=wait)
        except HarnessError as exc:
            error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            steps.append(Step(rung, False, round(time.monotonic() - started, 3), error))
            log.warning("%s: %s after %s failed: %s", board.name, rung, reason, error)
            continue
        steps.append(Step(rung, True, round(time.monotonic() - started, 3)))
        log.info("%s: recovered after %s: %s", board.name, reason, RUNGS[rung])
        return Recovery(RUNGS[rung], tuple(steps), reason)
    board.mark_broken(reason + "".join(f"; {s.rung} failed ({s.error})" for s in steps))
    return Recovery("broken", tuple(steps), reason)


def recover_lost_links(board: Board, *, budget: float | None = None) -> Recovery | None:
    """Before the next test, for a board whose links failed (``board.suspect``): None when every link answers
    again; else the ladder. The links are probed side by side, unless a check after the failure already did
    (:func:`diagnose_failure`). When a link still answers, dmesg is kept and the climb starts with a reconnect
    (links that dropped while the board ran on). When none answers, the console included, the board itself is
    gone or hung: no link can carry a reboot, so a board with power control is power-cycled at once."""
    from harness.links.power import NoPower

    why, board.suspect = (board.suspect or "no answer").splitlines()[0], None
    check, board.link_check = board.link_check or board.check_links(HEALTH_TIMEOUT_S), None
    if not check.problems:
        log.info("%s: links answer again after: %s", board.name, why)
        return None
    reason = f"{check.diagnosis()} after: {why}" if check.every_link_down else f"links lost: {why}"
    board.log.warning("%s: %s (%s); climbing the recovery ladder", board.name, reason,
                      "; ".join(f"{k}: {v}" for k, v in check.problems.items()))
    if not check.every_link_down:
        saved = board.save_evidence("dmesg-before-recovery", board.kernel_log(lines=300, timeout=10))
        board.log.warning("%s: dmesg before recovery kept in %s", board.name, saved)
    recovery = recover(board, reason, budget=budget, reconnect=not check.every_link_down,
                       reboot=not check.every_link_down or isinstance(board.power, NoPower))
    board.log.warning("%s: recovery: %s", board.name, recovery.describe())
    return recovery


def diagnose_failure(board: Board) -> str | None:
    """Right after a test failed: if a link of its board failed during it (``board.suspect``), why the board does
    not answer (every link silent, or some links lost), for the test's own report; None when it answers. The
    check is kept for the ladder before the next test, so a dead board is probed once, not twice."""
    if board.suspect is None or board.broken:
        return None
    return board.check_links(HEALTH_TIMEOUT_S).diagnosis()


def recover_board(board: Board, reason: str, *, timeout: float | None = None) -> str:
    """:func:`recover` as one line for an error message (what :mod:`harness.npu.run` reports after a hang)."""
    return recover(board, reason, timeout=timeout).describe()
