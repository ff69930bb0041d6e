#!/usr/bin/env python3
"""Build the suites' small test models: ONNX graphs with seeded weights, packed for the simulated boards.

Why synthetic models: the suites need models whose correct outputs are known exactly (goldens computed here
with onnxruntime on the same graph) and which cost milliseconds, so a run of the suites stays short. The
shapes follow the manual's design advice (5.1): 3x3 convolution + ReLU + 2x2 max-pool, then a fully connected
layer. Each model is packed (``pack_sim_model``) for rv1126 (toolkit 1.7.1) and rk3588 (toolkit 2.3.2):

* ``classifier``: float32 conv+relu+pool+gemm, NHWC image input [1, 16, 16, 3];
* ``classifier_int8``: the same graph quantize-dequantized (int8 weights and activations, uint8 image input),
  precision "int8", packed as an INT8 model;
* ``classifier_batch2``: batch 2, two sample images concatenated; outputs [2, 10] split per sample (4.2.5-7);
* ``refused/wrong_target``: a package whose files declare other chips (rk1808 for rv1126, rk3566 for rk3588),
  which the harness must refuse before pushing (4.1.2, -13).

Everything is deterministic (seeded); re-running rewrites the same files. Usage::

    python tools/build_test_models.py [--out suites/models] [--refused-out suites/refused_models]
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.npu.goldens import save_golden  # noqa: E402
from harness.npu.model_package import load_package  # noqa: E402
from harness.npu.rknn_file import pack_sim_model, read_rknn_file  # noqa: E402

#: chip -> toolkit the simulated board's runtime belongs to.
TOOLKITS = {"rv1126": "1.7.1", "rk3588": "2.3.2"}
#: chip -> the platform a wrong-target file declares instead (another NPU of the same generation).
WRONG_TARGET = {"rv1126": "rk1808", "rk3588": "rk3566"}
HW, CLASSES, FEATURES = 16, 10, 8
# Latency budgets per chip (ms, the runner's own figures): 1.5x the mean and ~1.5x the first run the clean
# simulated board reports for these graphs (rk3588 ~1.0/5-9 ms, rv1126 ~3.0/17-28 ms), so slow-npu=3 breaks
# them and the simulator's few percent of noise never does. Only the mean and the first run: with 10 loops no
# percentile above p50 could be claimed (harness.npu.latency.MIN_SAMPLES).
BUDGETS = {name: {"rv1126": (4.5, 45.0), "rk3588": (1.5, 15.0)}
           for name in ("classifier", "classifier_int8", "classifier_batch2")}


def _finish(nodes: list, inputs: list, outputs: list, weights: list, name: str) -> bytes:
    graph = helper.make_graph(nodes, name, inputs, outputs, weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="npu-hil")
    model.ir_version = 8
    return model.SerializeToString()


def _weights(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    conv = (rng.standard_normal((FEATURES, 3, 3, 3)) * 0.4).astype(np.float32)
    fc = (rng.standard_normal((FEATURES * (HW // 2) ** 2, CLASSES)) * 0.05).astype(np.float32)
    bias = (rng.standard_normal(CLASSES) * 0.1).astype(np.float32)
    return conv, fc, bias


def classifier_onnx(seed: int = 11, batch: int = 1) -> bytes:
    """Conv 3->8 (3x3, pad 1) + ReLU + MaxPool 2x2 + Flatten + Gemm to 10 classes; NCHW float input."""
    conv, fc, bias = _weights(seed)
    weights = [numpy_helper.from_array(conv, "conv_w"), numpy_helper.from_array(fc, "fc_w"),
               numpy_helper.from_array(bias, "fc_b")]
    nodes = [helper.make_node("Conv", ["images", "conv_w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["scores"])]
    return _finish(nodes, [helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, HW, HW])],
                   [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [batch, CLASSES])], weights,
                   f"classifier_b{batch}")


def classifier_int8_onnx(seed: int = 11) -> bytes:
    """The classifier quantize-dequantized: uint8 image in, int8 weights and activations (QDQ form)."""
    conv, fc, bias = _weights(seed)
    w_scale, fc_scale, act_scale = float(np.abs(conv).max() / 127), float(np.abs(fc).max() / 127), 1 / 64
    weights = [
        numpy_helper.from_array(np.clip(np.round(conv / w_scale), -127, 127).astype(np.int8), "conv_q"),
        numpy_helper.from_array(np.clip(np.round(fc / fc_scale), -127, 127).astype(np.int8), "fc_q"),
        numpy_helper.from_array(bias, "fc_b"),
        numpy_helper.from_array(np.array(w_scale, np.float32), "w_scale"),
        numpy_helper.from_array(np.array(fc_scale, np.float32), "fc_scale"),
        numpy_helper.from_array(np.array(act_scale, np.float32), "act_scale"),
        numpy_helper.from_array(np.array(1 / 255, np.float32), "norm"),
        numpy_helper.from_array(np.array(0, np.int8), "zero"),
    ]
    nodes = [helper.make_node("Cast", ["images"], ["x"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["x", "norm"], ["xn"]),
             helper.make_node("QuantizeLinear", ["xn", "act_scale", "zero"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "act_scale", "zero"], ["xd"]),
             helper.make_node("DequantizeLinear", ["conv_q", "w_scale", "zero"], ["conv_w"]),
             helper.make_node("Conv", ["xd", "conv_w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("QuantizeLinear", ["r", "act_scale", "zero"], ["rq"]),
             helper.make_node("DequantizeLinear", ["rq", "act_scale", "zero"], ["rd"]),
             helper.make_node("MaxPool", ["rd"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("DequantizeLinear", ["fc_q", "fc_scale", "zero"], ["fc_w"]),
             helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["scores"])]
    return _finish(nodes, [helper.make_tensor_value_info("images", TensorProto.UINT8, [1, 3, HW, HW])],
                   [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, CLASSES])], weights,
                   "classifier_int8")


def _image(seed: int, dtype: str) -> np.ndarray:
    """One NHWC sample [1, 16, 16, 3]: a smooth pattern plus noise, so classes differ between samples."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:HW, 0:HW] / HW
    base = np.stack([np.sin(6 * xx + seed), np.cos(5 * yy - seed), xx * yy], axis=-1)
    image = (base + 0.3 * rng.standard_normal(base.shape))[np.newaxis]
    if dtype == "uint8":
        return np.clip((image + 1.5) * 80, 0, 255).astype(np.uint8)
    return image.astype(np.float32)


