"""The simulated board's NPU tools: Rockchip's ``rknn_benchmark`` and our Lite runner under the board's ``python3``.

Board commands reach this through the kernel gate (:mod:`harness.sim.gate`): ``/usr/bin/rknn_benchmark`` and
``/usr/bin/python3`` on the board are two-line scripts that exec ``/usr/libexec/sim-gate npu <tool>
RKNN_LOG_LEVEL=<n> ARGS...``; the handler reads the model and inputs from the board's root (paths relative to
the caller's working directory), runs them on :class:`~harness.sim.npu_runtime.SimRuntime` and streams the
tool's output back; files it writes (``rt_output0.npy``, ``output_0.npy``) land in the board's folders.

``rknn_benchmark`` is :mod:`harness.sim.rknn_benchmark`. C programs on the board's runtime library reach the
runtime through :mod:`harness.sim.npu_api` (gate operation ``rknn_api``).

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
from harness.sim.npu_runtime import NpuContext, SimRuntime
from harness.sim.rknn_benchmark import Benchmark, c_atoi
from harness.sim.rootpath import OutsideRoot
from harness.sim.runtime_log import ERROR_NAMES, RknnError, RuntimeLog

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


def _split_log_level(args: list[str]) -> tuple[int, list[str]]:
    """The board scripts pass ``RKNN_LOG_LEVEL=<n>`` (the caller's environment) ahead of the tool's arguments."""
    if args and args[0].startswith("RKNN_LOG_LEVEL="):
        return c_atoi(args[0].partition("=")[2]), args[1:]
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
