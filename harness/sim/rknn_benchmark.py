"""``rknn_benchmark`` on the simulated board (mirrors rknpu2/examples/rknn_benchmark/src/rknn_benchmark.cpp).

It prints what Rockchip's example prints, line for line (usage, version line, sizes, tensor lines, ``Warmup
...`` with 5 runs, ``Begin perf ...``, ``%4d: Elapse Time = %.2fms, FPS = %.2f``, ``Avg Time %.2fms, Avg FPS =
%.3f``, ``Save output to rt_output%d.npy``, ``---- Top5 ----``). Without an input file it feeds zeros, as the
real tool does. One deliberate difference: the real tool exits 0 after some failures (``goto out``); the
simulated one exits 255 on every failure, so scripts notice. Harness parsers must not rely on the exit status of
the real one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from harness.sim.context import BoardContext
from harness.sim.gate import GateReply
from harness.sim.npu_runtime import NpuContext, SimRuntime, api_version
from harness.sim.rootpath import OutsideRoot
from harness.sim.runtime_log import RknnError, RuntimeLog

WARMUP_RUNS = 5  # rknn_benchmark's fixed warm-up count
FAIL = 255  # `return -1` from main()


class BoardNpu(Protocol):
    """What the tool needs of the board's NPU: its runtime, its board, and board paths as host paths."""

    runtime: SimRuntime
    ctx: BoardContext

    def board_file(self, cwd: str, path: str) -> Path: ...


def c_atoi(text: str) -> int:
    """C's atoi/strtoul: leading digits, else 0 (``rknn_benchmark m.rknn in.npy ten`` loops 0 times)."""
    digits = ""
    for ch in text.strip():
        if ch.isdigit() or (not digits and ch in "+-"):
            digits += ch
        else:
            break
    try:
        return int(digits)
    except ValueError:
        return 0


