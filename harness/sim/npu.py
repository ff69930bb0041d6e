"""The simulated board's NPU tools: Rockchip's ``rknn_benchmark`` and our Lite runner under the board's ``python3``.

Board commands reach this through the kernel gate (:mod:`harness.sim.gate`): ``/usr/bin/rknn_benchmark`` and
``/usr/bin/python3`` on the board are two-line scripts that exec ``/usr/libexec/sim-gate npu <tool>
RKNN_LOG_LEVEL=<n> ARGS...``; the handler reads the model and inputs from the board's root (paths relative to
the caller's working directory), runs them on :class:`~harness.sim.npu_runtime.SimRuntime` and streams the
tool's output back; files it writes (``rt_output0.npy``, ``output_0.npy``) land in the board's folders.

``rknn_benchmark`` prints what Rockchip's rknpu2 example prints, line for line (usage, version line, sizes,
tensor lines, ``Warmup ...`` with 5 runs, ``Begin perf ...``, ``%4d: Elapse Time = %.2fms, FPS = %.2f``,
``Avg Time %.2fms, Avg FPS = %.3f``, ``Save output to rt_output%d.npy``, ``---- Top5 ----``). Without an input
file it feeds zeros, as the real tool does. One deliberate difference: the real tool exits 0 after some
failures (``goto out``); the simulated one exits 255 on every failure, so scripts notice. Harness parsers
must not rely on the exit status of the real one.

``python3`` runs only our runner (the file must carry ``# npu-hil runner protocol 1``): the simulator executes
the file that was pushed to the board (its protocol entry point ``run(argv, lite_class, io)``) with an emulated
``RKNNLite`` and a clock that advances by the simulated NPU time, so the runner's output format cannot drift
between the real board and the simulated one. The simulator imports nothing of the harness's copy of the
runner: the board runs what it was given, as a real board's python3 does.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import types
from pathlib import Path
from typing import Any

import numpy as np

from harness.sim import npu_api
from harness.sim.context import BoardContext
from harness.sim.gate import Gate, GateReply, GateRequest
from harness.sim.npu_runtime import ERROR_NAMES, NpuContext, RknnError, RuntimeLog, SimRuntime, api_version
from harness.sim.rootpath import OutsideRoot

WARMUP_RUNS = 5  # rknn_benchmark's fixed warm-up count
FAIL = 255  # `return -1` from main()
REFUSED = "python3: this simulated board only runs the npu-hil runner"
#: What the board's python3 has installed: ``python3 -c "import numpy, rknnlite.api"`` (a probe for them) answers
#: as a real interpreter would; any other module is missing.
INSTALLED_MODULES = {"numpy", "rknnlite", "rknnlite.api"}
IMPORTS = re.compile(r"^\s*import\s+([\w.]+(?:\s*,\s*[\w.]+)*)\s*;?\s*$")
RUNNER_RSS_KB = 31240  # python3 with numpy and RKNN Toolkit Lite loaded, roughly
#: The line the runner carries in its first lines (its protocol version; see ``run`` in the runner).
RUNNER_MARKER = "# npu-hil runner protocol 1"
_RUNNERS: dict[str, types.ModuleType] = {}  # the runner scripts the boards were given, by sha256 of the source
_RUNNERS_LOCK = threading.Lock()


def load_runner(source: bytes, filename: str) -> types.ModuleType:
    """The board's runner script as a module (not ``__main__``, so its ``main()`` does not run); cached per content.

    Executed in a module of its own, with only its own imports: what python3 on a board would make of the file.
    """
    key = hashlib.sha256(source).hexdigest()
    with _RUNNERS_LOCK:
        module = _RUNNERS.get(key)
        if module is None:
            module = types.ModuleType(f"npu_hil_board_runner_{key[:12]}")
            module.__file__ = filename
            code = compile(source, filename, "exec", dont_inherit=True)
            exec(code, module.__dict__)  # noqa: S102 - the script the board was given, as its python3 runs it
            _RUNNERS[key] = module
        return module


def _c_atoi(text: str) -> int:
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


def _split_log_level(args: list[str]) -> tuple[int, list[str]]:
    """The board scripts pass ``RKNN_LOG_LEVEL=<n>`` (the caller's environment) ahead of the tool's arguments."""
    if args and args[0].startswith("RKNN_LOG_LEVEL="):
        return _c_atoi(args[0].partition("=")[2]), args[1:]
    return 0, args


class SimNpu:
    """The NPU of one booted simulated board; ``hang_seconds`` is how long an ``npu-hang`` run blocks."""

    def __init__(self, ctx: BoardContext, *, hang_seconds: float = 25.0) -> None:
        self.ctx = ctx
        self.runtime = SimRuntime(ctx, hang_seconds=hang_seconds)

    def register(self, gate: Gate) -> None:
        gate.register("npu", self._gate_npu)
        gate.register("rknn_api", lambda request, reply: npu_api.serve(self.runtime, request, reply))

    def _gate_npu(self, request: GateRequest, reply: GateReply) -> int:
        tool = request.args[1] if len(request.args) > 1 else ""
        level, args = _split_log_level(request.args[2:])
        if tool == "rknn_benchmark":
            return Benchmark(self, request.cwd, reply, level).main(args)
        if tool == "lite_runner":
            return self._lite_runner(request.cwd, reply, level, args)
        reply.err(f"npu: unknown tool {tool!r}")
        return 38

    def board_file(self, cwd: str, path: str) -> Path:
        """The host path of a board path given relative to the caller's directory (OutsideRoot if it escapes)."""
        return self.ctx.host_path(os.path.join(cwd or "/", path))

    # -- python3 <our runner> ------------------------------------------------------------------------------
    def _lite_runner(self, cwd: str, reply: GateReply, level: int, args: list[str]) -> int:
        if args[:1] == ["-c"] and len(args) > 1:
            return _import_probe(args[1], reply)
        source = self._runner_source(cwd, args[0]) if args and not args[0].startswith("-") else None
        if source is None:
            reply.err(REFUSED)
            return 127
        try:
            module = load_runner(source, args[0])
            entry = module.run
        except Exception as exc:  # noqa: BLE001 - a broken script fails as python3 would: traceback, status 1
            reply.err("Traceback (most recent call last):")
            reply.err(f"{type(exc).__name__}: {exc}")
            return 1
        io = SimBoardIO(self, cwd, reply)
        kernel = self.ctx.kernel
        # the runner is a process of the board while it runs: /proc/PID for its descriptors and memory (a soak)
        io.pid = kernel.start_process("python3", ["python3", *args], fds=4, rss_kb=RUNNER_RSS_KB) if kernel else None
        try:
            return entry(args[1:], lambda: SimRKNNLite(self, cwd, reply, io, level), io)
        finally:
            if kernel is not None and io.pid is not None:
                kernel.stop_process(io.pid)

    def _runner_source(self, cwd: str, script: str) -> bytes | None:
        """The script's bytes when it is our runner (the marker in its first 20 lines), else None."""
        try:
            source = self.board_file(cwd, script).read_bytes()
        except (OSError, OutsideRoot):
            return None
        head = source.decode("utf-8", "replace").splitlines()[:20]
        return source if any(line.strip() == RUNNER_MARKER for line in head) else None


def _import_probe(code: str, reply: GateReply) -> int:
    """``python3 -c "import A, B"``: 0 when the board has them all, else python3's ModuleNotFoundError and 1;
    any other program is refused."""
    match = IMPORTS.match(code)
    if match is None:
        reply.err(REFUSED)
        return 127
    for module in (m.strip() for m in match.group(1).split(",")):
        if module not in INSTALLED_MODULES:
            reply.err("Traceback (most recent call last):")
            reply.err('  File "<string>", line 1, in <module>')
            reply.err(f"ModuleNotFoundError: No module named '{module.split('.')[0]}'")
            return 1
    return 0


class Benchmark:
    """One ``rknn_benchmark`` invocation (mirrors rknpu2/examples/rknn_benchmark/src/rknn_benchmark.cpp)."""

    def __init__(self, npu: SimNpu, cwd: str, reply: GateReply, level: int) -> None:
        self.npu, self.cwd, self.reply = npu, cwd, reply
        self.log = RuntimeLog(npu.runtime.npu, reply.err, level)
        self.out = reply.out

    def main(self, argv: list[str]) -> int:
        if not argv:
            self.out("Usage:rknn_benchmark model_path [input_path] [loop_count] [core_mask]")
            return FAIL
        model_path = argv[0]
        input_paths = argv[1].split("#") if len(argv) > 1 and argv[1] else []
        loop_count = _c_atoi(argv[2]) if len(argv) > 2 else 10
        core_mask = _c_atoi(argv[3]) if len(argv) > 3 else 1
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


class SimBoardIO:
    """The runner's world on the simulated board (the methods of the runner's ``BoardIO``): board paths, the
    gate's streams, the NPU's clock."""

    def __init__(self, npu: SimNpu, cwd: str, reply: GateReply) -> None:
        self.npu, self.cwd, self.reply = npu, cwd, reply
        self.now = 0.0  # seconds; advanced by SimRKNNLite.inference by the simulated NPU time
        self.pid: int | None = None  # the runner's process in the board's /proc

    def usage(self, process: str) -> tuple[int, int, int] | None:
        """(pid, open descriptors, resident kB) from the board's /proc: the runner's own ("self") or a named one."""
        kernel = self.npu.ctx.kernel
        if kernel is None:
            return None
        pid = self.pid if process == "self" else kernel.find_process(process)
        rss = kernel.rss_kb(pid) if pid is not None else None
        return None if pid is None or rss is None else (pid, kernel.fd_count(pid), rss)

    def out(self, line: str) -> None:
        self.reply.out(line)

    def err(self, line: str) -> None:
        self.reply.err(line)

    def clock(self) -> float:
        return self.now

    def _path(self, path: str) -> Path:
        try:
            return self.npu.board_file(self.cwd, path)
        except OutsideRoot as exc:
            raise OSError(2, f"No such file or directory: {path}") from exc

    def load(self, path: str) -> Any:
        return np.load(self._path(path), allow_pickle=False)

    def save(self, path: str, array: Any) -> None:
        target = self._path(path)
        if self.npu.ctx.userdata_full(target):
            raise OSError(28, "No space left on device")
        np.save(target, np.asarray(array, dtype=np.float32))

    def makedirs(self, path: str) -> None:
        self._path(path).mkdir(parents=True, exist_ok=True)


class SimRKNNLite:
    """RKNN Toolkit Lite's ``RKNNLite`` on the simulated runtime: same methods, return values and log lines."""

    NPU_CORE_AUTO, NPU_CORE_0, NPU_CORE_1, NPU_CORE_2, NPU_CORE_0_1, NPU_CORE_0_1_2 = 0, 1, 2, 4, 3, 7

    def __init__(self, npu: SimNpu, cwd: str, reply: GateReply, io: SimBoardIO, level: int) -> None:
        self.npu, self.cwd, self.reply, self.io = npu, cwd, reply, io
        # Lite2 shows the runtime's information lines; RKNPU1's Lite leaves them to RKNN_LOG_LEVEL.
        self.log = RuntimeLog(npu.runtime.npu, reply.err, max(level, 3 if npu.runtime.npu == "rknpu2" else 0))
        self.data: bytes | None = None
        self.ctx: NpuContext | None = None

    def load_rknn(self, path: str) -> int:
        try:
            self.data = self.npu.board_file(self.cwd, path).read_bytes()
        except (OSError, OutsideRoot):
            self.reply.err(f"E load_rknn: The model path {path} does not exist!")
            return -1
        return 0

    def init_runtime(self, core_mask: int = 0, **_: Any) -> int:
        if self.data is None:
            self.reply.err("E init_runtime: Model is not loaded yet, this interface should be called after load_rknn!")
            return -1
        try:
            self.ctx = self.npu.runtime.init(self.data, self.log)
        except RknnError as exc:
            self.reply.err("E Catch exception when init runtime!")
            self.reply.err(f"Exception: RKNN init failed. error code: {ERROR_NAMES.get(exc.code, 'RKNN_ERR_FAIL')}")
            return -1
        self.ctx.core_mask = core_mask
        self.ctx.owner_pid = self.io.pid  # a memory leak (the mem-leak fault) grows this process
        return 0

    def inference(self, inputs: list[Any], data_format: str | list[str] | None = None, **_: Any) -> Any:
        if self.ctx is None:
            self.reply.err("E inference: Runtime environment is not inited, please call init_runtime to init it first!")
            return None
        formats = data_format if isinstance(data_format, list) else [data_format or "nhwc"] * len(inputs)
        if len(inputs) != len(self.ctx.model.inputs):
            self.reply.err(f"E inference: The model needs {len(self.ctx.model.inputs)} inputs, got {len(inputs)}!")
            return None
        feeds = []
        for array, attr, fmt, (_, shape, _) in zip(inputs, self.ctx.model.inputs, formats, self.ctx.model.onnx_inputs):
            array = np.asarray(array)
            want = attr.dims if fmt == "nhwc" else shape
            if array.ndim == len(want) - 1:
                array = array[np.newaxis]
            if tuple(array.shape) != tuple(want):
                self.reply.err(f"E inference: The input[{attr.index}] shape {tuple(array.shape)} is wrong, "
                               f"expect '{fmt}' like {tuple(want)}!")
                return None
            feeds.append(self.ctx.feed(attr.index, array, nhwc=fmt == "nhwc"))
        try:
            outputs, ms = self.ctx.run(feeds, self.log, cancelled=self.reply.peer_gone)
        except RknnError as exc:
            self.reply.err(f"E inference: rknn_run failed, error code: {ERROR_NAMES.get(exc.code, 'RKNN_ERR_FAIL')}")
            return None
        self.io.now += ms / 1000.0
        return outputs

    def release(self) -> None:
        self.ctx = None
