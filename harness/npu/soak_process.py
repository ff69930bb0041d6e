"""Soak in one long-lived process: many inferences on one context, its descriptors and memory watched (4.2.1).

Why one process: what leaks in the field is a long-lived application (a camera pipeline running for days) whose
descriptors or resident memory grow inference after inference; a new process per run (:mod:`harness.npu.soak`)
starts clean every time and can only see what leaks in rknn_server. Here our runner keeps one context and runs
every inference in it, and after every K inferences prints its own open descriptors and VmRSS (read from
/proc/self) and rknn_server's (``--sample-every K --watch rknn_server``). Growth over the second half of the
soak (the first lets the runtime's one-time allocations settle), per inference, is judged against
:class:`SoakLimits`, which a suite sets with ``@pytest.mark.soak_limits(...)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from harness.npu.deploy import RemoteModel
from harness.npu.latency import RUNNER_LINES
from harness.npu.model_package import ModelPackage
from harness.npu.run import run_package
from harness.npu.soak import FdLeak

if TYPE_CHECKING:
    from harness.board import Board

RUNNER = "npu_hil_runner"
WATCHED = ("rknn_server",)


class MemoryLeak(FdLeak):
    """The runtime's process grew its resident memory across the soak faster than the suite allows (4.2.1)."""


@dataclass(frozen=True)
class SoakLimits:
    """What growth a suite tolerates over a long-lived soak: descriptors in total, memory per 1000 inferences."""

    max_fd_growth: int = 0
    max_rss_kb_per_1k: float = 1024.0


@dataclass(frozen=True)
class Sample:
    inferences: int
    pid: int
    fds: int
    rss_kb: int


@dataclass
class ProcessSoak:
    """Per watched process ("self" is the runner holding the context), its samples in order."""

    package: str
    board: str
    inferences: int
    limits: SoakLimits
    samples: dict[str, list[Sample]] = field(default_factory=dict)
    run_means_ms: float | None = None

    def growth(self, process: str) -> tuple[int, int, int]:
        """(descriptors gained, kB gained, inferences between) over the second half of the soak: the first half
        lets allocators and caches settle (a one-time growth is no leak), while a leak grows at the same rate
        all along."""
        seen = self.samples.get(process) or []
        if len(seen) < 2:
            return 0, 0, 0
        first, last = seen[(len(seen) - 1) // 2], seen[-1]
        return last.fds - first.fds, last.rss_kb - first.rss_kb, last.inferences - first.inferences

    def failures(self) -> list[str]:
        """Each 4.2.1 finding in one line (descriptors or memory, per process), with its rate and samples."""
        found = []
        for process, seen in self.samples.items():
            fds, kb, span = self.growth(process)
            if not span:
                continue
            where = f"{'the runner holding the context' if process == 'self' else process} (pid {seen[-1].pid})"
            if fds > self.limits.max_fd_growth:
                found.append(f"file descriptor leak (manual 4.2.1): open fds of {where} on {self.board} grew by {fds} "
                             f"over {span} inferences of {self.package} ({fds * 1000 / span:.1f} per 1000 "
                             f"inferences; allowed growth {self.limits.max_fd_growth}); samples: "
                             + ", ".join(str(s.fds) for s in seen))
            per_1k = kb * 1000 / span
            if per_1k > self.limits.max_rss_kb_per_1k:
                found.append(f"memory leak (manual 4.2.1): resident memory of {where} on {self.board} grew by {kb} kB "
                             f"over {span} inferences of {self.package} ({per_1k:.0f} kB per 1000 inferences; "
                             f"allowed {self.limits.max_rss_kb_per_1k:g}); VmRSS kB: "
                             + ", ".join(str(s.rss_kb) for s in seen))
        return found

    def raise_for_failure(self) -> None:
        found = self.failures()
        if found:
            kind = FdLeak if found[0].startswith("file descriptor") else MemoryLeak
            raise kind("; ".join(found), fix="update the NPU runtime/rknn_server; release every buffer and "
                                             "context the application gets from the runtime")


def parse_samples(text: str) -> dict[str, list[Sample]]:
    """The runner's ``sample`` lines, per process, in order."""
    samples: dict[str, list[Sample]] = {}
    for line in text.splitlines():
        m = RUNNER_LINES["sample"].match(line.rstrip("\r"))
        try:
            sample = Sample(int(m["index"]), int(m["pid"]), int(m["fds"]), int(m["rss_kb"])) if m else None
        except ValueError:  # a line cut short or garbled on the way: not a sample
            continue
        if sample is not None:
            samples.setdefault(m["process"], []).append(sample)
    return samples


def soak_process(board: Board, package: ModelPackage, *, inferences: int, remote: RemoteModel | None = None,
                 limits: SoakLimits = SoakLimits(), samples: int = 20, watch: tuple[str, ...] = WATCHED,
                 deadline_s: float | None = None) -> ProcessSoak:
    """Run ``inferences`` inferences of ``package`` in one process of our runner (whatever runner the package
    names for its other runs: Rockchip's rknn_benchmark cannot sample itself), sampled ``samples`` times."""
    if inferences < 2:
        raise ValueError("a soak needs at least 2 inferences to see growth")
    every = max(1, inferences // max(1, samples))
    args = ("--sample-every", str(every), *[a for name in watch for a in ("--watch", name)])
    run = run_package(board, package, remote=remote, loops=inferences, warmup=2, deadline_s=deadline_s,
                      runner=RUNNER, runner_args=args)
    result = ProcessSoak(package.name, board.name, inferences, limits, parse_samples(run.result.output))
    result.run_means_ms = run.stats.mean
    return result
