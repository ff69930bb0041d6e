"""The simulated board's NPU runtime (librknnrt / librknn_runtime): rknn_init checks, tensor attributes, rknn_run.

Both board tools (Rockchip's ``rknn_benchmark`` and our RKNN-Toolkit-Lite runner) sit on this, as on a real
board both sit on the runtime library. It fails where the real runtime fails, with the real runtime's words
(issue trackers, ``reference/rockchip-facts.md``, ``harness/data/signatures.toml``), because the harness's
diagnoses are tested against what the simulator prints:

* a model built for another chip: ``rknn model target platform[0] is RK3566, while current platform is
  RK3588`` and -13 (checked first, from the JSON trailer, as the real runtime does from the model header);
* a header-v6 model on a runtime older than 1.5.2: ``Invalid RKNN model version 6`` and -1;
* a real Rockchip payload (FlatBuffer/NBG, which onnxruntime cannot execute): ``Invalid RKNN format`` and -6;
* RKNPU1 runtime and galcore driver of different releases: ``HAL user version`` / ``HAL kernel version`` and
  ``driver open fail! ret = -9`` (an internal code), rknn_init returning -3 RKNN_ERR_DEVICE_UNAVAILABLE;
  RKNPU2 driver older than the runtime recommends: the ``recommend >=`` warning, and the model still runs;
* faults read per run: ``npu-hang`` (the run blocks ``hang_seconds``, returns zeros, the hang is in dmesg),
  ``fd-leak=N`` (N descriptors per run in rknn_server, or the runtime's process when the server is stopped,
  until EMFILE), ``mem-leak=KB`` (the context's process grows by KB of resident memory per run),
  ``wrong-output`` (outputs silently rolled by one and shifted by half a standard deviation), ``slow-npu=K``
  (latency x K).

ONNX sessions are cached per model sha256 (onnxruntime is imported on first use: it costs ~0.5 s). The runtime
reads models, compares versions and knows its driver with the simulator's own code (:mod:`harness.sim.model_header`,
:mod:`harness.sim.vercmp`, :mod:`harness.sim.runtime_release`), never the harness's parsers or matrix, so the
harness's checks are tested against a board that does not share their bugs.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from harness.sim import runtime_release
from harness.sim.model_header import ModelRefused, read_model
from harness.sim.npu_latency import LatencyModel, estimate_cost
from harness.sim.runtime_log import RknnError, RuntimeLog
from harness.sim.vercmp import at_least, same

if TYPE_CHECKING:
    from harness.sim.context import BoardContext
    from harness.sim.profile import Versions

#: What RKNN Toolkit 1 builds for when a model names no target platform (manual 4.1.2, cause 3).
RKNPU1_DEFAULT_PLATFORMS = ("rk1806", "rk1808", "rk3399pro")
#: Chips that share one NPU (a model built for either runs on both).
SAME_NPU = {"rv1109": "rv1126", "rk1806": "rk1808", "rk3568": "rk3566", "rv1103": "rv1106"}
#: When the driver's watchdog reports a hung job (the real RKNPU2 job timeout is 6 s; shorter here so a test
#: that cuts a hung run after a few seconds already finds the hang in dmesg).
HANG_DETECT_SECONDS = 1.5
_ONNX_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
                "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int8)": np.int8,
                "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_}


@dataclass(frozen=True)
class TensorAttr:
    """One input or output as rknn_query(RKNN_QUERY_*_ATTR) describes it."""

    index: int
    name: str
    dims: tuple[int, ...]
    fmt: str  # NHWC, NCHW, UNDEFINED
    type: str  # FP16, INT8 (rknn_api.h get_type_string)
    qnt_type: str = "AFFINE"
    zp: int = 0
    scale: float = 1.0

    @property
    def n_elems(self) -> int:
        return int(np.prod(self.dims)) if self.dims else 1

    @property
    def size(self) -> int:
        return self.n_elems * (1 if self.type == "INT8" else 2)

    def describe(self) -> str:
        """The tensor line rknn_benchmark's dump_tensor_attr prints."""
        return (f"  index={self.index}, name={self.name}, n_dims={len(self.dims)}, "
                f"dims=[{', '.join(map(str, self.dims))}], n_elems={self.n_elems}, size={self.size}, "
                f"fmt={self.fmt}, type={self.type}, qnt_type={self.qnt_type}, zp={self.zp}, scale={self.scale:f}")


@dataclass
class LoadedModel:
    """A model the simulated NPU can run: its ONNX session, attributes and latency model (cached per sha256)."""

    sha256: str
    session: Any
    inputs: list[TensorAttr]
    outputs: list[TensorAttr]
    onnx_inputs: list[tuple[str, tuple[int, ...], Any]]  # name, shape (NCHW for 4-D), numpy dtype
    latency: LatencyModel
    weight_size: int
    internal_size: int
    trailer: dict[str, Any] = field(default_factory=dict)
    header_version: int = 6


