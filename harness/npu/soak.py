"""Soak: run a model many times and watch the NPU runtime's open file descriptors (manual 4.2.1).

Why descriptors: the manual's 4.2.1 failure is many ``inference()`` calls ending in ``Too many open files`` or a
hang. It is visible long before the limit as a descriptor count that grows run after run in the long-lived
process behind the runtime (``rknn_server``; with no server, the process named by ``process``). So the soak
samples ``ls /proc/PID/fd | wc -l`` after every run: growth across the soak is the failure, named with its
samples, and so is ``Too many open files`` in a run's output. Latency of each run is kept too (the runner's own
figures), so a soak also shows drift.
"""

from __future__ import annotations

import logging
import shlex
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from harness.errors import BoardError, ProductError
from harness.npu.deploy import RemoteModel, push_model
from harness.npu.model_package import ModelPackage
from harness.npu.run import EMFILE, RunFailed, run_package

if TYPE_CHECKING:
    from harness.board import Board

log = logging.getLogger("npu-hil.soak")

DEFAULT_PROCESS = "rknn_server"


class FdLeak(ProductError):
    """The runtime's descriptors grew across the soak, or ran out (manual 4.2.1)."""


@dataclass
class SoakResult:
    """What a soak saw: descriptor counts (before the first run, then after each), per-run mean latency."""

    package: str
    board: str
    process: str
    pid: int | None
    fd_samples: list[int] = field(default_factory=list)
    run_means_ms: list[float] = field(default_factory=list)
    runs_done: int = 0
    runs_wanted: int = 0
    allowed_growth: int = 0
    exhausted: str | None = None  # the run output's line with "Too many open files"

    @property
    def growth(self) -> int:
        """Descriptors gained from after the first run (the runtime's one-time opens) to the end."""
        if len(self.fd_samples) < 3:
            return 0
        return self.fd_samples[-1] - self.fd_samples[1]

    @property
    def failure(self) -> str | None:
        """The 4.2.1 finding in one paragraph, or None when the soak was clean."""
        samples = ", ".join(map(str, self.fd_samples))
        where = f"{self.process} (pid {self.pid}) on {self.board}"
        if self.exhausted:
            return (f"file descriptor leak (manual 4.2.1): '{EMFILE}' after {self.runs_done} of {self.runs_wanted} "
                    f"runs of {self.package}; open fds of {where}: {samples}; board said: {self.exhausted}")
        if self.growth > self.allowed_growth:
            per_run = self.growth / max(1, len(self.fd_samples) - 2)
            return (f"file descriptor leak (manual 4.2.1): open fds of {where} grew by {self.growth} "
                    f"({per_run:.1f} per run) over {self.runs_done} runs of {self.package}; samples: {samples}")
        return None

    def raise_for_failure(self) -> None:
        message = self.failure
        if message:
            raise FdLeak(message, fix="update the NPU runtime/rknn_server; release every rknn context")


def find_pid(board: Board, process: str = DEFAULT_PROCESS) -> int | None:
    """The PID whose ``comm`` is exactly ``process`` (the first, if several), or None."""
    command = f"grep -lx {shlex.quote(process)} /proc/[0-9]*/comm 2>/dev/null"
    for line in board.shell(command, timeout=20).stdout.split():
        parts = line.split("/")
        if len(parts) >= 3 and parts[2].isdigit():
            return int(parts[2])
    return None


def count_fds(board: Board, pid: int) -> int:
    """``ls /proc/PID/fd | wc -l``; BoardError when the process is gone (a restarted server is not a leak)."""
    folder = shlex.quote(f"/proc/{int(pid)}/fd")
    result = board.shell(f"[ -d {folder} ] && ls {folder} | wc -l", timeout=20)
    text = result.stdout.strip()
    if result.exit_code != 0 or not text.isdigit():
        raise BoardError(f"{board.name}: process {pid} disappeared during the soak (restarted?): "
                         f"cannot count its descriptors")
    return int(text)


def soak(board: Board, package: ModelPackage, *, runs: int, remote: RemoteModel | None = None,
         loops: int = 2, warmup: int = 0, process: str = DEFAULT_PROCESS, allowed_growth: int = 0,
         deadline_s: float | None = None) -> SoakResult:
    """Run ``package`` ``runs`` times, sampling ``process``'s open descriptors; returns the SoakResult.

    Stops early at ``Too many open files`` (that is the finding). Hangs propagate as NpuHang.
    """
    if runs < 2:
        raise ValueError("a soak needs at least 2 runs to see growth")
    remote = remote or push_model(board, package)
    pid = find_pid(board, process)
    if pid is None:
        raise BoardError(f"{board.name}: no {process} process to watch (is it running? try restart_rknn.sh)")
    result = SoakResult(package.name, board.name, process, pid, runs_wanted=runs, allowed_growth=allowed_growth)
    result.fd_samples.append(count_fds(board, pid))
    for _ in range(runs):
        try:
            run = run_package(board, package, remote=remote, loops=loops, warmup=warmup, deadline_s=deadline_s)
        except RunFailed as exc:
            if EMFILE not in exc.output and EMFILE not in str(exc):
                raise
            result.exhausted = next((line.strip() for line in exc.output.splitlines() if EMFILE in line), EMFILE)
            result.fd_samples.append(count_fds(board, pid))
            break
        result.runs_done += 1
        result.run_means_ms.append(run.stats.mean)
        result.fd_samples.append(count_fds(board, pid))
    log.info("%s: soak of %s: %d runs, fds %s", board.name, package.name, result.runs_done, result.fd_samples)
    return result
