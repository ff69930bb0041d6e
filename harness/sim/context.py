"""What every service of a running simulated board (adbd, sshd, console, NPU, gate) is handed.

One ``BoardContext`` per boot, built by the board's OS process (:mod:`harness.sim.board_os`). Services use it
to run board commands, reach the board's files, read the active faults and talk to the simulated kernel.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from harness.sim import board_exec, rootpath
from harness.sim.faults import FaultSet
from harness.sim.profile import Profile


class BoardKernel(Protocol):
    """What the board's services may ask of its simulated kernel (:class:`harness.sim.kernel.Kernel`, which
    builds on this context: the protocol keeps the context the lower of the two)."""

    proc: Path
    server_pid: int | None

    def log(self, message: str) -> None: ...
    def request_reboot(self, mode: str = "") -> None: ...
    def start_process(self, comm: str, cmdline: list[str], fds: int = 3, rss_kb: int = 6212) -> int: ...
    def stop_process(self, pid: int) -> None: ...
    def find_process(self, comm: str) -> int | None: ...
    def fd_count(self, pid: int) -> int: ...
    def add_fds(self, pid: int, count: int) -> int: ...
    def rss_kb(self, pid: int) -> int | None: ...
    def add_rss(self, pid: int, kb: int) -> int | None: ...


@dataclass
class BoardContext:
    name: str
    profile: Profile
    root: Path
    state_dir: Path
    faults: FaultSet
    kernel: BoardKernel | None = None
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
