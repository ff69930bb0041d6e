"""A simulated board's serial console on a real kernel pty, for tests that drive it as a lab PC drives a UART.

Why: the console tests of the simulator and of the harness's ConsoleLink both need the same line: a board root
with busybox, the simulated kernel writing to a pty in raw mode at 1500000 baud, and the pty closed again at the
end (also when a test already pulled the plug on the simulator's end).
"""

from __future__ import annotations

import os
import termios
import tty
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from harness.sim import bootlog
from harness.sim.console import Console
from harness.sim.context import BoardContext
from harness.sim.kernel import Kernel
from support.boards import board_context


@dataclass
class ConsoleBoard:
    """A board that is only a console: the pty's master belongs to the simulator, ``port`` is for the client."""

    ctx: BoardContext
    console: Console
    kernel: Kernel
    port: str  # the pty slave's path, what boards.toml would name
    master: int
    master_open: bool = True

    def boot(self, pace: float = 0.3) -> bool:
        """Replay the profile's boot log on the line; False when a boot fault stopped it before userspace."""
        prof = self.ctx.profile
        return self.console.boot(bootlog.kernel_lines(prof, prof.versions.driver), pace=pace)

    def power_on(self) -> bool:
        """Boot, then serve login when userspace was reached (as the board's OS process does)."""
        if not self.boot():
            return False
        self.console.serve_login()
        return True

    def pull_the_plug(self) -> None:
        """The simulator's end of the line disappears (as when its process dies)."""
        self.console.stop()
        os.close(self.master)
        self.master_open = False


@contextmanager
def console_board(folder: Path, *faults: str, profile_name: str = "rv1126") -> Iterator[ConsoleBoard]:
    """A ``profile_name`` board root in ``folder`` with ``faults`` set, its console on a raw 1500000-baud pty.

    Nothing is booted yet, so a client that opens ``port`` first sees the whole boot. On exit the console (and
    any login shell) is stopped and both ends of the pty are closed.
    """
    ctx = board_context(folder, profile_name, state_dir=folder)
    prof = ctx.profile
    for fault in faults:
        ctx.faults.set(fault)
    master, slave = os.openpty()
    tty.setraw(slave)
    attrs = termios.tcgetattr(slave)
    attrs[4] = attrs[5] = termios.B1500000
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    console = Console(ctx, master)
    kernel = Kernel(ctx, console_write=console.write)
    kernel.populate(driver_version=prof.versions.driver, gate_address="127.0.0.1:1")
    board = ConsoleBoard(ctx, console, kernel, os.ttyname(slave), master)
    try:
        yield board
    finally:
        console.stop()
        if board.master_open:
            os.close(master)
        os.close(slave)
