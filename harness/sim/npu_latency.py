"""How long an inference takes on the simulated NPU: deterministic per (model, chip), with seeded noise.

Why a model and not the host's clock: the host is shared (two cores, other tests running), so timing what
onnxruntime does on it would make every latency figure noise. The simulated board instead reports what a
board would: a cost that grows with the model's work (a FLOPs estimate from the ONNX graph), shrinks with
the chip's ``npu_speed``, carries a few percent of noise seeded by the model's sha256 and the chip (so two
runs of the same model on the same chip print the same figures), and a first run 3-10x slower than the rest
(lazy load, manual 4.2.3). The NPU handler then *sleeps* that long, so the board's timer and the wall clock
agree. Figures are scaled so a tiny test model takes ~1-5 ms a run and a MobileNet-sized one a few ms on
RK3588, ~10 ms on RV1126: suites stay fast and the ratios between chips stay plausible.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

import numpy as np

#: Fixed cost of one rknn_run on a chip of npu_speed 1.0 (job submit, interrupts, cache flush), in ms.
RUN_OVERHEAD_MS = 3.0
#: Simulated throughput of a chip of npu_speed 1.0, in FLOPs per ms (FP16; INT8 runs INT8_SPEEDUP faster).
FLOPS_PER_MS = 1.5e8
INT8_SPEEDUP = 2.5
#: Relative standard deviation of the per-run noise, clipped at 3 sigma.
NOISE = 0.02
#: Per extra NPU core enabled by a core mask, the compute part speeds up by this fraction (RK3588).
MULTI_CORE_GAIN = 0.4


def _shape(value_info) -> list[int] | None:
    dims = value_info.type.tensor_type.shape.dim
    if not dims:
        return None
    out = []
    for d in dims:
        if d.HasField("dim_value") and d.dim_value > 0:
            out.append(int(d.dim_value))
        else:
            out.append(1)  # dynamic dims count as 1: an estimate, not a contract
    return out


@dataclass(frozen=True)
class GraphCost:
    """What one inference of an ONNX graph costs: FLOPs, weight elements, intermediate tensor elements."""

    flops: int
    weight_elems: int
    activation_elems: int


def estimate_cost(model_bytes: bytes) -> GraphCost:
    """The cost of one inference, estimated from the ONNX graph (Conv, MatMul/Gemm exactly; others per element).

    Falls back to the model's size when the graph cannot be shape-inferred: the estimate orders models by
    cost, it does not claim to count them.
    """
    import onnx  # lazy: only the NPU needs it
    from onnx import numpy_helper, shape_inference

    try:
        model = shape_inference.infer_shapes(onnx.load_from_string(model_bytes))
    except Exception:
        return GraphCost(max(len(model_bytes), 1) * 4, len(model_bytes) // 4, 0)
    graph = model.graph
    shapes: dict[str, list[int]] = {}
    for info in list(graph.input) + list(graph.value_info) + list(graph.output):
        shape = _shape(info)
        if shape is not None:
            shapes[info.name] = shape
    activations = sum(int(np.prod(shapes[v.name])) for v in graph.value_info if v.name in shapes)
    weights = 0
    for init in graph.initializer:
        shapes[init.name] = list(numpy_helper.to_array(init).shape)
        weights += int(np.prod(shapes[init.name]))
    total = 0
    for node in graph.node:
        out = shapes.get(node.output[0]) if node.output else None
        out_elems = int(np.prod(out)) if out else 0
        if node.op_type == "Conv" and len(node.input) > 1 and node.input[1] in shapes:
            weight = shapes[node.input[1]]  # [Cout, Cin/group, kh, kw]
            total += 2 * out_elems * int(np.prod(weight[1:]))
        elif node.op_type in ("MatMul", "Gemm") and node.input[0] in shapes:
            a = shapes[node.input[0]]
            k = a[0] if (node.op_type == "Gemm" and any(x.name == "transA" and x.i for x in node.attribute)) else a[-1]
            total += 2 * out_elems * k
        else:
            total += out_elems
    return GraphCost(max(total, 1), weights, activations)


def _seed(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:8], "little")


@dataclass(frozen=True)
class LatencyModel:
    """Simulated run times of one model on one chip; ``run_ms(i)`` is the i-th rknn_run after rknn_init."""

    sha256: str
    chip: str
    npu_speed: float
    flops: int
    int8: bool = False

    @property
    def compute_ms(self) -> float:
        speed = FLOPS_PER_MS * (INT8_SPEEDUP if self.int8 else 1.0)
        return self.flops / speed / self.npu_speed

    @property
    def overhead_ms(self) -> float:
        return RUN_OVERHEAD_MS / self.npu_speed

    @property
    def first_run_factor(self) -> float:
        """How much slower the first run is (3-10x, fixed per model and chip)."""
        return 3.0 + 7.0 * random.Random(_seed(self.sha256, self.chip, "first")).random()

    def run_ms(self, index: int, *, cores: int = 1, slowdown: float = 1.0) -> float:
        """Milliseconds of run ``index`` (0 = the first, slow one) with ``cores`` NPU cores and a slow-npu factor."""
        gain = 1.0 + MULTI_CORE_GAIN * (max(cores, 1) - 1)
        base = self.overhead_ms + self.compute_ms / gain
        noise = random.Random(_seed(self.sha256, self.chip, index)).gauss(0.0, NOISE)
        ms = base * (1.0 + max(-3 * NOISE, min(3 * NOISE, noise)))
        if index == 0:
            ms *= self.first_run_factor
        return ms * max(slowdown, 0.0)