def _static(shape: list[Any]) -> tuple[int, ...]:
    return tuple(d if isinstance(d, int) and d > 0 else 1 for d in shape)


def api_version(ctx: "BoardContext", versions: "Versions") -> str:
    """What rknn_query(SDK_VERSION) gives: ``2.3.2 (429f97ae6b@2025-04-09T09:09:27)`` for the runtime in force."""
    text = ctx.profile.strings.runtime.format(v=versions.runtime)
    match = re.search(r"version:?\s*(\S.*)$", text)
    return match.group(1).strip() if match else text


class SimRuntime:
    """The NPU runtime of one booted simulated board."""

    def __init__(self, ctx: "BoardContext", *, hang_seconds: float = 25.0) -> None:
        self.ctx = ctx
        self.hang_seconds = hang_seconds
        self._models: dict[str, LoadedModel] = {}
        self._lock = threading.Lock()
        self._runtime_pid: int | None = None

    @property
    def npu(self) -> str:
        return self.ctx.profile.npu

    def versions(self) -> "Versions":
        return self.ctx.extra.get("versions", self.ctx.profile.versions)

    # -- rknn_init -----------------------------------------------------------------------------------------
    def init(self, data: bytes, log: RuntimeLog) -> "NpuContext":
        """rknn_init on a model's bytes: the checks of the real runtime, in its order; RknnError on failure."""
        versions, chip = self.versions(), self.ctx.profile.chip
        self._log_versions(log, versions)
        self._check_driver(log, versions)
        try:
            info = read_model(data)
        except ModelRefused as exc:
            log.e("parseRKNN: invalid RKNN_MAGIC!" if exc.bad_magic else "parseRKNN from buffer: Invalid RKNN format!")
            log.e("rknn_init, load model failed!")
            raise RknnError(-6) from None
        platforms = info.target_platforms or (list(RKNPU1_DEFAULT_PLATFORMS) if self.npu == "rknpu1" else [])
        if platforms and SAME_NPU.get(chip, chip) not in {SAME_NPU.get(p, p) for p in platforms}:
            message = (f"rknn model target platform[0] is {platforms[0].upper()}, "
                       f"while current platform is {chip.upper()}")
            if self.npu == "rknpu1":
                log.write(message)
                log.write("Create RKNN model fail, error=-13")
            else:
                log.e(message)
                log.e("rknn_init, load model failed!")
            raise RknnError(-13)
        if self.npu == "rknpu2" and info.header_version >= 6 and not at_least(versions.runtime, "1.5.2"):
            log.e(f"{info.header_version}, 1")
            log.e(f"Invalid RKNN model version {info.header_version}")
            log.e("rknn_init, load model failed!")
            raise RknnError(-1)
        if info.onnx is None:
            log.e("parseRKNN from buffer: Invalid RKNN format! (a compiled Rockchip payload: this simulated NPU "
                  "executes only packages with an ONNX payload)")
            log.e("rknn_init, load model failed!")
            raise RknnError(-6)
        self._check_hal(log, versions)
        model = self._load(info.sha256, info.onnx, info.description, info.header_version)
        log.i(self._model_info(model, info.toolkit_version or "unknown"))
        return NpuContext(self, model)

    def _runtime_at_least_160(self, versions: "Versions") -> bool:
        return at_least(versions.runtime, "1.6.0")

    def _log_versions(self, log: RuntimeLog, versions: "Versions") -> None:
        api = api_version(self.ctx, versions)
        if self.npu == "rknpu1":
            log.i("==============================================")
            log.i("RKNN VERSION:")
            log.i(f"  API: {api}")
            log.i(f"  DRV: {api}")
            log.i("==============================================")
            return
        sep = "," if self._runtime_at_least_160(versions) else ":"
        lib = self.ctx.profile.strings.runtime.split(" version", 1)[0]
        log.i(f"RKNN Runtime Information{sep} {lib} version: {api}")
        log.i(f"RKNN Driver Information{sep} version: {versions.driver}")

    def _model_info(self, model: LoadedModel, toolkit: str) -> str:
        if self.npu == "rknpu1":
            return f"RKNN Model Information: toolkit version: {toolkit}, target platform: {self.ctx.profile.chip}"
        sep = "," if self._runtime_at_least_160(self.versions()) else ":"
        return (f"RKNN Model Information{sep} version: {model.header_version}, toolkit version: {toolkit}, "
                f"target: RKNPU v2, target platform: {self.ctx.profile.chip}, framework name: ONNX, "
                f"framework layout: NCHW, model inference type: static_shape")

    def _check_driver(self, log: RuntimeLog, versions: "Versions") -> None:
        """RKNPU2: a kernel driver below the runtime's row minimum gets the runtime's warning, and runs."""
        wanted = runtime_release.RKNPU2_RECOMMENDED_DRIVER
        if self.npu == "rknpu2" and not at_least(versions.driver, wanted):
            log.w(f"Current driver version: {versions.driver}, recommend to upgrade the driver to the "
                  f"new version: >= {wanted}")

    def _check_hal(self, log: RuntimeLog, versions: "Versions") -> None:
        """RKNPU1: librknn_runtime carries the galcore HAL of its release; another driver refuses to open."""
        user = runtime_release.hal_version(versions.runtime) if self.npu == "rknpu1" else None
        if user is None or same(versions.driver, user):
            return  # a runtime release the table does not know is not second-guessed
        for line in (f"[galcore]: HAL user version {user}", f"[galcore]: HAL kernel version {versions.driver}"):
            log.write(line)
            if self.ctx.kernel is not None:
                self.ctx.kernel.log(line)
        log.e("rknn_init,  driver open fail!  ret = -9!")
        raise RknnError(-3)

    # -- models --------------------------------------------------------------------------------------------
    def _load(self, sha256: str, onnx_bytes: bytes, trailer: dict[str, Any], header_version: int) -> LoadedModel:
        with self._lock:
            cached = self._models.get(sha256)
            if cached is not None:
                return cached
        import onnxruntime  # lazy: ~0.5 s, paid on the first model only

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
        int8 = str(trailer.get("sim_dtype", "fp16")).lower() in ("int8", "i8")
        type_name = "INT8" if int8 else "FP16"
        inputs, onnx_inputs = [], []
        for index, arg in enumerate(session.get_inputs()):
            shape = _static(arg.shape)
            onnx_inputs.append((arg.name, shape, _ONNX_DTYPES.get(arg.type, np.float32)))
            if len(shape) == 4:  # the runtime takes 4-D inputs as NHWC
                inputs.append(TensorAttr(index, arg.name, (shape[0], shape[2], shape[3], shape[1]), "NHWC", type_name))
            else:
                inputs.append(TensorAttr(index, arg.name, shape, "UNDEFINED", type_name))
        outputs = [TensorAttr(i, o.name, _static(o.shape), "NCHW" if len(o.shape) == 4 else "UNDEFINED", type_name)
                   for i, o in enumerate(session.get_outputs())]
        cost = estimate_cost(onnx_bytes)
        per_elem = 1 if int8 else 2
        profile = self.ctx.profile
        model = LoadedModel(sha256, session, inputs, outputs, onnx_inputs,
                            LatencyModel(sha256, profile.chip, profile.npu_speed, cost.flops, int8),
                            cost.weight_elems * per_elem, cost.activation_elems * per_elem, trailer, header_version)
        with self._lock:
            return self._models.setdefault(sha256, model)

    def leak_target(self) -> int | None:
        """The process whose descriptors leak: rknn_server, or (server stopped) the runtime's own process."""
        kernel = self.ctx.kernel
        if kernel is None:
            return None
        if kernel.server_pid is not None:
            return kernel.server_pid
        with self._lock:
            if self._runtime_pid is None or not (kernel.proc / str(self._runtime_pid)).is_dir():
                self._runtime_pid = kernel.start_process("rknn_runtime", ["rknn_runtime"], fds=3)
            return self._runtime_pid


