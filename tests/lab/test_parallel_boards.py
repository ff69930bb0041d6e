"""Several simulated boards in one run with pytest-xdist: one worker per board, one report folder, one verdict.

Each case is a real ``pytest -n ...`` subprocess on a small generated test file; every test instance records
its worker, PID and board into a file of its own, so the assertions read what really ran where. Simulator
homes and lock dirs are temporary; a run that died has its boards stopped through the simulator's API.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.report.gate_input import load_run
from harness.report.results import ResultsWriter

REPO = Path(__file__).resolve().parents[2]
BOARDS = ["sim-rv1126", "sim-rk3588"]

RECORDING_TESTS = '''
import json, os
from pathlib import Path

import pytest


def record(name, board):
    folder = Path(os.environ["RECORDS"])
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    entry = {"test": name, "board": board, "worker": worker, "pid": os.getpid()}
    (folder / f"{name}-{board}-{worker}.json").write_text(json.dumps(entry))


def test_shell(board):
    result = board.shell("cat /proc/device-tree/compatible 2>/dev/null; echo; echo done", timeout=30)
    assert result.exit_code == 0 and "done" in result.stdout
    record("shell", board.name)


def test_versions(board, board_versions):
    assert board_versions.chip.version
    record("versions", board.name)


@pytest.mark.npu("rknpu2")
def test_rknpu2_only(board):
    record("rknpu2", board.name)


def test_without_board():
    record("plain", "none")
'''


def _run(folder: Path, env: dict[str, str], *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """``pytest ARGS`` in ``folder``; killed (by PID, with its workers' process group) if it overruns."""
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=folder, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=30)
        pytest.fail(f"pytest did not finish in {timeout} s:\n{out}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, "")


SIM_API = """
import json, sys
from harness.sim import api
running = [b["name"] for b in api.list_boards() if b["running"]]
for name in running:
    api.down(name)
print(json.dumps(running))
"""


def stop_running_boards(home: Path) -> list[str]:
    """Stop what is still running in simulator home ``home`` (by its supervisor PID, via the API); its names."""
    out = subprocess.run([sys.executable, "-c", SIM_API], cwd=REPO, capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, PYTHONPATH=str(REPO), NPU_HIL_SIM_HOME=str(home)), check=True)
    return json.loads(out.stdout)


@pytest.fixture
def suite(tmp_path: Path):
    folder = tmp_path / "suite"
    (folder / "records").mkdir(parents=True)
    (folder / "conftest.py").write_text((REPO / "conftest.py").read_text())
    (folder / "pytest.ini").write_text("[pytest]\ntimeout = 150\n")
    (folder / "test_rec.py").write_text(RECORDING_TESTS)
    env = dict(os.environ, PYTHONPATH=str(REPO), NPU_HIL_SIM_HOME=str(tmp_path / "sim"),
               NPU_HIL_LOCK_DIR=str(tmp_path / "locks"), RECORDS=str(folder / "records"))
    env.pop("PYTEST_XDIST_WORKER", None)
    yield folder, env
    left = stop_running_boards(tmp_path / "sim")
    assert not left, f"the run left simulated boards running: {left}"


def records(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((folder / "records").glob("*.json"))]


def test_two_boards_two_workers_one_report(suite) -> None:
    folder, env = suite
    reports = folder / "reports"
    result = _run(folder, env, "-n", "2", *[a for b in BOARDS for a in ("--board", b)], "--reports-dir",
                  str(reports), "--junitxml", str(folder / "junit.xml"), "--alluredir", str(folder / "allure"),
                  "-rs", "test_rec.py")
    assert result.returncode == 0, result.stdout
    ran = records(folder)
    by_board = {b: {(r["worker"], r["pid"]) for r in ran if r["board"] == b} for b in BOARDS}
    assert {r["test"] for r in ran if r["board"] == "sim-rv1126"} == {"shell", "versions"}  # rknpu2 skipped
    assert {r["test"] for r in ran if r["board"] == "sim-rk3588"} == {"shell", "versions", "rknpu2"}
    assert all(len(workers) == 1 for workers in by_board.values()), by_board  # a board stays on one worker
    assert by_board["sim-rv1126"] != by_board["sim-rk3588"], by_board  # and each board has its own
    assert "needs rknpu2; board sim-rv1126 is rknpu1" in result.stdout  # skipped by its own board's chip

    run_dirs = [p for p in reports.iterdir() if p.is_dir()]
    assert len(run_dirs) == 1, run_dirs  # every worker wrote into the controller's run folder
    run_dir = run_dirs[0]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["complete"] is True and results["run_id"] == run_dir.name
    assert set(results["boards"]) == set(BOARDS)
    assert all(results["boards"][b]["versions"] for b in BOARDS)  # each worker probed its own board
    tests = {(t["nodeid"].split("::")[1], t["board"]): t["outcome"] for t in results["tests"]}
    assert tests[("test_shell[sim-rk3588]", "sim-rk3588")] == "passed"
    assert tests[("test_rknpu2_only[sim-rv1126]", "sim-rv1126")] == "skipped"
    assert tests[("test_without_board", None)] == "passed"  # no board parameter: node id without a suffix
    assert len(results["tests"]) == 7 and sorted(results["workers"]) == ["gw0", "gw1"]
    assert sorted(p.name for p in run_dir.glob("results.*.json")) == ["results.gw0.json", "results.gw1.json"]
    for board in BOARDS:  # console excerpts only of the test's own board, in that board's folder
        excerpts = [p.name for p in (run_dir / board).glob("*.console.txt") if "without_board" not in p.name]
        assert len(excerpts) == 3 and all(board in name for name in excerpts), excerpts

    junit = ET.parse(folder / "junit.xml").getroot()
    cases = {c.get("name"): {p.get("value") for p in c.iter("property") if p.get("name") == "board"}
             for c in junit.iter("testcase")}
    assert cases["test_shell[sim-rv1126]"] == {"sim-rv1126"} and cases["test_shell[sim-rk3588]"] == {"sim-rk3588"}
    labels = {}
    for path in (folder / "allure").glob("*-result.json"):
        data = json.loads(path.read_text())
        labels[data["name"]] = {(lb["name"], lb["value"]) for lb in data["labels"] if lb["name"] in ("board",
                                                                                                 "parentSuite")}
    assert labels["test_shell[sim-rk3588]"] == {("board", "sim-rk3588"), ("parentSuite", "sim-rk3588")}
    assert labels["test_shell[sim-rv1126]"] == {("board", "sim-rv1126"), ("parentSuite", "sim-rv1126")}

    gate = subprocess.run([sys.executable, "-m", "harness", "gate", "--no-baseline", "--json", "--out",
                           str(folder / "gate"), str(run_dir)], cwd=REPO, capture_output=True, text=True, timeout=60,
                          env=dict(env, PYTHONPATH=str(REPO)), check=False)
    decision = json.loads(gate.stdout)
    assert gate.returncode in (0, 1) and decision["verdict"] in ("GO", "NO-GO"), gate.stdout + gate.stderr
    assert set(BOARDS) <= set(decision["boards"]) and decision["runs"][0]["tests"] == 7


