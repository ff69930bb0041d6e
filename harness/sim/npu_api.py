"""The simulator's end of the board's runtime library: rknn_* calls of C programs, forwarded over the kernel gate.

On the simulated board, ``librknn_api.so`` / ``librknnrt.so`` is our stand-in (``native/sim_rknn_runtime.c``,
an ARM library run under qemu-user with the program that loaded it). Each ``rknn_init`` opens one gate session
(``rknn_api LOG_LEVEL PID``); its calls arrive here one line at a time and run on the board's
:class:`~harness.sim.npu_runtime.SimRuntime`, the runtime the Lite runner and ``rknn_benchmark`` use, so a C
program fails where the others fail and logs what the real library logs (``E RKNN: rknn_inputs_set, param input
size(1228800) < model input size(4915200)`` and -5, from rknpu2 issue #9). The wire format is in the C file.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from harness.sim.gate import GateReply, GateRequest
from harness.sim.npu_runtime import NpuContext, TensorAttr, api_version
from harness.sim.runtime_log import RknnError, RuntimeLog

if TYPE_CHECKING:
    from harness.sim.npu_runtime import SimRuntime

#: rknn_tensor_type as the C API numbers it (both generations)
TENSOR_TYPES = {0: np.float32, 1: np.float16, 2: np.int8, 3: np.uint8}
TYPE_CODES = {"FP32": 0, "FP16": 1, "INT8": 2, "UINT8": 3}
FORMAT_CODES = {"NCHW": 0, "NHWC": 1}
NHWC = 1
QNT_AFFINE_ASYMMETRIC = 2
MAX_MODEL_BYTES = 1 << 30
PROGRAM_COMM = "rknn_app"  # the name a C program on the runtime has in the board's /proc
PROGRAM_RSS_KB = 5312  # a C program with librknn_api/librknnrt loaded, roughly


def _int(text: str, default: int = 0) -> int:
    try:
        return int(text)
    except ValueError:
        return default


class ApiSession:
    """One rknn_context of a board program: its model, the inputs set, the last run's outputs and time."""

    def __init__(self, runtime: "SimRuntime", reply: GateReply, level: int, pid: int | None = None) -> None:
        self.runtime, self.reply = runtime, reply
        self.pid = pid  # the program's own PID on the board: its /proc entry while it holds the context
        self.log = RuntimeLog(runtime.npu, reply.err, level)
        self.ctx: NpuContext | None = None
        self.feeds: dict[int, np.ndarray] = {}
        #: the outputs for the inputs set, computed as soon as they are all set: rknn_run then only keeps time
        self.computed: list[np.ndarray] | None = None
        self.outputs: list[np.ndarray] = []
        self.run_us = 0
        self.last_sent = 0.0  # when the last reply left (time.monotonic)
        self.reply_latency = 0.0  # the fastest a reply has reached the program so far: the NPU finishes that early

    def _ret(self, code: int, body: bytes | str = b"") -> None:
        data = body.encode() if isinstance(body, str) else body
        self.last_sent = time.monotonic()
        self.reply.send_bytes(f"@@ret {code} {len(data)}\n".encode() + data)

    def serve(self) -> int:
        """Answer calls until rknn_destroy or the caller goes away; the program is in the board's /proc meanwhile
        (a soak reads its descriptors and memory there; the mem-leak fault grows it)."""
        kernel, registered = self.runtime.ctx.kernel, False
        if kernel is not None and self.pid:
            try:
                kernel.start_process(PROGRAM_COMM, [PROGRAM_COMM], fds=4, rss_kb=PROGRAM_RSS_KB, pid=self.pid)
                registered = True
            except FileExistsError:  # another program's context, or a simulator process, has that number
                pass
        try:
            return self._serve()
        finally:
            if registered:
                kernel.stop_process(self.pid)

    def _serve(self) -> int:
        while True:
            line = self.reply.read_line()
            if line is None:
                return 0
            words = line.split()
            if not words:
                continue
            if words[0] == "destroy":
                self._ret(0)
                return 0
            handler = getattr(self, "_call_" + words[0], None)
            if handler is None:
                self.log.e(f"unknown call {words[0]!r}")
                self._ret(-5)
                continue
            handler(words[1:])

    # -- the calls -----------------------------------------------------------------------------------------
    def _call_init(self, args: list[str]) -> None:
        size = _int(args[1], -1) if len(args) > 1 else -1
        data = self.reply.read_exact(size) if 0 <= size <= MAX_MODEL_BYTES else None
        if data is None:
            self._ret(-5)
            return
        try:
            self.ctx = self.runtime.init(data, self.log)
        except RknnError as exc:
            self._ret(exc.code)
            return
        self.ctx.owner_pid = self.pid
        self._ret(0)

    def _call_query(self, args: list[str]) -> None:
        ctx = self.ctx
        what = args[0] if args else ""
        if ctx is None:
            self._ret(-7)
        elif what == "in_out_num":
            self._ret(0, f"{len(ctx.model.inputs)} {len(ctx.model.outputs)}")
        elif what in ("input", "output"):
            attrs = ctx.model.inputs if what == "input" else ctx.model.outputs
            index = _int(args[1], -1) if len(args) > 1 else -1
            if not 0 <= index < len(attrs):
                self.log.e(f"rknn_query, {what} index({index}) >= {what} number({len(attrs)})!")
                self._ret(-5)
            else:
                self._ret(0, self._describe(attrs[index]))
        elif what == "perf_run":
            self._ret(0, str(self.run_us))
        elif what == "sdk_version":
            versions = self.runtime.versions()
            self._ret(0, f"{api_version(self.runtime.ctx, versions)}\n{versions.driver}")
        else:
            self._ret(-5)

    def _describe(self, attr: TensorAttr) -> str:
        fmt = FORMAT_CODES.get(attr.fmt, 3 if self.runtime.npu == "rknpu2" else 0)
        return (f"{attr.index} {len(attr.dims)} {','.join(map(str, attr.dims)) or '0'} {attr.n_elems} {attr.size} "
                f"{fmt} {TYPE_CODES.get(attr.type, 1)} {QNT_AFFINE_ASYMMETRIC} {attr.zp} {attr.scale:g} {attr.name}")

    def _call_inputs_set(self, args: list[str]) -> None:
        index, type_code, fmt, _pass, size = (_int(a, -1) for a in (args + ["-1"] * 5)[:5])
        data = self.reply.read_exact(size) if 0 <= size <= MAX_MODEL_BYTES else None
        ctx = self.ctx
        if ctx is None or data is None:
            self._ret(-7 if ctx is None else -5)
            return
        attrs = ctx.model.inputs
        if not 0 <= index < len(attrs) or type_code not in TENSOR_TYPES:
            self.log.e(f"rknn_inputs_set, invalid input index({index}) or type({type_code})!")
            self._ret(-5)
            return
        attr, dtype = attrs[index], np.dtype(TENSOR_TYPES[type_code])
        need = attr.n_elems * dtype.itemsize
        if size < need:
            self.log.e(f"rknn_inputs_set, param input size({size}) < model input size({need})")
            self._ret(-5)
            return
        array = np.frombuffer(data[:need], dtype=dtype)
        nhwc = fmt == NHWC
        if attr.fmt == "NHWC":
            array = array.reshape(attr.dims) if nhwc else array.reshape(ctx.model.onnx_inputs[index][1])
        self.feeds[index] = ctx.feed(index, array, nhwc=nhwc)
        complete = len(self.feeds) == len(attrs)
        self.computed = ctx.compute([self.feeds[i] for i in sorted(self.feeds)]) if complete else None
        self._ret(0)

    def _call_run(self, args: list[str]) -> None:
        ctx = self.ctx
        if ctx is None:
            self._ret(-7)
            return
        missing = [i for i in range(len(ctx.model.inputs)) if i not in self.feeds]
        if missing:
            self.log.e(f"rknn_run, input {missing[0]} not set!")
            self._ret(-5)
            return
        since = self._run_began(args)
        try:
            self.outputs, ms = ctx.run([self.feeds[i] for i in sorted(self.feeds)], self.log,
                                       cancelled=self.reply.peer_gone, since=since, computed=self.computed)
        except RknnError as exc:
            self._ret(exc.code)
            return
        self.run_us = int(round(ms * 1000))
        self._ret(0)

    def _run_began(self, args: list[str]) -> float | None:
        """When the program called rknn_run, less the time our replies take to reach it: both stamps are its
        CLOCK_MONOTONIC, which is time.monotonic's clock (one host kernel). None when the stamps make no sense."""
        began = _int(args[0], 0) / 1e9 if args else 0.0
        if not 0 < began <= time.monotonic():
            return None
        received = _int(args[1], 0) / 1e9 if len(args) > 1 else 0.0
        latency = received - self.last_sent
        if 0 < latency < 0.05 and (self.reply_latency == 0.0 or latency < self.reply_latency):
            self.reply_latency = latency
        return began - self.reply_latency

    def _call_outputs_get(self, args: list[str]) -> None:
        index = _int(args[0], -1) if args else -1
        if self.ctx is None:
            self._ret(-7)
        elif not self.outputs:
            self.log.e("rknn_outputs_get,  p_ctx->queue_output.size() = 0!")
            self._ret(-1)
        elif not 0 <= index < len(self.outputs):
            self.log.e(f"rknn_outputs_get, output index({index}) >= output number({len(self.outputs)})!")
            self._ret(-5)
        else:  # want_float or not, the float32 values (the simulated NPU computes in float)
            self._ret(0, np.ascontiguousarray(self.outputs[index], dtype="<f4").tobytes())


def serve(runtime: "SimRuntime", request: GateRequest, reply: GateReply) -> int:
    """The gate handler for ``rknn_api LOG_LEVEL PID``: one rknn_context's session."""
    level = _int(request.args[1]) if len(request.args) > 1 else 0
    pid = _int(request.args[2]) if len(request.args) > 2 else 0
    return ApiSession(runtime, reply, level, pid if pid > 0 else None).serve()
