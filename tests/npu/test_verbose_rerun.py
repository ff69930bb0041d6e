"""A failed NPU test repeats its model run once with the runtime's verbose log (manual 1.2.3) and keeps the log.

Real ``pytest`` runs of the repo's inference suite on a simulated RV1126 whose NPU silently returns wrong
outputs (the ``wrong-output`` fault), with the Python runner and with the native one (the stock image): the
golden comparison fails, the harness reruns that model with RKNN_LOG_LEVEL=5 (rknn_server restarted at level 5,
then at 0 again), and the log lands in results.json's attachments and the test's report. ``--no-verbose-rerun``
turns it off; an NPU hang gets no rerun.
"""

from __future__ import annotations

import json

import pytest
from support.suite_lab import SUITES, TOOLKITS, run_suites, suite_lab

pytest_plugins = ["pytester"]

BOARDS = TOOLKITS + """
[boards.wrong-output]
chip = "rv1126"
sim = { profile = "rv1126", faults = ["wrong-output"] }

[boards.wrong-output-stock]
chip = "rv1126"
sim = { profile = "rv1126-stock", faults = ["wrong-output"] }

[boards.hangs]
chip = "rv1126"
sim = { profile = "rv1126", faults = ["npu-hang"] }
"""
ONE_MODEL = "test_outputs_match_goldens and classifier and not batch and not int8"


@pytest.fixture
def lab(pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    with suite_lab(pytester, tmp_path_factory, monkeypatch, BOARDS) as lab:
        yield lab


def run(lab: pytest.Pytester, board: str, run_id: str, *args: str) -> tuple[pytest.RunResult, dict]:
    result = run_suites(lab, board, "--run-id", run_id, "-k", ONE_MODEL, str(SUITES / "test_inference.py"), *args)
    results = json.loads((lab.path / "reports" / run_id / "results.json").read_text())
    return result, results


@pytest.mark.parametrize("board", ["wrong-output", "wrong-output-stock"], ids=["python-runner", "native-runner"])
def test_a_wrong_output_is_rerun_with_the_verbose_log_kept(lab: pytest.Pytester, board: str) -> None:
    result, results = run(lab, board, "verbose")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"*runtime log {board} (npu-hil)*",
                                 "the failed model run, repeated with RKNN_LOG_LEVEL=5 (manual 1.2.3): exit 0;*"])
    [test] = results["tests"]
    [attachment] = test["attachments"]
    log = (lab.path / "reports" / "verbose" / attachment).read_text()
    assert "RKNN_LOG_LEVEL=5 RKNN_SERVER_LOGLEVEL=5 restart_rknn.sh" in log
    assert "I RKNNAPI: " in log  # the runtime's info lines: only at a raised level
    assert "restoring" not in log  # the server went back to its normal level


def test_no_rerun_when_turned_off(lab: pytest.Pytester) -> None:
    result, results = run(lab, "wrong-output", "quiet", "--no-verbose-rerun")
    result.assert_outcomes(failed=1)
    assert "runtime log" not in result.stdout.str()
    assert results["tests"][0]["attachments"] == []


def test_no_rerun_after_an_npu_hang(lab: pytest.Pytester) -> None:
    result, results = run(lab, "hangs", "hang", "--npu-deadline", "5")
    result.assert_outcomes(failed=1)
    assert "NPU hang" in results["tests"][0]["message"]
    assert "runtime log" not in result.stdout.str() and results["tests"][0]["attachments"] == []