class NpuContext:
    """One rknn_context: runs count from its init, so its first run is the slow, lazy-loading one."""

    def __init__(self, runtime: SimRuntime, model: LoadedModel) -> None:
        self.runtime, self.model = runtime, model
        self.runs = 0
        self.core_mask = 0
        self.owner_pid: int | None = None  # the board process that holds this context (its memory can leak)

    @property
    def cores(self) -> int:
        return bin(self.core_mask & 7).count("1") if self.runtime.ctx.profile.chip == "rk3588" else 1

    def feed(self, index: int, array: np.ndarray, *, nhwc: bool = True) -> np.ndarray:
        """Input ``index`` as the ONNX graph wants it: 4-D NHWC transposed to NCHW, cast to the input type."""
        _, shape, dtype = self.model.onnx_inputs[index]
        array = np.asarray(array)
        if len(shape) == 4 and nhwc and array.ndim == 4:
            array = array.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(array.reshape(shape)).astype(dtype, copy=False)

    def to_model_layout(self, arrays: list[np.ndarray], *, nhwc: bool = True) -> list[np.ndarray]:
        """All inputs through :meth:`feed`, in order."""
        return [self.feed(i, a, nhwc=nhwc) for i, a in enumerate(arrays)]

    def compute(self, feeds: list[np.ndarray]) -> list[np.ndarray]:
        """The model's float32 outputs for ``feeds`` (onnxruntime; no time, no faults)."""
        names = [name for name, _, _ in self.model.onnx_inputs]
        return [np.asarray(o, dtype=np.float32) for o in self.model.session.run(None, dict(zip(names, feeds)))]

    def run(self, feeds: list[np.ndarray], log: RuntimeLog, cancelled: Callable[[], bool] = lambda: False,
            since: float | None = None, computed: list[np.ndarray] | None = None) -> tuple[list[np.ndarray], float]:
        """rknn_run + rknn_outputs_get(want_float): float32 outputs and the on-board time in ms.

        ``since``: when (time.monotonic) the caller called rknn_run, if before this call (a C program on the
        board's runtime library): the simulated time counts from there, so the time the program measures around
        the call is the NPU's, not the NPU's plus the simulator's own round trip. ``computed``: the outputs of
        :meth:`compute` for these feeds, worked out before the call (so a fast NPU's time is not the host's).

        Sleeps the simulated time (the fault ``npu-hang`` for ``hang_seconds``), so the board's timer and
        the wall clock agree. Raises RknnError when a leak has exhausted the process's descriptors.
        """
        runtime, faults, kernel = self.runtime, self.runtime.ctx.faults, self.runtime.ctx.kernel
        index, self.runs = self.runs, self.runs + 1
        leak = faults.number("fd-leak")
        if leak and kernel is not None:
            pid = runtime.leak_target()
            try:
                if pid is not None:
                    kernel.add_fds(pid, int(leak))
            except OSError as exc:
                device = "/dev/galcore" if runtime.npu == "rknpu1" else "/dev/dri/renderD129"
                log.e(f"rknn_run, failed to open {device}: {exc.strerror} (errno {exc.errno})")
                raise RknnError(-1) from None
        grow = faults.number("mem-leak")
        if grow and kernel is not None and self.owner_pid is not None:
            kernel.add_rss(self.owner_pid, int(grow))
        started = time.monotonic() if since is None else since
        outputs = self.compute(feeds) if computed is None else computed
        ms = self.model.latency.run_ms(index, cores=self.cores, slowdown=faults.number("slow-npu") or 1.0)
        if "npu-hang" in faults:
            ms = runtime.hang_seconds * 1000.0 + ms
            self._hang(log, cancelled)
            outputs = [np.zeros_like(o) for o in outputs]
        else:
            _sleep_until(started + ms / 1000.0, cancelled)
        if "wrong-output" in faults:
            outputs = [_perturb(o) for o in outputs]
        return outputs, ms

    def _hang(self, log: RuntimeLog, cancelled: Callable[[], bool]) -> None:
        """The NPU stops answering: the driver's watchdog logs it after HANG_DETECT_SECONDS, the run returns
        (with zeros) only after ``hang_seconds``, as in manual 4.2.13 ("> 20 s, all zeros")."""
        runtime, kernel = self.runtime, self.runtime.ctx.kernel
        started = time.monotonic()
        _sleep_until(started + min(HANG_DETECT_SECONDS, runtime.hang_seconds), cancelled)
        us = int((time.monotonic() - started) * 1e6)
        if runtime.npu == "rknpu1":
            lines = ["[galcore]: GPU[0] hang, automatic recovery."]
        else:
            lines = [f"RKNPU: job timeout, flags: 0x0, irq status: 0x0, raw status: 0x0, require mask: 0x1, "
                     f"task counter: 0x0, elapsed time: {us}us", "RKNPU: soft reset"]
            first = self.model.outputs[0].name if self.model.outputs else "output"
            log.e(f"failed to submit!, op id: 1, op name: Conv:{first}, flags: 0x5, task start: 0, "
                  f"task number: 1, run task counter: 0, int status: 0")
        if kernel is not None:
            for line in lines:
                kernel.log(line)
        _sleep_until(started + runtime.hang_seconds, cancelled)


#: The end of a wait is spun, not slept: a sleep wakes up to ~0.2 ms late, which a C program timing a 1 ms
#: rknn_run on the board's runtime library would see as the NPU's time
SPIN_S = 0.0004


def _sleep_until(deadline: float, cancelled: Callable[[], bool]) -> None:
    """Sleep in short steps so a caller that went away stops a long (hung) run early; spin the last SPIN_S."""
    while True:
        if cancelled():
            return
        left = deadline - time.monotonic()
        if left <= SPIN_S:
            break
        time.sleep(min(left - SPIN_S, 0.1))
    while time.monotonic() < deadline:
        pass


def _perturb(output: np.ndarray) -> np.ndarray:
    """Clearly wrong but plausible: every value moved one place over and shifted by half a std."""
    shift = float(output.std()) or 1.0
    return (np.roll(output.ravel(), 1).reshape(output.shape) + 0.5 * shift).astype(np.float32)
