"""Run a model package on a board with its runner, under a deadline, and bring back outputs and on-board times.

Why it is shaped this way (RKNN-Toolkit manual, chapter 4.2):

* Latency comes only from the runner's own figures (4.2.2), the first run apart (4.2.3): the output is parsed
  with :mod:`harness.npu.latency`; the host never times the round trip.
* Each run writes into its own board folder (``<model folder>/runs/<id>``), so several models, or several runs
  of one, never read each other's ``rt_output0.npy`` (4.2.11).
* A batch-N model's ``[N, ...]`` outputs are split into N results, each matched to the input sample it came
  from (4.2.5-4.2.7).
* An NPU hang (4.2.13: a run that never returns, or returns all zeros where the golden is not zero) is the
  board's fault: dmesg is captured, the board recovered (reboot, else power cycle, else marked broken) and
  :class:`NpuHang` raised with the kernel's lines.
"""

from __future__ import annotations

import itertools
import logging
import os
import posixpath
import re
import shlex
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from harness.errors import BoardError, LinkTimeout, ProductError
from harness.links.base import ShellResult
from harness.npu import board_runner, goldens
from harness.npu.board_runner import BoardRunner
from harness.npu.deploy import (
    DEFAULT_MODEL_DIR,
    RemoteModel,
    push_model,
)
from harness.npu.diagnose import diagnose
from harness.npu.latency import BenchmarkRun, LatencyStats, parse_rknn_benchmark, parse_runner_output
from harness.npu.model_package import ModelPackage
from harness.npu.verbose_log import Step
from harness.recovery import recover_board

if TYPE_CHECKING:
    from harness.board import Board

log = logging.getLogger("npu-hil.run")

#: Kernel lines that mean the NPU hung (RKNPU1 galcore watchdog, RKNPU2 job timeout/reset, runtime submit).
HANG_LINES = re.compile(r"GPU\[\d+\] hang|job timeout|soft reset|failed to submit|npu.*(hang|timeout)", re.IGNORECASE)
EMFILE = "Too many open files"
_COUNTER = itertools.count()


class NpuHang(BoardError):
    """Manual 4.2.13: the NPU stopped answering. Carries the dmesg captured before recovery."""

    def __init__(self, message: str, *, dmesg: str, recovery: str) -> None:
        super().__init__(message, fix="check dmesg for the NPU watchdog; if it repeats, check power and "
                                      "cooling, and the driver/runtime versions")
        self.dmesg = dmesg
        self.recovery = recovery


class RunFailed(ProductError):
    """The runner ran but did not finish its work (init error, inference error, missing outputs)."""

    def __init__(self, message: str, *, output: str = "", parsed: BenchmarkRun | None = None) -> None:
        super().__init__(message)
        self.output = output
        self.parsed = parsed


@dataclass
class ModelRun:
    """One run of a package on a board: what was run, what it printed, its outputs and on-board times."""

    package: ModelPackage
    chip: str
    board: str
    runner: str
    command: str
    remote_dir: str
    result: ShellResult
    parsed: BenchmarkRun
    outputs: list[np.ndarray] = field(default_factory=list)  # in the package's output order, whole batch
    model_sha256: str = ""
    runner_kind: str | None = None  # our runner's build on this board: "python" or "native"

    @property
    def measured_by(self) -> str:
        """Which program took the figures: ``rknn_benchmark``, ``npu_hil_runner (native)``, a custom command."""
        return f"{self.runner} ({self.runner_kind})" if self.runner_kind else self.runner

    @property
    def stats(self) -> LatencyStats:
        """Steady-state latency from the runner's figures (warm-up excluded), first run kept apart."""
        return self.parsed.stats()

    @property
    def first_run_ms(self) -> float | None:
        return self.parsed.first_run_ms

    def per_sample(self) -> dict[str, list[np.ndarray]]:
        """Outputs matched to their inputs: batch models give one entry per sample ({"": outputs} at batch 1)."""
        names = self.package.sample_names()
        if not names:
            return {"": list(self.outputs)}
        batch = len(names)
        for spec, array in zip(self.package.manifest.outputs, self.outputs):
            if array.ndim == 0 or array.shape[0] != batch:
                raise ProductError(f"{self.package.name}: output {spec.name} has shape {list(array.shape)}, "
                                   f"not [{batch}, ...]: cannot split it per sample (manual 4.2.5)")
        return {name: [a[i:i + 1] for a in self.outputs] for i, name in enumerate(names)}

    def golden_dir(self, sample: str = "") -> Path:
        base = self.package.golden_dir(self.chip)
        return base / sample if sample else base


