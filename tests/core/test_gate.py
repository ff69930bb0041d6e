"""The release gate and the baselines, through the real command (``python -m harness gate``) on real files.

The results.json files are built here in the writer's format (harness/report/results.py) from the harness's
own objects: version records checked against the real matrix, latency statistics and budget verdicts from
harness.npu.latency. Every decision rule of harness/report/gate.py has a case that turns GO into NO-GO.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.gate_runs import (
    board,
    case,
    good_pair,
    latency,
    npu_hil,
    write_run,
)

from harness.errors import ConfigError
from harness.npu.latency import Tolerance
from harness.report import baseline, gate


def kinds(report: gate.GateReport) -> set[str]:
    return {r.kind for r in report.reasons}


# ------------------------------------------------------------------------------------------------ the command
def test_good_runs_from_two_hosts_go_and_write_both_documents(tmp_path: Path) -> None:
    runs = good_pair(tmp_path)
    out = tmp_path / "out"
    proc = npu_hil("gate", *runs, "--out", out, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("GO"), proc.stdout
    md = (out / "gate.md").read_text()
    assert "**GO**" in md and "rk3566-b" in md and "run-b@lab-b" in md
    html = (out / "gate.html").read_text()
    assert 'data-verdict="GO"' in html


def test_json_output_names_every_cell(tmp_path: Path) -> None:
    proc = npu_hil("gate", *good_pair(tmp_path), "--json", "--out", tmp_path / "o", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["verdict"] == "GO"
    assert {(c["board"], c["suite"], c["state"]) for c in data["cells"]} == {
        ("rk3588-a", "test_versions", "passed"), ("rk3588-a", "test_models", "passed"),
        ("rk3566-b", "test_versions", "passed"), ("rk3566-b", "test_models", "passed")}


def test_product_failure_is_no_go_with_exit_1(tmp_path: Path) -> None:
    a, _ = good_pair(tmp_path)
    c = write_run(tmp_path, "run-c", {"rk3588-c": board()},
                  [case("rk3588-c", "test_versions"),
                   case("rk3588-c", "test_models", outcome="failed", klass="product", message="top-1 differs")])
    proc = npu_hil("gate", a, c, "--out", tmp_path / "o", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout.startswith("NO-GO")
    assert "rk3588-c / test_models: 1 product failure(s)" in proc.stdout and "top-1 differs" in proc.stdout


def test_unreadable_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    proc = npu_hil("gate", tmp_path / "no-such-run", cwd=tmp_path)
    assert proc.returncode == 2 and "does not exist" in proc.stderr and "Traceback" not in proc.stderr
    alien = tmp_path / "alien"
    alien.mkdir()
    (alien / "results.json").write_text(json.dumps({"schema_version": 1, "run_id": "x", "complete": True,
                                                    "tests": [{"nodeid": "t", "outcome": "exploded"}]}))
    proc = npu_hil("gate", alien, cwd=tmp_path)
    assert proc.returncode == 2 and "tests.0.outcome" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    proc = npu_hil("gate", *good_pair(tmp_path), "--baseline", tmp_path / "typo", cwd=tmp_path)
    assert proc.returncode == 2 and "baseline folder" in proc.stderr and "Traceback" not in proc.stderr


# ------------------------------------------------------------------------------------------------ the rules
def test_broken_board_could_not_judge_and_is_not_a_product_failure(tmp_path: Path) -> None:
    run = write_run(tmp_path, "r", {"b1": board()},
                    [case("b1", "test_versions"), case("b1", "test_models", outcome="broken", klass="infrastructure",
                                                      message="adb: device offline")])
    report = gate.gate([run])
    assert report.verdict == "NO-GO" and kinds(report) == {"broken"}
    assert "could not judge" in report.reasons[0].text and "product" not in report.reasons[0].text.split(":")[1]
    assert report.cells[("b1", "test_models")].state == "broken"


def test_interrupted_run_is_merged_with_its_gaps_named(tmp_path: Path) -> None:
    a, _ = good_pair(tmp_path)
    cut = write_run(tmp_path, "cut", {"rk3588-a": board()}, [case("rk3588-a", "test_versions")], complete=False)
    report = gate.gate([a, cut])
    assert report.verdict == "NO-GO"
    assert any(r.kind == "incomplete" and "cut" in r.text for r in report.reasons)
    empty = tmp_path / "never-wrote"
    empty.mkdir()
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    (truncated / "results.json").write_text('{"schema_version": 1, "run_id": "trunc", "tests": [')
    report = gate.gate([a, empty, truncated, write_run(tmp_path, "half", {"b2": board()},
                                                       [case("b2", "test_versions")], complete=False)])
    texts = [r.text for r in report.reasons]
    assert sum(r.kind == "incomplete" for r in report.reasons) == 3, texts
    assert "b2 / test_models: nothing judged (no test ran)" in texts  # the gap the interrupted run left


def test_all_skipped_cell_is_a_gap(tmp_path: Path) -> None:
    run = write_run(tmp_path, "r", {"b1": board()},
                    [case("b1", "test_versions"), case("b1", "test_models", outcome="skipped")])
    report = gate.gate([run])
    assert [r.text for r in report.reasons] == ["b1 / test_models: nothing judged (all 1 test(s) skipped)"]


def test_expected_board_that_never_ran_blocks(tmp_path: Path) -> None:
    runs = good_pair(tmp_path)
    assert gate.gate(runs).go
    report = gate.gate(runs, expect_boards=["rk3588-a", "rk3566-b", "rv1126-c"])
    assert "rv1126-c / test_models: nothing judged (no test ran)" in [r.text for r in report.reasons]


def test_version_mismatch_against_the_matrix(tmp_path: Path) -> None:
    run = write_run(tmp_path, "r", {"b1": board(runtime="1.6.0")}, [case("b1", "test_versions")])
    report = gate.gate([run])
    assert kinds(report) == {"versions"}
    assert "runtime: expected 2.3.0, found 1.6.0" in report.reasons[0].text


def test_two_runs_disagreeing_on_a_boards_versions_are_flagged(tmp_path: Path) -> None:
    a = write_run(tmp_path, "r1", {"b1": board()}, [case("b1", "test_versions")])
    b = write_run(tmp_path, "r2", {"b1": board(driver="0.9.6")}, [case("b1", "test_models")], host="lab-b")
    report = gate.gate([a, b])
    assert kinds(report) == {"version-disagreement"}
    assert "driver 0.9.8 in r1@lab-a vs 0.9.6 in r2@lab-b" in report.reasons[0].text
    assert report.versions[0].disagreements


def test_missed_latency_budget_is_no_go(tmp_path: Path) -> None:
    slow = latency("yolo", [30.0 + i * 0.1 for i in range(20)], {"mean_ms": 25.0})
    run = write_run(tmp_path, "r", {"b1": board()}, [case("b1", "test_models", lat=[slow])])
    report = gate.gate([run])
    assert kinds(report) == {"latency"}
    assert "exceeds the budget of 25 ms" in report.reasons[0].text and not report.latency[0].ok


def test_regression_against_accepted_baseline_and_trend(tmp_path: Path) -> None:
    store = tmp_path / "baselines"

    def run(run_id: str, mean: float) -> Path:
        lat = latency("mobilenet", [mean + (i % 3) * 0.05 for i in range(20)])
        return write_run(tmp_path, run_id, {"b1": board()}, [case("b1", "test_models", lat=[lat])])

    proc = npu_hil("baseline", "accept", run("base-1", 10.0), "--into", store, cwd=tmp_path)
    assert proc.returncode == 0 and "rk3588" in proc.stdout, proc.stderr
    baseline.accept(run("base-2", 10.4), store)
    assert gate.gate([run("same", 10.5)], baseline_dir=store).go
    report = gate.gate([run("slow", 14.0)], baseline_dir=store)
    assert kinds(report) == {"latency"} and "latency regression" in report.reasons[0].text
    row = report.latency[0]
    assert row.baseline_run == "base-2" and [p[0] for p in row.trend] == ["base-1", "base-2", "slow@lab-a"]
    proc = npu_hil("gate", tmp_path / "slow", "--baseline", store, "--out", tmp_path / "o", cwd=tmp_path)
    assert proc.returncode == 1 and "latency regression" in (tmp_path / "o" / "gate.md").read_text()


def test_one_latency_tolerance_named_in_the_report_and_settable(tmp_path: Path) -> None:
    """+15 %: within the runs' own tolerance (the suite's default, 25 %), a regression at 10 %."""
    store = tmp_path / "baselines"
    steady = latency("mobilenet", [10.0 + (i % 3) * 0.01 for i in range(20)])
    base = write_run(tmp_path, "base", {"b1": board()}, [case("b1", "test_models", lat=[steady])])
    baseline.accept(base, store)
    lat = latency("mobilenet", [11.5 + (i % 3) * 0.01 for i in range(20)])
    lat["tolerance"] = Tolerance().to_dict()  # what the suite records
    slower = write_run(tmp_path, "slower", {"b1": board()}, [case("b1", "test_models", lat=[lat])])
    as_judged = gate.gate([slower], baseline_dir=store)
    assert as_judged.go and as_judged.latency_tolerance == f"{Tolerance()} (as the runs judged)"
    policy = tmp_path / "release.toml"
    policy.write_text('latency_tolerance = "10%,3sigma"\n')
    out = tmp_path / "o"
    proc = npu_hil("gate", slower, "--baseline", store, "--policy", policy, "--out", out, cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Regression tolerance: 10%,3sigma (set for this gate)" in (out / "gate.md").read_text()
    proc = npu_hil("gate", slower, "--baseline", store, "--policy", policy, "--latency-tolerance", "20%",
                   "--out", out, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr  # the command line wins over the policy


def test_policy_names_required_boards_and_suites(tmp_path: Path) -> None:
    run = write_run(tmp_path, "r", {"b1": board()},
                    [case("b1", "test_versions"), case("b1", "test_firmware", outcome="skipped", skip="not-selected")])
    policy = tmp_path / "release.toml"
    policy.write_text('boards = ["b1", "b2"]\nsuites = ["test_versions", "test_firmware"]\n')
    proc = npu_hil("gate", run, "--policy", policy, "--json", "--out", tmp_path / "o", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    texts = [r["text"] for r in json.loads(proc.stdout)["reasons"]]
    assert "b1 / test_firmware: required, but not run (not selected: 1 test(s))" in texts
    assert "b2 / test_versions: nothing judged (no test ran)" in texts


@pytest.mark.parametrize("text, says", [
    ('suite = ["x"]\n', "suite: Extra inputs are not permitted"),
    ('latency_tolerance = "ten"\n', "latency_tolerance: latency tolerance 'ten'"),
    ('boards = "b1"\n', "boards: Input should be a valid list"),
    ("boards = [\n", "not valid TOML"),
])
def test_a_bad_policy_is_one_line_and_exit_2(tmp_path: Path, text: str, says: str) -> None:
    run = write_run(tmp_path, "r", {"b1": board()}, [case("b1", "test_versions")])
    policy = tmp_path / "release.toml"
    policy.write_text(text)
    proc = npu_hil("gate", run, "--policy", policy, "--out", tmp_path / "o", cwd=tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and says in lines[0], proc.stderr


def test_baseline_refuses_an_interrupted_run_and_keeps_history(tmp_path: Path) -> None:
    cut = write_run(tmp_path, "cut", {"b1": board()}, [case("b1", "test_models", lat=[latency("m", [1.0] * 12)])],
                    complete=False)
    proc = npu_hil("baseline", "accept", cut, "--into", tmp_path / "bl", cwd=tmp_path)
    assert proc.returncode == 2 and "cannot accept" in proc.stderr and not (tmp_path / "bl" / "rk3588").exists()
    ok = write_run(tmp_path, "ok", {"b1": board()}, [case("b1", "test_models", lat=[latency("m", [1.0] * 12)])])
    for _ in range(2):  # accepting the same run twice keeps one history point
        baseline.accept(ok, tmp_path / "bl")
    assert len(list((tmp_path / "bl" / "rk3588" / "history").glob("*.json"))) == 1
    with pytest.raises(ConfigError, match="no latency figure"):
        baseline.accept(write_run(tmp_path, "plain", {"b1": board()}, [case("b1", "test_versions")]), tmp_path / "bl")


def test_messages_from_files_are_escaped_in_html_and_markdown(tmp_path: Path) -> None:
    from harness.report.gate_html import render_html
    from harness.report.gate_md import render_markdown

    run = write_run(tmp_path, "r", {"b1": board()},
                    [case("b1", "test_x", outcome="failed", message="<script>alert(1)</script> | a|b")])
    report = gate.gate([run])
    assert "<script>" not in render_html(report) and "&lt;script&gt;" in render_html(report)
    assert r"a\|b" in render_markdown(report)


# ------------------------------------------------------------------------------------------------ what a release needs
def test_a_suite_not_selected_is_not_run_not_a_gap(tmp_path: Path) -> None:
    run = write_run(tmp_path, "r", {"b1": board()},
                    [case("b1", "test_versions"),
                     case("b1", "test_firmware", outcome="skipped", skip="not-selected",
                          message="destructive (reflashes the board): run with --destructive")])
    report = gate.gate([run])
    assert report.go, [r.text for r in report.reasons]
    assert report.cells[("b1", "test_firmware")].state == "not_run"


def test_a_required_suite_not_selected_is_a_gap(tmp_path: Path) -> None:
    run = write_run(tmp_path, "r", {"b1": board()},
                    [case("b1", "test_versions"), case("b1", "test_firmware", outcome="skipped", skip="not-selected")])
    report = gate.gate([run], expect_suites=["test_versions", "test_firmware"])
    assert [r.text for r in report.reasons] == ["b1 / test_firmware: required, but not run (not selected: 1 test(s))"]


def test_versions_no_run_checked_are_not_checked_never_mismatch(tmp_path: Path) -> None:
    unchecked = board()
    unchecked["matrix"] = None
    run = write_run(tmp_path, "r", {"b1": unchecked}, [case("b1", "test_connectivity")])
    out = tmp_path / "o"
    proc = npu_hil("gate", run, "--out", out, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    md = (out / "gate.md").read_text()
    assert "not checked" in md and "MISMATCH" not in md and "MISMATCH" not in (out / "gate.html").read_text()


def test_a_failure_reason_names_the_test_and_its_evidence_file(tmp_path: Path) -> None:
    excerpt = "b1/suites_test_models.py_test_it_b1_.console.txt"
    run = write_run(tmp_path, "r", {"b1": board()},
                    [case("b1", "test_models", outcome="failed", klass="product", message="top-1 differs",
                          evidence=[excerpt])])
    (run / "b1").mkdir()
    (run / excerpt).write_text("E RKNN: rknn_run fail\n")
    (reason,) = gate.gate([run]).reasons
    assert "suites/test_models.py::test_it[b1]" in reason.text
    assert f"evidence: {run / excerpt}" in reason.text
