"""The model suites, run by a real pytest in a subprocess against simulated boards: they pass on clean boards and
fail, naming the cause, under each of the simulator's NPU faults.

Each case is a separate ``pytest`` process (pytester) with its own boards.toml and simulator home, exactly as a
lab runs the suites: ``pytest --board NAME --boards-file boards.toml suites/...``. What is checked is the text a
person reads: the golden diff's numbers, the budget and regression lines, the hang with its dmesg line, the
descriptor samples.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from support.suite_lab import SUITES, suite_lab
from support.suite_lab import run_suites as run_lab

from harness.npu.goldens import load_golden, save_golden

pytest_plugins = ["pytester"]

FAULTS = {
    "wrong-rk3588": ("rk3588", "wrong-output"),
    "slow-rv1126": ("rv1126", "slow-npu"),
    "hang-rv1126": ("rv1126", "npu-hang"),
    "leak-rk3588": ("rk3588", "fd-leak"),
}


@pytest.fixture
def lab(pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory,
        monkeypatch: pytest.MonkeyPatch):
    """A pytester folder with a boards.toml of faulty simulated boards and its own simulator home."""
    entries = [f'[boards.{name}]\nchip = "{chip}"\nsim = {{ profile = "{chip}", faults = ["{fault}"] }}\n'
               for name, (chip, fault) in FAULTS.items()]
    with suite_lab(pytester, tmp_path_factory, monkeypatch, "\n".join(entries)) as lab:
        yield lab


def run_suites(lab: pytest.Pytester, board: str, *targets: str, extra: tuple[str, ...] = ()) -> pytest.RunResult:
    return run_lab(lab, board, "-rA", *extra, *[str(SUITES / t) for t in targets])


@pytest.mark.parametrize("board", ["sim-rv1126", "sim-rk3588"])
def test_suites_pass_on_a_clean_board(lab: pytest.Pytester, board: str) -> None:
    result = run_suites(lab, board, "test_inference.py", "test_latency.py", "test_soak.py")
    outcomes = result.parseoutcomes()
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()[-4000:]
    assert outcomes.get("passed") == 16 and not outcomes.get("skipped"), outcomes
    text = result.stdout.str()
    assert "first run" in text and "(apart)" in text  # the lazy first run reported on its own (4.2.3)
    assert "p99" not in text  # 10 runs cannot claim a p99, so none is printed


def test_wrong_output_fails_with_the_golden_diff(lab: pytest.Pytester) -> None:
    result = run_suites(lab, "wrong-rk3588", "test_inference.py", extra=("-k", "goldens"))
    assert result.parseoutcomes().get("failed") == 3, result.stdout.str()[-4000:]
    text = result.stdout.str()
    assert "classifier on wrong-rk3588 (rk3588, float, rknn_benchmark) differs from its golden" in text
    result.stdout.fnmatch_lines([("*output0: 10 of 10 elements differ beyond atol=0.0001 rtol=0.0001: max abs err * "
                                  "at (0, *) (actual *, golden *), mean *, cosine * (min 0.9999)*")])
    assert "sample sample_a: output0" in text and "sample sample_b: output0" in text  # batch split per input


def test_slow_npu_fails_the_budget_and_the_baseline(lab: pytest.Pytester) -> None:
    result = run_suites(lab, "slow-rv1126", "test_latency.py", extra=("-k", "classifier and not batch and not int8"))
    assert result.parseoutcomes().get("failed") == 1, result.stdout.str()[-4000:]
    result.stdout.fnmatch_lines(["*budget: mean * ms exceeds the budget of 4.5 ms*",
                                 "*latency regression: mean * ms vs baseline * ms*"])


def test_npu_hang_is_reported_with_dmesg_and_the_board_recovered(lab: pytest.Pytester) -> None:
    result = run_suites(lab, "hang-rv1126", "test_inference.py::test_outputs_match_goldens[classifier]",
                        extra=("--npu-deadline", "5"))
    assert result.parseoutcomes().get("failed") == 1, result.stdout.str()[-4000:]
    result.stdout.fnmatch_lines([("*NpuHang: NPU hang (manual 4.2.13) on hang-rv1126 running classifier: the run did "
                                  "not finish within its 5 s deadline; board rebooted; dmesg (saved to *reports*): *"
                                  "[[]galcore[]]: GPU[[]0[]] hang, automatic recovery.*")])


def test_fd_leak_fails_the_soak_with_its_samples(lab: pytest.Pytester) -> None:
    result = run_suites(lab, "leak-rk3588", "test_soak.py",
                        extra=("-k", "no_descriptor_growth and classifier and not batch and not int8"))
    assert result.parseoutcomes().get("failed") == 1, result.stdout.str()[-4000:]
    result.stdout.fnmatch_lines([("*file descriptor leak (manual 4.2.1): 'Too many open files' after * of 5 runs of "
                                  "classifier; open fds of rknn_server (pid *) on leak-rk3588: 6, *")])


def test_conflicting_golden_options_are_one_usage_error(lab: pytest.Pytester) -> None:
    result = run_suites(lab, "sim-rk3588", "test_inference.py", extra=("--update-goldens", "--regen-goldens"))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert [line for line in result.errlines if line.startswith("ERROR:")] == [
        "ERROR: --update-goldens and --regen-goldens exclude each other: choose one"]


def test_update_goldens_rewrites_a_wrong_golden_and_fails_once(lab: pytest.Pytester) -> None:
    models = lab.path / "models"
    shutil.copytree(SUITES / "models" / "classifier", models / "classifier")
    golden = models / "classifier" / "goldens" / "rk3588" / "float"
    outputs, meta = load_golden(golden)
    save_golden(golden, [outputs[0] * 2], meta)  # a stale golden
    args = ("--models-dir", str(models), "-k", "goldens")
    first = run_suites(lab, "sim-rk3588", "test_inference.py", extra=(*args, "--update-goldens"))
    assert first.parseoutcomes().get("failed") == 1, first.stdout.str()[-3000:]
    first.stdout.fnmatch_lines(["*golden rewritten (update): output0*"])
    second = run_suites(lab, "sim-rk3588", "test_inference.py", extra=args)
    assert second.parseoutcomes().get("passed") == 1, second.stdout.str()[-3000:]
    assert np.allclose(load_golden(golden)[0][0], outputs[0], atol=1e-4)