# ------------------------------------------------------------------------------------------------ commands
def build_command(runner: str, remote: RemoteModel, run_dir: str, *, loops: int, warmup: int,
                  ours: BoardRunner | None = None, runner_args: tuple[str, ...] = ()) -> str:
    """The board command for a runner; every path quoted. ``cd`` first: rknn_benchmark writes into its cwd.
    ``ours``: where our runner is on the board (python or native); ``runner_args``: more options for it (a soak's
    ``--sample-every``), each quoted."""
    q = shlex.quote
    if runner_args and runner != "npu_hil_runner":
        raise ValueError(f"runner options {list(runner_args)} need the npu_hil_runner, not {runner}")
    inputs = "#".join(remote.inputs)
    if runner == "rknn_benchmark":
        tool = f"rknn_benchmark {q(remote.model)} {q(inputs)} {int(loops)}"
    elif runner == "npu_hil_runner":
        if ours is None:
            raise ValueError("the npu_hil_runner needs the board's runner (board_runner.ensure)")
        layouts = {s.layout for s in remote.package.manifest.inputs} - {"UNDEFINED"}
        fmt = "" if remote.nhwc or layouts != {"NCHW"} else " --data-format nchw"
        tool = (f"{ours.command()} {q(remote.model)} "
                + " ".join(f"--input {q(p)}" for p in remote.inputs)
                + f" --loops {int(loops)} --warmup {int(warmup)} --out {q(run_dir)}{fmt}"
                + "".join(f" {q(a)}" for a in runner_args))
    else:
        tool = runner.format(model=q(remote.model), inputs=q(inputs), loops=int(loops), warmup=int(warmup),
                             out=q(run_dir))
    return f"cd {q(run_dir)} && {tool}"


def parse_output(runner: str, text: str) -> BenchmarkRun:
    """The runner's own figures; a custom command may print either supported format."""
    if runner == "npu_hil_runner" or (runner != "rknn_benchmark" and "npu-hil runner protocol" in text):
        return parse_runner_output(text)
    return parse_rknn_benchmark(text)


def default_deadline(package: ModelPackage, chip: str, loops: int, warmup: int) -> float:
    """Generous against the package's own budget (3x plus 10 s of process start); 120 s without a budget."""
    budget = package.budget(chip)
    if budget is None or budget.mean_ms is None:
        return 120.0
    first = budget.first_run_ms or budget.mean_ms * 10
    expected_ms = first + (loops + max(warmup, 5)) * budget.mean_ms
    return 3 * expected_ms / 1000.0 + 10.0


# ------------------------------------------------------------------------------------------------ hangs
def hang(board: Board, package: ModelPackage, what: str) -> NpuHang:
    """Collect dmesg, recover the board, and build the NpuHang to raise (manual 4.2.13)."""
    dmesg = board.kernel_log()
    hits = [line for line in dmesg.splitlines() if HANG_LINES.search(line)]
    evidence = hits[-10:] or dmesg.splitlines()[-10:]
    saved = board.save_evidence(f"dmesg-hang-{package.name}", dmesg)
    recovery = recover_board(board, f"NPU hang running {package.name}")
    message = (f"NPU hang (manual 4.2.13) on {board.name} running {package.name}: {what}; board {recovery}; "
               f"dmesg{f' (saved to {saved})' if saved else ''}: "
               + (" | ".join(evidence) if evidence else "(no kernel lines)"))
    return NpuHang(message, dmesg=dmesg, recovery=recovery)


def _goldens_for(run: ModelRun) -> list[tuple[list[np.ndarray], list[np.ndarray]]]:
    """(actual, golden) output lists per sample, for the samples that have a golden."""
    pairs = []
    try:
        samples = run.per_sample()
    except ProductError:
        return []
    for sample, actual in samples.items():
        directory = run.golden_dir(sample)
        if (directory / goldens.OUTPUTS_FILE).is_file():
            pairs.append((actual, goldens.load_golden(directory)[0]))
    return pairs


def zero_output_hang(run: ModelRun) -> str | None:
    """Manual 4.2.13's second sign: every output zero where the golden is not."""
    for actual, golden in _goldens_for(run):
        found = goldens.hang_suspected(actual, golden)
        if found:
            return found
    return None