def _onnx_outputs(onnx_bytes: bytes, nhwc: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    return [np.asarray(o, dtype=np.float32) for o in session.run(None, {"images": nhwc.transpose(0, 3, 1, 2)})]


def _toml_budgets(name: str) -> str:
    return "".join(f"\n[latency.{chip}]\nmean_ms = {mean}\nfirst_run_ms = {first}\n"
                   for chip, (mean, first) in BUDGETS.get(name, {}).items())


def _manifest(name: str, description: str, precision: str, *, dtype: str, batch: int, sources: list[str],
              tolerance: str, targets: dict[str, str], runner_rk3588: str | None = "rknn_benchmark",
              budgets: bool = True) -> str:
    files = (f'file = "{sources[0]}"' if batch == 1 else
             "files = [" + ", ".join(f'"{s}"' for s in sources) + "]")
    text = [f'name = "{name}"', f'description = "{description}"', f'precision = "{precision}"',
            'runner = "npu_hil_runner"', "loops = 10", "warmup = 2", f"batch = {batch}", ""]
    for chip, file in targets.items():
        text.append(f"[targets.{chip}]\nfile = \"{file}\"")
        if chip == "rk3588" and runner_rk3588:
            text.append(f'runner = "{runner_rk3588}"  # Rockchip\'s own tool on RKNPU2; rv1126 uses ours')
        text.append("")
    text += ["[[inputs]]", 'name = "images"', f"shape = [{batch}, {HW}, {HW}, 3]", f'dtype = "{dtype}"',
             'layout = "NHWC"', files, "", "[[outputs]]", 'name = "scores"', tolerance]
    return "\n".join(text) + "\n" + (_toml_budgets(name) if budgets else "")


def build_package(out: Path, name: str, onnx_bytes: bytes, *, description: str, precision: str, dtype: str,
                  batch: int = 1, tolerance: str, int8: bool = False) -> None:
    """Write one package: model files per chip, inputs, goldens per chip and precision, model.toml."""
    folder = out / name  # rewritten file by file: latency baselines measured on boards stay
    (folder / "inputs").mkdir(parents=True, exist_ok=True)
    samples = [_image(seed, dtype) for seed in range(3, 3 + batch)]
    names = ["sample_a", "sample_b"][:batch] if batch > 1 else ["image"]
    for sample_name, array in zip(names, samples):
        np.save(folder / "inputs" / f"{sample_name}.npy", array)
    batch_input = np.concatenate(samples, axis=0)
    outputs = _onnx_outputs(onnx_bytes, batch_input)
    targets = {}
    for chip, toolkit in TOOLKITS.items():
        targets[chip] = f"{name}.{chip}.rknn"
        extra = {"sim_dtype": "int8"} if int8 else None
        (folder / targets[chip]).write_bytes(pack_sim_model(onnx_bytes, target_platforms=[chip],
                                                            toolkit_version=toolkit, extra=extra))
    (folder / "model.toml").write_text(_manifest(
        name, description, precision, dtype=dtype, batch=batch, sources=[f"inputs/{n}.npy" for n in names],
        tolerance=tolerance, targets=targets))
    package = load_package(folder)  # the tool's own output must pass the harness's checks
    for chip in TOOLKITS:
        meta = {**package.golden_meta(chip, read_rknn_file(package.model_file(chip)).sha256),
                "source": "onnxruntime on the model's ONNX graph (tools/build_test_models.py)", "date": "build"}
        golden = package.golden_dir(chip)
        if batch == 1:
            save_golden(golden, outputs, meta)
        else:  # one golden set per sample: each result is matched to its own input (4.2.5-4.2.7)
            for index, sample_name in enumerate(names):
                save_golden(golden / sample_name, [o[index:index + 1] for o in outputs],
                            {**meta, "sample": sample_name, "batch_index": index})


def build_refused(out: Path) -> None:
    """A package whose files declare the wrong chips: push_model must refuse it before any transfer."""
    folder = out / "wrong_target"
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "inputs").mkdir(parents=True)
    np.save(folder / "inputs" / "image.npy", _image(3, "float32"))
    onnx_bytes = classifier_onnx()
    targets = {}
    for chip, toolkit in TOOLKITS.items():
        file = f"wrong_target.{chip}.rknn"
        (folder / file).write_bytes(pack_sim_model(onnx_bytes, target_platforms=[WRONG_TARGET[chip]],
                                                   toolkit_version=toolkit))
        targets[chip] = file
    (folder / "model.toml").write_text(_manifest(
        "wrong_target", "filed under rv1126/rk3588 but built for rk1808/rk3566: must be refused (4.1.2, -13)",
        "float", dtype="float32", batch=1, sources=["inputs/image.npy"], tolerance="atol = 1e-4",
        targets=targets, runner_rk3588=None, budgets=False))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "suites" / "models")
    parser.add_argument("--refused-out", type=Path, default=REPO / "suites" / "refused_models")
    args = parser.parse_args(argv)
    float_tol = "atol = 1e-4\nrtol = 1e-4\nmin_cosine = 0.9999\ntop_k = 3"
    build_package(args.out, "classifier", classifier_onnx(), description="float conv+relu+pool+gemm classifier",
                  precision="float", dtype="float32", tolerance=float_tol)
    build_package(args.out, "classifier_int8", classifier_int8_onnx(), precision="int8", dtype="uint8",
                  description="the classifier quantize-dequantized to int8 (QDQ), uint8 image input",
                  tolerance="atol = 1e-3\nrtol = 1e-3\nmin_cosine = 0.999\ntop_k = 1", int8=True)
    build_package(args.out, "classifier_batch2", classifier_onnx(batch=2), precision="float", dtype="float32",
                  batch=2, description="batch-2 classifier: two samples in, [2, 10] out, split per sample",
                  tolerance=float_tol)
    build_refused(args.refused_out)
    total = sum(f.stat().st_size for d in (args.out, args.refused_out) for f in d.rglob("*") if f.is_file())
    print(f"wrote packages to {args.out} and {args.refused_out} ({total} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
