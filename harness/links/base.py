"""What every link returns from running a command on a board."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ShellResult:
    """The outcome of one board command: what it printed, how it exited, how long it took, over which link."""

    command: str
    stdout: str
    stderr: str
    exit_code: int
    duration_s: float
    link: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    @property
    def output(self) -> str:
        """stdout and stderr together, for matching failure signatures."""
        return self.stdout + (("\n" + self.stderr) if self.stderr else "")
