"""The recovery ladder for a board that stopped answering: soft reboot, then power cycle, then mark it broken.

Why one ladder for everything (an NPU hang, a flash that did not come back, a boot loop): a lab run must not hang
on one sick board, and must not retry forever either. Each rung has its own deadline (the board's boot timeout);
when the last rung fails the board is marked broken, so every later test on it fails at once with one clear
line (:meth:`harness.board.Board.mark_broken`) instead of waiting for its own timeouts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.errors import HarnessError

if TYPE_CHECKING:
    from harness.board import Board

log = logging.getLogger("npu-hil.recovery")


@dataclass(frozen=True)
class Recovery:
    """What the ladder did: ``rebooted``, ``power-cycled`` or ``broken``, and why the earlier rungs failed."""

    outcome: str
    failures: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.outcome != "broken"

    def describe(self) -> str:
        if self.outcome == "rebooted":
            return "rebooted"
        if self.outcome == "power-cycled":
            return f"power-cycled (reboot failed: {self.failures[0]})"
        return (f"marked broken (reboot failed: {self.failures[0]}; power cycle failed: {self.failures[1]})")


def recover(board: Board, reason: str, *, timeout: float | None = None) -> Recovery:
    """Climb the ladder until the board answers again; never raises for the board's own failures.

    ``timeout`` is each rung's wait for the board (default: the board's boot timeout).
    """
    failures: list[str] = []
    for outcome, action in (("rebooted", board.reboot), ("power-cycled", board.power_cycle)):
        try:
            action(timeout=timeout)
            log.info("%s: recovered after %s: %s", board.name, reason, outcome)
            return Recovery(outcome, tuple(failures))
        except HarnessError as exc:
            log.warning("%s: %s after %s failed: %s", board.name, outcome, reason, exc)
            failures.append(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    board.mark_broken(f"{reason}; reboot failed ({failures[0]}); power cycle failed ({failures[1]})")
    return Recovery("broken", tuple(failures))


def recover_board(board: Board, reason: str, *, timeout: float | None = None) -> str:
    """:func:`recover` as one line for an error message (what :mod:`harness.npu.run` reports after a hang)."""
    return recover(board, reason, timeout=timeout).describe()
