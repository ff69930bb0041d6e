"""Tiny ONNX models built in memory, for tests that run the simulated NPU.

Why: the simulated NPU executes the ONNX graph packed in a sim .rknn container, and tests compare its output
with onnxruntime's on the same graph; small seeded graphs keep that fast and reproducible without data files.
"""

from __future__ import annotations

import numpy as np
from onnx import GraphProto, TensorProto, helper, numpy_helper


def _serialized(graph: GraphProto) -> bytes:
    """``graph`` as a model file at opset 13 / IR version 8 (what onnxruntime and the sim NPU both accept)."""
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


def classifier_onnx(seed: int = 0) -> bytes:
    """conv 3->8 (3x3) + relu + global average pool + matmul to 10 classes, input NCHW [1, 3, 16, 16]."""
    rng = np.random.default_rng(seed)
    weights = [numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "W"),
               numpy_helper.from_array(rng.standard_normal((8, 10)).astype(np.float32), "F")]
    nodes = [helper.make_node("Conv", ["images", "W"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]), helper.make_node("GlobalAveragePool", ["r"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]), helper.make_node("MatMul", ["f", "F"], ["scores"])]
    graph = helper.make_graph(nodes, "classifier",
                              [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 10])], weights)
    return _serialized(graph)


def two_input_onnx() -> bytes:
    """(a + b) @ M: two [1, 32] inputs, for rknn_benchmark's ``a.npy#b.npy``."""
    m = numpy_helper.from_array(np.random.default_rng(1).standard_normal((32, 4)).astype(np.float32), "M")
    nodes = [helper.make_node("Add", ["a", "b"], ["s"]), helper.make_node("MatMul", ["s", "M"], ["y"])]
    graph = helper.make_graph(nodes, "two", [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 32])
                                             for n in ("a", "b")],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [m])
    return _serialized(graph)
