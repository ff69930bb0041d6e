#!/usr/bin/env python3
# npu-hil runner protocol 1
"""npu-hil's on-board runner: run one .rknn model with RKNN Toolkit Lite (Lite2 on RKNPU2) and time it ON the board.

Why a runner of our own: latency measured by the host around an adb round trip is 2-10x the NPU's time
(manual 4.2.2), and the first inference is much slower than the rest (4.2.3). This script is pushed to the
board and run there with the board's python3; it times ``inference()`` alone with ``time.perf_counter``,
reports the first run apart, leaves warm-up runs out of the average and saves the outputs as raw tensors for
the golden comparison. It imports nothing from the harness (the board has only numpy and rknnlite).

Usage (protocol 1)::

    python3 npu_hil_runner.py MODEL.rknn --input a.npy [--input b.npy ...] --loops N --warmup W --out DIR
                              [--core-mask M] [--data-format nhwc|nchw] [--sample-every K [--watch NAME ...]]

``--core-mask``: RKNNLite's NPU_CORE_* value (0 auto, 1/2/4 one core, 3 cores 0-1, 7 cores 0-2; RK3588 only).
``--data-format``: layout of 4-D inputs as given (default: Lite's default, NHWC).
``--sample-every K``: a soak in one long-lived process (manual 4.2.1): before the first timed run and after every
K-th, the runner prints its own open descriptors and resident memory (/proc/self) and those of each ``--watch``
process (by name, e.g. rknn_server), so growth per inference shows while the same context keeps running.

Output protocol 1, on stdout, one fact a line (the formats are the ``FORMATS`` below; the simulated board's
emulation runs this very file, so both print the same)::

    npu-hil runner protocol 1
    model: MODEL.rknn
    first run: 12.345 ms                  the first inference after init_runtime (lazy load), reported apart
    warmup 0: 12.345 ms                   warm-up runs: the first W runs, excluded from the average
    iteration 0: 1.234 ms                 the N timed runs
    npu time 0: 1.102 ms                  the runtime's own figure for that run (RKNN_QUERY_PERF_RUN): printed
                                          by the native runner where the runtime answers the query
    average: 1.234 ms over N iterations
    sample 0: self pid=812 fds=9 rss_kb=30412   --sample-every: after K timed runs (0: before the first)
    sample 0: rknn_server pid=301 fds=12 rss_kb=6212   ... and each --watch process (absent ones: not printed)
    output 0: DIR/output_0.npy shape=[1, 10] dtype=float32     outputs of the last run, float32
    done

When W is 0 the first run is iteration 0 (and still printed as ``first run`` too). Errors: one ``error: ...``
line on stderr and exit status 2 (bad arguments or inputs), 3 (load_rknn), 4 (init_runtime), 5 (inference),
6 (writing outputs). RKNN Lite's own log lines (``E RKNN: ...``, ``W ...``) go where the library prints them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Callable, Sequence

PROTOCOL = 1
MARKER = f"# npu-hil runner protocol {PROTOCOL}"
FORMATS = {
    "header": "npu-hil runner protocol {protocol}",
    "model": "model: {path}",
    "first": "first run: {ms:.3f} ms",
    "warmup": "warmup {index}: {ms:.3f} ms",
    "iteration": "iteration {index}: {ms:.3f} ms",
    "npu_time": "npu time {index}: {ms:.3f} ms",
    "average": "average: {ms:.3f} ms over {count} iterations",
    "output": "output {index}: {path} shape=[{shape}] dtype={dtype}",
    "sample": "sample {index}: {process} pid={pid} fds={fds} rss_kb={rss_kb}",
    "done": "done",
}
EXIT_USAGE, EXIT_LOAD, EXIT_INIT, EXIT_INFERENCE, EXIT_OUTPUT = 2, 3, 4, 5, 6


class UsageError(Exception):
    """Bad command line: reported as one ``error:`` line, never a traceback."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse would print and sys.exit: we report instead
        raise UsageError(message)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = _Parser(prog="npu_hil_runner.py", add_help=False)
    parser.add_argument("model")
    parser.add_argument("--input", action="append", required=True, help="one .npy per model input, in order")
    parser.add_argument("--loops", type=int, required=True)
    parser.add_argument("--warmup", type=int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--core-mask", type=int, default=None)
    parser.add_argument("--data-format", choices=("nhwc", "nchw"), default=None)
    parser.add_argument("--sample-every", type=int, default=0)
    parser.add_argument("--watch", action="append", default=[])
    args = parser.parse_args(list(argv))
    if args.loops < 1 or args.warmup < 0:
        raise UsageError(f"--loops must be >= 1 and --warmup >= 0 (got {args.loops}, {args.warmup})")
    if args.sample_every < 0:
        raise UsageError(f"--sample-every must be >= 0 (got {args.sample_every})")
    return args


class BoardIO:
    """Everything the runner does to the world, so the simulated board can run this same code on its files."""

    def out(self, line: str) -> None:
        print(line, flush=True)

    def err(self, line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    def clock(self) -> float:
        return time.perf_counter()

    def load(self, path: str) -> Any:
        import numpy as np
        return np.load(path, allow_pickle=False)

    def save(self, path: str, array: Any) -> None:
        import numpy as np
        np.save(path, np.asarray(array, dtype=np.float32))

    def makedirs(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)

    def usage(self, process: str) -> tuple[int, int, int] | None:
        """(pid, open descriptors, resident kB) of this process ("self") or the first one named ``process``."""
        pid = os.getpid() if process == "self" else _pid_of(process)
        if pid is None:
            return None
        try:
            fds = len(os.listdir(f"/proc/{pid}/fd"))
            with open(f"/proc/{pid}/status") as status:
                rss = next((int(line.split()[1]) for line in status if line.startswith("VmRSS:")), 0)
        except (OSError, ValueError):
            return None  # it ended meanwhile
        return pid, fds, rss


def _pid_of(name: str) -> int | None:
    for entry in sorted(os.listdir("/proc"), key=lambda e: (len(e), e)):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as comm:
                    if comm.read().strip() == name:
                        return int(entry)
            except OSError:
                continue
    return None


def run(argv: Sequence[str], lite_class: Callable[[], Any], io: BoardIO) -> int:
    """The whole protocol; returns the exit status. ``lite_class`` builds an RKNNLite (or the simulator's)."""
    try:
        args = parse_args(argv)
    except UsageError as exc:
        io.err(f"error: {exc}")
        return EXIT_USAGE
    try:
        inputs = [io.load(path) for path in args.input]
    except (OSError, ValueError) as exc:
        io.err(f"error: cannot read input: {exc}")
        return EXIT_USAGE
    rknn = lite_class()
    try:
        return _run_model(args, rknn, inputs, io)
    finally:
        rknn.release()


def _run_model(args: argparse.Namespace, rknn: Any, inputs: list[Any], io: BoardIO) -> int:
    ret = rknn.load_rknn(args.model)
    if ret != 0:
        io.err(f"error: load_rknn failed: ret={ret}")
        return EXIT_LOAD
    ret = rknn.init_runtime() if args.core_mask is None else rknn.init_runtime(core_mask=args.core_mask)
    if ret != 0:
        io.err(f"error: init_runtime failed: ret={ret}")
        return EXIT_INIT
    io.out(FORMATS["header"].format(protocol=PROTOCOL))
    io.out(FORMATS["model"].format(path=args.model))
    kwargs = {"data_format": args.data_format} if args.data_format else {}
    times: list[float] = []
    outputs: Any = None
    for run_index in range(args.warmup + args.loops):
        if args.sample_every and run_index == args.warmup:
            _sample(args, io, 0)
        start = io.clock()
        outputs = rknn.inference(inputs=inputs, **kwargs)
        ms = (io.clock() - start) * 1000.0
        if outputs is None:
            io.err(f"error: inference failed at run {run_index}")
            return EXIT_INFERENCE
        if run_index == 0:
            io.out(FORMATS["first"].format(ms=ms))
        if run_index < args.warmup:
            io.out(FORMATS["warmup"].format(index=run_index, ms=ms))
        else:
            io.out(FORMATS["iteration"].format(index=run_index - args.warmup, ms=ms))
            times.append(ms)
            if args.sample_every and len(times) % args.sample_every == 0:
                _sample(args, io, len(times))
    io.out(FORMATS["average"].format(ms=sum(times) / len(times), count=len(times)))
    try:
        io.makedirs(args.out)
        for index, output in enumerate(outputs):
            path = os.path.join(args.out, f"output_{index}.npy")
            io.save(path, output)
            shape = ", ".join(str(d) for d in getattr(output, "shape", ()))
            io.out(FORMATS["output"].format(index=index, path=path, shape=shape, dtype="float32"))
    except OSError as exc:
        io.err(f"error: cannot write outputs to {args.out}: {exc.strerror or exc}")
        return EXIT_OUTPUT
    io.out(FORMATS["done"])
    return 0


def _sample(args: argparse.Namespace, io: Any, index: int) -> None:
    """One sample line for this process and each watched one (after ``index`` timed runs)."""
    for process in ["self", *args.watch]:
        found = io.usage(process)
        if found is not None:
            pid, fds, rss_kb = found
            io.out(FORMATS["sample"].format(index=index, process=process, pid=pid, fds=fds, rss_kb=rss_kb))


def main(argv: Sequence[str] | None = None) -> int:
    try:
        from rknnlite.api import RKNNLite  # RKNN Toolkit Lite2 (RKNPU2) and Lite (RKNPU1) share this name
    except ImportError as exc:
        print(f"error: RKNN Toolkit Lite is not installed on this board: {exc}", file=sys.stderr)
        return EXIT_INIT
    return run(sys.argv[1:] if argv is None else argv, RKNNLite, BoardIO())


if __name__ == "__main__":
    sys.exit(main())
