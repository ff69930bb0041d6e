"""Follow a board's boot on its serial console, stage by stage: U-Boot banner, kernel start, login prompt, shell.

Why stages with a deadline each, and not one boot timeout: "the board did not come back" is useless in a lab
report; "no kernel 30 s after U-Boot" points at the boot partition, "no login prompt" at the rootfs. Two failures
are told apart from a timeout because they need different people: a *kernel panic* (the console says so, the
board will never answer) and a *boot loop* (the U-Boot banner shows up again before the login prompt: the board
resets itself, e.g. after an interrupted flash). Every error carries the console text of this boot.

Only the console's public API is used (``expect``, ``login``, ``mark``, ``excerpt``), so the watcher works on any
console the harness opens (pty, UART, RFC2217).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

from harness.errors import BoardError, LinkTimeout

STAGES: tuple[str, ...] = ("uboot", "kernel", "login", "shell")
#: Default seconds each stage may take after the previous one (a real RK3588 U-Boot to kernel is ~3 s,
#: kernel to login ~15 s; flashing boots repartition and resize, hence the margin).
DEFAULT_DEADLINES: dict[str, float] = {"uboot": 60.0, "kernel": 30.0, "login": 90.0, "shell": 30.0}
UBOOT = r"U-Boot 20\d\d\.\d\d"  # compiled with re.MULTILINE, like the others
KERNEL = r"Booting Linux on physical CPU|Linux version \d"
LOGIN = r"login: ?$"
PANIC = r"^(?:\[\s*\d+\.\d+\]\s*)?Kernel panic - not syncing[^\n]*"
#: Rockchip's recovery (recovery.cpp) names the misc partition's command; its banner says "recovery mode".
RECOVERY = r"Boot command: boot-recovery|Rockchip Linux recovery mode"
EXCERPT_CHARS = 4000


class BootPanic(BoardError):
    """The kernel panicked during boot: waiting longer cannot help."""


class BootLoop(BoardError):
    """The U-Boot banner came back before the login prompt: the board keeps resetting itself."""


class BootInRecovery(BoardError):
    """The board booted into recovery (misc says boot-recovery: an update was interrupted), not its system."""


class BootStageTimeout(BoardError):
    """A boot stage did not show up within its own deadline."""


@dataclass
class BootReport:
    """When each stage was seen, in seconds since :meth:`BootWatcher.arm` (None: not waited for)."""

    stages: dict[str, float] = field(default_factory=dict)


class BootWatcher:
    """Watches one boot on ``console`` (a :class:`harness.links.console.ConsoleLink`).

    Call :meth:`arm` *before* the action that reboots the board (so no banner is missed, and text of an older
    boot is ignored), then :meth:`wait` to follow the stages.
    """

    def __init__(self, console: Any, *, deadlines: dict[str, float] | None = None, board: str = "board") -> None:
        unknown = set(deadlines or {}) - set(STAGES)
        if unknown:
            raise ValueError(f"unknown boot stage(s) {sorted(unknown)}; stages are {', '.join(STAGES)}")
        self.console = console
        self.deadlines = {**DEFAULT_DEADLINES, **(deadlines or {})}
        self.board = board
        self._since: float | None = None
        self._armed_at = 0.0

    def arm(self) -> None:
        """Forget console text that arrived so far: what follows belongs to the boot we are about to cause."""
        self._since = self.console.mark()
        self._armed_at = time.monotonic()
        self.console.expect(r"\Z", 0, not_matching=[])

    def excerpt(self) -> str:
        text = self.console.excerpt(since=self._since)
        return text[-EXCERPT_CHARS:]

    def _fail(self, cls: type[BoardError], message: str) -> BoardError:
        return cls(f"{self.board}: {message}; console of this boot:\n{self.excerpt()}")

    def wait(self, *, until: str = "shell", login: bool = True) -> BootReport:
        """Follow the stages up to ``until``; raises BootPanic, BootLoop or BootStageTimeout.

        ``login=False`` stops at the login prompt without logging in (``until`` is then at most "login").
        """
        if until not in STAGES:
            raise ValueError(f"unknown boot stage {until!r}; stages are {', '.join(STAGES)}")
        if self._since is None:
            self.arm()
        report = BootReport()
        for stage in STAGES[:STAGES.index(until) + 1]:
            if stage == "shell":
                if login:
                    self._shell()
                    report.stages[stage] = time.monotonic() - self._armed_at
                break
            self._stage(stage)
            report.stages[stage] = time.monotonic() - self._armed_at
        return report

    def _stage(self, stage: str) -> None:
        wanted = {"uboot": UBOOT, "kernel": KERNEL, "login": LOGIN}[stage]
        loop = f"|(?P<loop>{UBOOT})|(?P<recovery>{RECOVERY})" if stage != "uboot" else ""
        pattern = re.compile(f"(?P<panic>{PANIC})|(?P<stage>{wanted}){loop}", re.MULTILINE)
        deadline = self.deadlines[stage]
        try:
            match = self.console.expect(pattern, deadline, not_matching=[])
        except LinkTimeout:
            raise self._fail(BootStageTimeout, f"boot stage {stage!r} not reached within {deadline:g} s") from None
        if match.group("panic"):
            self._settle(r"---\[ end Kernel panic")
            raise self._fail(BootPanic, f"kernel panic during boot: {match.group('panic').strip()!r}")
        if loop and match.group("recovery"):
            self._settle(r"recovery mode[^\n]*\n(?:[^\n]*\n){2}")
            raise self._fail(BootInRecovery, "the board booted into recovery, not its system (an update "
                                             "was interrupted?)")
        if loop and match.group("loop"):
            raise self._fail(BootLoop, f"boot loop: U-Boot started again while waiting for the {stage} stage")

    def _settle(self, end: str) -> None:
        """Let the rest of a panic's backtrace or recovery's banner reach the buffer, for the excerpt."""
        try:
            self.console.expect(end, 2.0, not_matching=[])
        except BoardError:
            pass

    def _shell(self) -> None:
        deadline = self.deadlines["shell"]
        try:
            self.console.login(timeout=deadline)
        except LinkTimeout:
            raise self._fail(BootStageTimeout, f"boot stage 'shell' not reached within {deadline:g} s") from None
        except BoardError as exc:
            if "Kernel panic" in str(exc):
                raise self._fail(BootPanic, "kernel panic while logging in") from None
            raise