def test_auto_makes_one_worker_per_board(suite) -> None:
    """``-n auto`` counts the selected boards, not the CPUs (no board is opened: the tests need none)."""
    folder, env = suite
    (folder / "test_rec.py").unlink()
    (folder / "test_plain.py").write_text("import os\n\ndef test_a():\n    pass\n\ndef test_b():\n    pass\n")
    three = ["--board", "sim-rv1126", "--board", "sim-rk3588", "--board", "sim-rk3566"]
    result = _run(folder, env, "-n", "auto", *three, "--reports-dir", str(folder / "reports"), "test_plain.py")
    assert result.returncode == 0, result.stdout
    assert "created: 3/3 workers" in result.stdout, result.stdout


def test_gate_reads_the_worker_parts_of_a_run_whose_controller_died(tmp_path: Path) -> None:
    """No results.json (the controller was killed before merging): the parts are read, the run is partial."""
    run_dir = tmp_path / "run-9"
    for worker, board, outcome in (("gw0", "sim-rv1126", "passed"), ("gw1", "sim-rk3588", "failed")):
        writer = ResultsWriter(run_dir, run_id="run-9", worker=worker)
        writer.set_board(board, chip=board[4:], npu="rknpu2", simulated=True)
        writer.add_test({"nodeid": f"t.py::test_a[{board}]", "suite": "t", "board": board, "outcome": outcome,
                         "class": "product" if outcome == "failed" else None, "started": "2026-01-01T00:00:00"})
        writer.flush()
    run = load_run(run_dir)
    assert run.complete is False and "xdist controller did not finish" in run.problem
    assert "gw0, gw1" in run.problem
    assert sorted(run.data.boards) == ["sim-rk3588", "sim-rv1126"]
    assert sorted(t.outcome for t in run.data.tests) == ["failed", "passed"]


BROKEN_BOARD_INVENTORY = """
[defaults]
boot_timeout = 8
[boards.good-rk3588]
chip = "rk3588"
sim = { profile = "rk3588" }
[boards.dead-rv1126]
chip = "rv1126"
sim = { profile = "rv1126", faults = ["adb-offline"] }
"""


def test_a_broken_board_does_not_stop_the_other_boards(suite) -> None:
    """One board fails its health check (adb offline): its tests error with the reason, the other board's tests
    all run, and the merged results name both (with one board, the run would stop at the first error)."""
    folder, env = suite
    (folder / "boards.toml").write_text(BROKEN_BOARD_INVENTORY)
    reports = folder / "reports"
    result = _run(folder, env, "-n", "2", "--boards-file", str(folder / "boards.toml"), "--board", "good-rk3588",
                  "--board", "dead-rv1126", "--reports-dir", str(reports), "test_rec.py")
    assert result.returncode == 1, result.stdout  # errors, not an interrupted run (exit 2)
    assert "Interrupted" not in result.stdout, result.stdout
    ran = records(folder)
    assert {r["test"] for r in ran if r["board"] == "good-rk3588"} == {"shell", "versions", "rknpu2"}
    assert not [r for r in ran if r["board"] == "dead-rv1126"]
    assert "board dead-rv1126 is unusable" in result.stdout and "adb" in result.stdout
    (run_dir,) = [p for p in reports.iterdir() if p.is_dir()]
    results = json.loads((run_dir / "results.json").read_text())
    outcomes = {(t["nodeid"].split("::")[1], t["outcome"]) for t in results["tests"]}
    assert ("test_shell[good-rk3588]", "passed") in outcomes
    assert ("test_shell[dead-rv1126]", "broken") in outcomes and ("test_versions[dead-rv1126]", "broken") in outcomes
    assert results["boards"]["dead-rv1126"].get("broken")
