"""The lab's inference and latency suites with the native runner: on the stock RV1126 image (no python3, so
``runner = "auto"`` picks native) and on an RKNPU2 board told ``runner = "native"``. The runner is built here
for the chip's machine and ABI, pushed, and run by the board under qemu-user on the board's runtime library."""

from __future__ import annotations

import shutil

import pytest
from support.suite_lab import SUITES, TOOLKITS, run_suites, suite_lab

pytest_plugins = ["pytester"]

BOARDS = TOOLKITS + """
[boards.sim-rv1126-stock]
chip = "rv1126"
sim = { profile = "rv1126-stock" }

[boards.slow-stock]
chip = "rv1126"
sim = { profile = "rv1126-stock", faults = ["slow-npu=3"] }

[boards.rk3588-native]
chip = "rk3588"
sim = { profile = "rk3588" }
runner = "native"
"""


def _commands(lab: pytest.Pytester, board: str) -> str:
    return "".join(p.read_text() for p in (lab.path / "reports").glob(f"*/{board}/links.log"))


def test_stock_rv1126_runs_the_suites_with_the_native_runner(pytester, tmp_path_factory, monkeypatch):
    with suite_lab(pytester, tmp_path_factory, monkeypatch, BOARDS) as lab:
        result = run_suites(lab, "sim-rv1126-stock", str(SUITES / "test_inference.py"),
                            str(SUITES / "test_latency.py"))
        result.assert_outcomes(passed=10)
        commands = _commands(lab, "sim-rv1126-stock")
        assert "npu_hil_runner-rknpu1-armhf" in commands and "npu_hil_runner.py" not in commands


def test_rknpu2_board_in_native_mode_runs_the_suites(pytester, tmp_path_factory, monkeypatch):
    models = pytester.path / "models"
    shutil.copytree(SUITES / "models", models)
    for manifest in models.glob("*/model.toml"):  # our runner on rk3588 too (the packages name rknn_benchmark)
        text = manifest.read_text()
        manifest.write_text("\n".join(line for line in text.splitlines() if "rknn_benchmark" not in line) + "\n")
    with suite_lab(pytester, tmp_path_factory, monkeypatch, BOARDS) as lab:
        # The packages' rk3588 baselines were measured by rknn_benchmark on the simulator's exact clock; the native
        # runner reads a wall clock, which a loaded CI host stretches on a 1 ms model: the budget (1.5 ms) judges
        # it here, not a baseline of another runner (bench/bench_native_runner.py has the figures).
        result = run_suites(lab, "rk3588-native", "--models-dir", str(models), "--latency-tolerance", "100%",
                            str(SUITES / "test_inference.py"), str(SUITES / "test_latency.py"))
        result.assert_outcomes(passed=10)
        commands = _commands(lab, "rk3588-native")
        assert "npu_hil_runner-rknpu2-aarch64" in commands and "rknn_benchmark" not in commands
        assert "--lib /usr/lib/librknnrt.so" in commands  # the chip's runtime, from chips.toml


def test_a_regression_against_another_runners_baseline_says_so(pytester, tmp_path_factory, monkeypatch):
    with suite_lab(pytester, tmp_path_factory, monkeypatch, BOARDS) as lab:
        result = run_suites(lab, "slow-stock", "-k", "classifier and not batch and not int8",
                            str(SUITES / "test_latency.py"))
        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines(["*latency regression: mean *",
                                     "*the baseline was measured by npu_hil_runner (python), this run by "
                                     "npu_hil_runner (native): if the runner changed on purpose, make a new baseline "
                                     "(--regen-goldens)*"])