# ------------------------------------------------------------------------------------------------ the run
def run_package(board: Board, package: ModelPackage, *, remote: RemoteModel | None = None,
                chip: str | None = None, loops: int | None = None, warmup: int | None = None,
                deadline_s: float | None = None, folder: str = DEFAULT_MODEL_DIR,
                keep_remote: bool = False, runner: str | None = None, runner_args: tuple[str, ...] = ()) -> ModelRun:
    """Push (if not given ``remote``), run with the package's runner under a deadline, pull and check outputs.

    Raises :class:`NpuHang` (BoardError) for a hang, :class:`RunFailed` (ProductError) when the runner did not
    finish its work, and whatever push_model raises for a model the board cannot load.
    """
    remote = remote or push_model(board, package, chip, folder=folder)
    chip = remote.chip
    runner = runner or package.runner_for(chip)
    loops = package.manifest.loops if loops is None else loops
    warmup = package.manifest.warmup if warmup is None else warmup
    deadline_s = deadline_s or default_deadline(package, chip, loops, warmup)
    run_dir = posixpath.join(remote.folder, "runs", f"{int(time.time() * 1000)}-{os.getpid()}-{next(_COUNTER)}")
    ours = board_runner.ensure(board, folder) if runner == "npu_hil_runner" else None
    board.shell(f"mkdir -p {shlex.quote(run_dir)}", timeout=30, check=True)
    command = build_command(runner, remote, run_dir, loops=loops, warmup=warmup, ours=ours,
                            runner_args=runner_args)
    board.last_npu_step = Step(command, workdir=run_dir)  # what a verbose-log rerun repeats if the test fails
    try:
        result = board.shell(command, timeout=deadline_s)
    except LinkTimeout:
        raise hang(board, package, f"the run did not finish within its {deadline_s:g} s deadline") from None
    parsed = parse_output(runner, result.output)
    run = ModelRun(package, chip, board.name, runner, command, run_dir, result, parsed, model_sha256=remote.sha256,
                   runner_kind=ours.kind if ours else None)
    _check_finished(run)
    run.outputs = _pull_outputs(board, run)
    found = zero_output_hang(run)
    if found:
        raise hang(board, package, found)
    if not keep_remote:
        board.shell(f"rm -rf {shlex.quote(run_dir)}", timeout=30)
    return run


def _check_finished(run: ModelRun) -> None:
    output, parsed = run.result.output, run.parsed
    tail = " | ".join(output.strip().splitlines()[-6:])
    if EMFILE in output:
        raise RunFailed(f"{run.package.name} on {run.board}: '{EMFILE}': the runtime leaks file descriptors "
                        f"(manual 4.2.1); exit {run.result.exit_code}: {tail}", output=output, parsed=parsed)
    if run.result.exit_code != 0 or not parsed.complete or not parsed.iterations_ms:
        errors = "; ".join(e.line.strip() for e in parsed.errors[:3]) or tail
        code = f" (RKNN error {parsed.error_code})" if parsed.error_code is not None else ""
        raise RunFailed(f"{run.runner} did not finish {run.package.name} on {run.board}: exit "
                        f"{run.result.exit_code}{code}: {errors}{_likely(output)}", output=output, parsed=parsed)


def _likely(output: str) -> str:
    """The most likely cause of a runner's failure, with the manual's section, on the message's one line."""
    found = diagnose(output)
    return f" -> likely: {found[0].cause} ({found[0].where})" if found else ""


def _pull_outputs(board: Board, run: ModelRun) -> list[np.ndarray]:
    """The run's output files (``output_N.npy`` or ``rt_outputN.npy``), in index order, as arrays."""
    listing = board.shell(f"ls {shlex.quote(run.remote_dir)}", timeout=30, check=True).stdout.split()
    found = {}
    for name in listing:
        m = re.fullmatch(r"(?:rt_output|output_)(\d+)\.npy", name)
        if m:
            found[int(m.group(1))] = name
    want = len(run.package.manifest.outputs)
    if sorted(found) != list(range(want)):
        raise RunFailed(f"{run.package.name} on {run.board}: expected {want} output file(s) in {run.remote_dir}, "
                        f"found {sorted(found.values()) or 'none'}", output=run.result.output, parsed=run.parsed)
    arrays = []
    with tempfile.TemporaryDirectory(prefix="npu-hil-out-") as tmp:
        for index in range(want):
            local = Path(tmp) / found[index]
            board.pull(posixpath.join(run.remote_dir, found[index]), local)
            try:
                arrays.append(np.load(local, allow_pickle=False))
            except (OSError, ValueError) as exc:
                raise RunFailed(f"{run.package.name}: output {found[index]} from {run.board} is not a readable "
                                f".npy ({exc}); is /userdata full?", output=run.result.output,
                                parsed=run.parsed) from None
    return arrays