class Benchmark:
    """One ``rknn_benchmark`` invocation (mirrors rknpu2/examples/rknn_benchmark/src/rknn_benchmark.cpp)."""

    def __init__(self, npu: BoardNpu, cwd: str, reply: GateReply, level: int) -> None:
        self.npu, self.cwd, self.reply = npu, cwd, reply
        self.log = RuntimeLog(npu.runtime.npu, reply.err, level)
        self.out = reply.out

    def main(self, argv: list[str]) -> int:
        if not argv:
            self.out("Usage:rknn_benchmark model_path [input_path] [loop_count] [core_mask]")
            return FAIL
        model_path = argv[0]
        input_paths = argv[1].split("#") if len(argv) > 1 and argv[1] else []
        loop_count = c_atoi(argv[2]) if len(argv) > 2 else 10
        core_mask = c_atoi(argv[3]) if len(argv) > 3 else 1
        try:
            data = self.npu.board_file(self.cwd, model_path).read_bytes()
        except (OSError, OutsideRoot) as exc:
            self.log.e(f"rknn_init, open model file {model_path} failed: "
                       f"{getattr(exc, 'strerror', None) or 'No such file or directory'}")
            self.out("rknn_init fail! ret=-1")
            return FAIL
        try:
            ctx = self.npu.runtime.init(data, self.log)
        except RknnError as exc:
            self.out(f"rknn_init fail! ret={exc.code}")
            return FAIL
        ctx.core_mask = core_mask
        self._describe(ctx)
        arrays = self._inputs(ctx, input_paths)
        if arrays is None:
            return FAIL
        return self._perf(ctx, ctx.to_model_layout(arrays, nhwc=True), loop_count)

    def _describe(self, ctx: NpuContext) -> None:
        runtime, model = self.npu.runtime, ctx.model
        versions = runtime.versions()
        self.out(f"rknn_api/rknnrt version: {api_version(runtime.ctx, versions)}, driver version: {versions.driver}")
        self.out(f"total weight size: {model.weight_size}, total internal size: {model.internal_size}")
        self.out(f"model input num: {len(model.inputs)}, output num: {len(model.outputs)}")
        self.out("input tensors:")
        for attr in model.inputs:
            self.out(attr.describe())
        self.out("output tensors:")
        for attr in model.outputs:
            self.out(attr.describe())

    def _inputs(self, ctx: NpuContext, paths: list[str]) -> list[np.ndarray] | None:
        """The input tensors in the runtime's layout (NHWC for 4-D), or None after printing the tool's error."""
        attrs = ctx.model.inputs
        if not paths:
            return [np.zeros(a.dims, dtype=np.uint8) for a in attrs]
        if len(paths) != len(attrs):
            self.out(f"input missing!, need input number: {len(attrs)}, only get {len(paths)} inputs")
            return None
        arrays = []
        for attr, path in zip(attrs, paths):
            if ".npy" not in path:
                self.out("load image failed!")  # stb_image; the simulated board takes .npy inputs only
                return None
            self.out(f"Loading {path}")
            try:
                array = np.load(self.npu.board_file(self.cwd, path), allow_pickle=False)
            except (OSError, ValueError, OutsideRoot):
                self.reply.err("terminate called after throwing an instance of 'std::runtime_error'")
                self.reply.err(f"  what():  npy_load: Unable to open file {path}")
                return None
            self.out(f"npy data type:{array.dtype.name}")
            if attr.fmt != "UNDEFINED":
                shape = [1, 1, 1, 1]
                start = 0 if array.ndim == 4 else 1
                for i, d in enumerate(array.shape[:4 - start]):
                    shape[start + i] = d
                want = attr.dims[1:4]
                if tuple(shape[1:4]) != tuple(want):
                    self.out("npy shape match failed!, ({}, {}, {}) != ({}, {}, {})".format(*shape[1:4], *want))
                    return None
            if array.size != attr.n_elems:
                self.log.e(f"rknn_inputs_set, input[{attr.index}] size mismatch: need {attr.n_elems} elements, "
                           f"got {array.size}")
                self.out("rknn_input_set fail! ret=-5")
                return None
            arrays.append(array.reshape(attr.dims))
        return arrays

    def _run(self, ctx: NpuContext, feeds: list[np.ndarray]) -> tuple[list[np.ndarray], float] | None:
        if self.reply.peer_gone():  # the caller was killed: no phantom runs (they would still apply faults)
            return None
        try:
            return ctx.run(feeds, self.log, cancelled=self.reply.peer_gone)
        except RknnError as exc:
            self.out(f"rknn run error {exc.code}")
            return None

    def _timing_line(self, index: int, ms: float) -> str:
        us = max(int(round(ms * 1000)), 1)
        return f"{index:4d}: Elapse Time = {us / 1000:.2f}ms, FPS = {1e6 / us:.2f}"

    def _perf(self, ctx: NpuContext, feeds: list[np.ndarray], loop_count: int) -> int:
        self.out("Warmup ...")
        outputs: list[np.ndarray] = []
        for i in range(WARMUP_RUNS):
            done = self._run(ctx, feeds)
            if done is None:
                return FAIL
            outputs = done[0]  # with loop_count 0, rknn_outputs_get returns the last warm-up's results
            self.out(self._timing_line(i, done[1]))
        self.out("Begin perf ...")
        total = 0.0
        for i in range(loop_count):
            done = self._run(ctx, feeds)
            if done is None:
                return FAIL
            outputs, ms = done
            total += round(ms * 1000) / 1000
            self.out(self._timing_line(i, ms))
        if self.reply.peer_gone():
            return 1
        avg = f"{total / loop_count:.2f}" if loop_count > 0 else "-nan"
        fps = f"{loop_count * 1000 / total:.3f}" if total > 0 else "-nan"
        self.out(f"\nAvg Time {avg}ms, Avg FPS = {fps}\n")
        self._save(ctx, outputs)
        return 0

    def _save(self, ctx: NpuContext, outputs: list[np.ndarray]) -> None:
        for index, (attr, output) in enumerate(zip(ctx.model.outputs, outputs)):
            name = f"rt_output{index}.npy"
            self.out(f"Save output to {name}")
            target = self.npu.board_file(self.cwd, name)
            if self.npu.ctx.userdata_full(target.parent / "x"):
                target.write_bytes(b"")  # cnpy's fwrite fails silently on ENOSPC: an empty, broken file
                continue
            np.save(target, np.asarray(output, dtype=np.float32).reshape(attr.dims))
        for output in outputs:
            flat = np.asarray(output, dtype=np.float32).ravel()
            top = min(5, flat.size)
            order = sorted(range(flat.size), key=lambda i: (-flat[i], i))[:top]
            self.out(f"---- Top{top} ----")
            for i in order:
                self.out(f"{flat[i]:8.6f} - {i}")
