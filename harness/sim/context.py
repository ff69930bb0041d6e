"""What every service of a running simulated board (adbd, sshd, console, NPU, gate) is handed.

One ``BoardContext`` per boot, built by the board's OS process (:mod:`harness.sim.board_os`). Services use it
to run board commands, reach the board's files, read the active faults and talk to the simulated kernel.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.sim import board_exec, rootpath
from harness.sim.faults import FaultSet
from harness.sim.profile import Profile

if TYPE_CHECKING:
    from harness.sim.kernel import Kernel


@dataclass
class BoardContext:
    name: str
    profile: Profile
    root: Path
    state_dir: Path
    faults: FaultSet
    kernel: "Kernel | None" = None
    extra: dict[str, Any] = field(default_factory=dict)

    def spawn_shell(self, command: str | None, *, env: dict[str, str] | None = None, login: bool = False,
                    controlling_tty: bool = False, **popen_kwargs: Any) -> subprocess.Popen:
        """Start busybox sh on the board (``command`` None: an interactive shell, e.g. on a pty)."""
        return board_exec.spawn(self.root, command, env=env, login=login, controlling_tty=controlling_tty,
                                **popen_kwargs)

    def host_path(self, board_path: str, *, follow_last: bool = True) -> Path:
        """The host path of a board path, confined to the board root (raises rootpath.OutsideRoot)."""
        return rootpath.resolve(self.root, board_path, follow_last=follow_last)

    def userdata_full(self, host_path: Path) -> bool:
        """True when the ``userdata-full`` fault makes a write to this path fail with ENOSPC."""
        if "userdata-full" not in self.faults:
            return False
        try:
            host_path.resolve().relative_to((self.root / "userdata").resolve())
            return True
        except ValueError:
            return False

    def request_reboot(self, mode: str = "") -> None:
        """Ask the board to reboot (``mode`` as in ``reboot loader``); returns at once, the reboot follows."""
        if self.kernel is not None:
            self.kernel.request_reboot(mode)
