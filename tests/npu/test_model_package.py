"""model.toml packages: the shipped ones load, and each mistake is one line naming file, key, expected and found."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from harness.errors import ConfigError
from harness.npu.goldens import load_golden
from harness.npu.model_package import find_packages, load_package
from harness.npu.rknn_file import read_rknn_file

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "suites" / "models"

GOOD = """
name = "tiny"
precision = "float"
[targets.rk3588]
file = "tiny.rknn"
[[inputs]]
name = "images"
shape = [1, 4, 4, 3]
file = "in.npy"
[[outputs]]
name = "scores"
atol = 0.01
[latency.rk3588]
mean_ms = 5
"""


@pytest.fixture
def package_dir(tmp_path: Path) -> Path:
    (tmp_path / "tiny.rknn").write_bytes(b"not read by load_package")
    np.save(tmp_path / "in.npy", np.zeros((1, 4, 4, 3), np.float32))
    (tmp_path / "model.toml").write_text(GOOD)
    return tmp_path


def error_of(folder: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_package(folder)
    return str(caught.value)


def test_shipped_packages_load_and_their_files_say_the_right_chips() -> None:
    packages = {p.name: p for p in find_packages(MODELS)}
    assert set(packages) == {"classifier", "classifier_int8", "classifier_batch2"}
    for package in packages.values():
        for chip in package.chips:
            info = read_rknn_file(package.model_file(chip))
            assert info.target_platforms == [chip]
            assert package.model_file(chip).stat().st_size < 1_000_000
    assert packages["classifier_int8"].precision == "int8"
    assert packages["classifier_batch2"].sample_names() == ["sample_a", "sample_b"]
    assert packages["classifier_batch2"].load_inputs()["images"].shape == (2, 16, 16, 3)


def test_shipped_goldens_sit_per_chip_and_precision_and_say_so() -> None:
    for package in find_packages(MODELS):
        for chip in package.chips:
            folders = ([package.golden_dir(chip) / s for s in package.sample_names()]
                       or [package.golden_dir(chip)])
            for folder in folders:
                assert folder.relative_to(package.root).parts[:3] == ("goldens", chip, package.precision)
                outputs, meta = load_golden(folder)
                assert meta["precision"] == package.precision and meta["chip"] == chip
                assert [o.shape for o in outputs] == [(1, 10)]
                assert np.any(outputs[0] != 0)


def test_tolerances_are_in_judge_form(package_dir: Path) -> None:
    assert load_package(package_dir).tolerances() == {"per_output": {"output0": {"atol": 0.01, "rtol": 0.001}}}


@pytest.mark.parametrize("edit, expected", [
    (("precision = \"float\"", "precision = \"fp8\""),
     "model.toml: precision: Input should be 'float', 'int8' or 'uint8', found 'fp8'"),
    (("mean_ms = 5", "mean_ms = 5\nmeans_ms = 3"), "model.toml: latency.rk3588.means_ms: unknown key (a typo?)"),
    (("shape = [1, 4, 4, 3]", "shape = [1, 4, 0, 3]"), "model.toml: inputs.0.shape: every dimension must be >= 1"),
    (("file = \"in.npy\"", "file = \"in.npy\"\nfiles = [\"a.npy\"]"), "give exactly one of file"),
    (("[latency.rk3588]", "[latency.rv1126]"), "latency budgets for chips with no target: rv1126"),
    (("name = \"tiny\"", "name = \"tiny\"\nrunner = \"my_tool {modle}\""), "unknown: modle"),
    (("name = \"tiny\"", "name = \"tiny\"\nloops = 0"),
     "model.toml: loops: Input should be greater than or equal to 1"),
])
def test_each_mistake_is_one_line_naming_the_key(package_dir: Path, edit: tuple[str, str], expected: str) -> None:
    text = (package_dir / "model.toml").read_text()
    (package_dir / "model.toml").write_text(text.replace(*edit, 1))
    message = error_of(package_dir)
    assert expected in message, message
    assert "\n" not in message and str(package_dir) in message


def test_custom_runner_template_is_accepted(package_dir: Path) -> None:
    text = (package_dir / "model.toml").read_text().replace(
        'name = "tiny"', 'name = "tiny"\nrunner = "my_bench {model} {inputs} {loops} > {out}/log"', 1)
    (package_dir / "model.toml").write_text(text)
    assert load_package(package_dir).runner_for("rk3588").startswith("my_bench")


def test_grayscale_input_for_a_three_channel_model_is_refused_before_running(package_dir: Path) -> None:
    np.save(package_dir / "in.npy", np.zeros((1, 4, 4, 1), np.float32))
    message = error_of(package_dir)
    assert "expected shape [1, 4, 4, 3] (NHWC), found [1, 4, 4, 1]" in message
    assert "1 channels where the model takes 3 (manual 4.2.9)" in message


def test_input_dtype_and_missing_files_are_named(package_dir: Path) -> None:
    np.save(package_dir / "in.npy", np.zeros((1, 4, 4, 3), np.uint8))
    assert "expected dtype float32, found uint8" in error_of(package_dir)
    (package_dir / "in.npy").unlink()
    assert "inputs.images: file in.npy not found" in error_of(package_dir)
    (package_dir / "tiny.rknn").unlink()
    assert "targets.rk3588.file: tiny.rknn not found" in error_of(package_dir)


def test_not_toml_and_no_package(tmp_path: Path) -> None:
    assert "model.toml not found" in error_of(tmp_path)
    (tmp_path / "model.toml").write_text("name = \n")
    assert "not valid TOML" in error_of(tmp_path)


def test_batch_samples_are_concatenated_in_order(tmp_path: Path) -> None:
    shutil.copytree(MODELS / "classifier_batch2", tmp_path / "b")
    package = load_package(tmp_path / "b")
    a = np.load(tmp_path / "b" / "inputs" / "sample_a.npy")
    b = np.load(tmp_path / "b" / "inputs" / "sample_b.npy")
    assert np.array_equal(package.load_inputs()["images"], np.concatenate([a, b]))
    np.save(tmp_path / "b" / "inputs" / "sample_b.npy", np.concatenate([b, b]))
    assert "expected shape [2, 16, 16, 3] (NHWC), found [3, 16, 16, 3]" in error_of(tmp_path / "b")
