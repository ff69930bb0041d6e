"""Model runs on the stock RV1126 image (no python3) through the harness, over its real links: the harness picks
the native runner (``runner = "auto"``), builds and pushes it, and judges its outputs against the goldens. A
runtime failure is a RunFailed that carries the runtime's own code and, on one line, the manual's section."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from support.opened import opened_sim_board

from harness.npu.goldens import judge
from harness.npu.model_package import load_package
from harness.npu.run import RunFailed, run_package

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "suites" / "models"
ROCKCHIP_MODEL = REPO / "tests" / "data" / "rknn" / "npu1_mobilenet_uint8_rv1126.rknn"
ADB_PORT = 15144  # this test file's own adb server port



@pytest.fixture(scope="module")
def board(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NPU_HIL_CACHE", str(tmp_path_factory.mktemp("cache")))  # the runner is built afresh
        with opened_sim_board(tmp_path_factory, "sim-rv1126-stock", ADB_PORT) as opened:
            yield opened.board


@pytest.fixture
def classifier(tmp_path: Path):
    """A private copy of the shipped package, free to edit."""
    shutil.copytree(MODELS / "classifier", tmp_path / "classifier")
    return tmp_path / "classifier"


def test_auto_picks_the_native_runner_and_its_outputs_match_the_goldens(board, classifier) -> None:
    package = load_package(classifier)
    run = run_package(board, package)
    assert board.runner_kind == "native" and "/npu_hil_runner-rknpu1-armhf " in run.command
    assert "python3" not in run.command
    assert run.stats.count == package.manifest.loops
    verdict = judge(run.outputs, run.golden_dir(), tolerances=package.tolerances())
    assert verdict.passed, verdict


def _failure(board, package_dir: Path) -> str:
    with pytest.raises(RunFailed) as failed:
        run_package(board, load_package(package_dir))
    return str(failed.value)


def test_a_model_the_runtime_cannot_load_is_its_code_and_the_manuals_section(board, classifier) -> None:
    (classifier / "classifier.rv1126.rknn").write_bytes(ROCKCHIP_MODEL.read_bytes())  # a compiled Rockchip payload
    message = _failure(board, classifier)
    assert "ret=-6 (RKNN_ERR_MODEL_INVALID)" in message and "manual 4.1.2" in message
    assert "\n" not in message


def test_a_wrong_input_size_is_its_code_and_the_manuals_section(board, classifier) -> None:
    manifest = classifier / "model.toml"
    manifest.write_text(manifest.read_text().replace("shape = [1, 16, 16, 3]", "shape = [1, 8, 8, 3]"))
    np.save(classifier / "inputs" / "image.npy", np.zeros((1, 8, 8, 3), dtype=np.float32))
    message = _failure(board, classifier)
    assert "param input size(768) < model input size(3072)" in message
    assert "ret=-5 (RKNN_ERR_PARAM_INVALID)" in message and "manual 4.2.9" in message
    assert "\n" not in message


def test_a_missing_runtime_library_is_one_line_naming_the_manual(board, classifier) -> None:
    board.shell("mv /usr/lib/librknn_api.so /usr/lib/librknn_api.so.away", check=True)
    try:
        message = _failure(board, classifier)
    finally:
        board.shell("mv /usr/lib/librknn_api.so.away /usr/lib/librknn_api.so", check=True)
    assert "cannot load the NPU runtime library librknn_api.so" in message and "manual 4.1.4" in message
    assert "\n" not in message
    assert run_package(board, load_package(classifier)).outputs  # the board is whole again
