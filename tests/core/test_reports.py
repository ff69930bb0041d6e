"""Run evidence end to end: allure results, JUnit XML and results.json from real pytest runs on a simulated board.

One real ``pytest`` subprocess (module-scoped: one simulated boot serves every check of it) runs a generated file
whose tests pass, assert, raise BoardError, NpuHang and ProductError, hit a real link timeout on the board, record
latency and golden evidence, and skip; each check below reads one kind of report it wrote. A second run is killed by its
PID after its first test, to show an interrupted run leaves a parseable, partial results.json. Every simulated
board a run started is stopped by its supervisor PID (``api.down``) afterwards.

The report hooks are registered by harness.plugin itself, as in a real run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.sim_leftovers import down_running_boards

from harness.errors import BoardError, ConfigError, ProductError
from harness.plugin.reporting import properties_escape
from harness.report import evidence
from harness.report.histogram import PNG_MAGIC, latency_histogram_png
from harness.report.results import failure_class, load_results, write_json_atomic

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parents[2]
RUN_TIMEOUT = 240  # a whole run, simulated boot included; a hung run fails instead of blocking CI
INVENTORY = """
[defaults]
toolkit = { rknpu1 = "1.7.1", rknpu2 = "2.3.2" }

[boards.sim-rv1126]
chip = "rv1126"
sim = { profile = "rv1126" }
"""
EVIDENCE_TESTS = '''
import pytest

from harness.errors import BoardError, ProductError
from harness.npu.goldens import Verdict
from harness.npu.latency import LatencyStats, Tolerance
from harness.report.evidence import attach_text, record_golden, record_latency


def test_passes(board, board_versions, version_verdict):
    assert board_versions.npu == "rknpu1"


def test_assertion(board):
    board.console.run("echo EVIDENCE-$((6*7))", timeout=30)
    result = board.shell("echo 41")
    assert result.stdout.strip() == "42", "the product is wrong on purpose"  # this generated test must fail


def test_board_error(board):
    raise BoardError("the board fell off the bench on purpose")


def test_npu_hang(board):
    from harness.npu.run import NpuHang

    raise NpuHang("NPU hang on purpose", dmesg="[   9.9] GPU[0] hang on purpose", recovery="rebooted")


def test_product_error(board):
    raise ProductError("wrong output on purpose")


def test_latency_regression(board):
    stats = LatencyStats.from_samples([10.0 + (i % 7) * 0.5 for i in range(40)], first_run_ms=55.0)
    entry = record_latency(board, "mobilenet", "rv1126", stats, {"mean_ms": 8.0},
                           {"mean_ms": 5.0, "stdev_ms": 0.1}, precision="int8",
                           tolerance=Tolerance(0.25, 4.0))
    record_golden(board, "mobilenet", Verdict(passed=False, policy="check",
                                              problems=("output0: 3 of 10 elements differ on purpose",)))
    attach_text("runtime verbose log", "I RKNN: verbose line on purpose")
    pytest.fail("; ".join(entry["budget_problems"] + [entry["regression"]["message"]]), pytrace=False)


def test_skipped():
    pytest.skip("not for this board on purpose")


def test_link_timeout(board):
    board.shell("sleep 20", timeout=2)
'''
OUTCOMES = {  # test -> (results.json outcome, class, allure status)
    "test_passes": ("passed", None, "passed"),
    "test_assertion": ("failed", "product", "failed"),
    "test_board_error": ("broken", "infrastructure", "broken"),
    "test_npu_hang": ("broken", "infrastructure", "broken"),
    "test_product_error": ("failed", "product", "failed"),
    "test_latency_regression": ("failed", "product", "failed"),
    "test_skipped": ("skipped", None, "skipped"),
    "test_link_timeout": ("broken", "infrastructure", "broken"),
}


def make_lab(root: Path, tests: str) -> None:
    """A folder set up like the repository: the project's conftest (plus the report hooks), an ini, boards.toml."""
    (root / "conftest.py").write_text((REPO / "conftest.py").read_text())  # the plugin registers the hooks
    (root / "pytest.ini").write_text("[pytest]\ntimeout = 180\n")
    (root / "boards.toml").write_text(INVENTORY)
    (root / "test_evidence.py").write_text(tests)


def lab_env(sim_home: Path) -> dict[str, str]:
    return {**os.environ, "NPU_HIL_SIM_HOME": str(sim_home), "PYTHONPATH": str(REPO)}


def stop_sim_boards(sim_home: Path) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NPU_HIL_SIM_HOME", str(sim_home))
        down_running_boards()  # normally stopped by the run itself; this catches a run that died


@dataclass
class Run:
    root: Path
    proc: subprocess.CompletedProcess[str]

    @property
    def results(self) -> dict:
        return load_results(self.root / "reports" / "run-1" / "results.json")

    def allure_results(self) -> dict[str, dict]:
        found = [json.loads(p.read_text()) for p in (self.root / "allure").glob("*-result.json")]
        return {r["name"]: r for r in found}

    def attachment(self, result: dict, name: str) -> bytes:
        [entry] = [a for a in result.get("attachments", []) if a["name"] == name]
        return (self.root / "allure" / entry["source"]).read_bytes()


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    root = tmp_path_factory.mktemp("evidence-run")
    sim_home = tmp_path_factory.mktemp("sim-home")
    make_lab(root, EVIDENCE_TESTS)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--board", "sim-rv1126", "--reports-dir",
             str(root / "reports"), "--run-id", "run-1", "--alluredir", str(root / "allure"), "--junitxml",
             str(root / "junit.xml"), "-rA", "test_evidence.py"],
            cwd=root, env=lab_env(sim_home), capture_output=True, text=True, timeout=RUN_TIMEOUT)
    finally:
        stop_sim_boards(sim_home)
    assert "6 failed, 1 passed, 1 skipped" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]
    return Run(root, proc)


# --- allure -------------------------------------------------------------------------------------------------------
def test_allure_results_carry_board_chip_npu_and_suite_labels(run: Run) -> None:
    results = run.allure_results()
    assert set(results) == set(OUTCOMES)
    for name, result in results.items():
        labels = {(label["name"], label["value"]) for label in result["labels"]}
        assert {("board", "sim-rv1126"), ("chip", "rv1126"), ("npu", "rknpu1"), ("parentSuite", "sim-rv1126"),
                ("suite", "evidence"), ("tag", "rv1126"), ("tag", "rknpu1")} <= labels, (name, labels)


def test_allure_status_follows_the_failure_class(run: Run) -> None:
    """ProductError is a product failure (allure alone would call it broken); a board failure is broken."""
    statuses = {name: result["status"] for name, result in run.allure_results().items()}
    assert statuses == {name: expected[2] for name, expected in OUTCOMES.items()}


def test_failing_test_has_console_dmesg_and_version_attachments(run: Run) -> None:
    result = run.allure_results()["test_assertion"]
    console = run.attachment(result, "console sim-rv1126").decode()
    assert "EVIDENCE-42" in console  # what the board printed (the test typed $((6*7)))
    dmesg = run.attachment(result, "dmesg sim-rv1126").decode()
    assert "Galcore version" in dmesg  # read from the board's kernel log over its shell
    versions = run.attachment(result, "versions sim-rv1126").decode()
    assert "rknn_server" in versions and "1.7.1" in versions and "OK" in versions
    hang = run.allure_results()["test_npu_hang"]  # the kernel log the error captured before recovery
    assert run.attachment(hang, "dmesg at the failure").decode() == "[   9.9] GPU[0] hang on purpose"
    passed = run.allure_results()["test_passes"]
    assert not [a for a in passed.get("attachments", []) if a["name"].startswith(("console", "dmesg"))]


def test_latency_failure_attaches_histogram_golden_diff_and_text(run: Run) -> None:
    result = run.allure_results()["test_latency_regression"]
    png = run.attachment(result, "latency mobilenet on sim-rv1126")
    assert png.startswith(PNG_MAGIC) and len(png) > 1000
    diff = run.attachment(result, "golden diff").decode()
    assert "mobilenet on sim-rv1126: FAILED" in diff and "3 of 10 elements differ on purpose" in diff
    assert run.attachment(result, "runtime verbose log").decode() == "I RKNN: verbose line on purpose"


def test_categories_and_environment_properties(run: Run) -> None:
    categories = json.loads((run.root / "allure" / "categories.json").read_text())
    statuses = {c["name"]: c["matchedStatuses"] for c in categories}
    assert ["broken"] in statuses.values() and ["failed"] in statuses.values()
    assert not [c for c in categories if set(c["matchedStatuses"]) == {"broken", "failed"}]  # never mixed
    props = dict(line.split("=", 1) for line in (run.root / "allure" / "environment.properties").read_text()
                 .splitlines())
    assert props["sim-rv1126.chip"] == "rv1126" and props["sim-rv1126.npu"] == "rknpu1"
    assert props["sim-rv1126.rknn_server"] == "1.7.1" and props["sim-rv1126.runtime"] == "1.7.1"
    assert props["sim-rv1126.toolkit"] == "1.7.1"
    assert props["sim-rv1126.kernel"] == "4.19.111"


# --- JUnit --------------------------------------------------------------------------------------------------------
def test_junit_xml_carries_board_properties(run: Run) -> None:
    cases = {case.get("name"): case for case in ET.parse(run.root / "junit.xml").getroot().iter("testcase")}
    assert set(cases) == set(OUTCOMES)
    for case in cases.values():
        props = [(p.get("name"), p.get("value")) for p in case.iter("property")]
        assert ("board", "sim-rv1126") in props and ("chip", "rv1126") in props and ("npu", "rknpu1") in props
    versions = dict((p.get("name"), p.get("value")) for p in cases["test_link_timeout"].iter("property"))
    assert versions["versions"] == "sim-rv1126: driver=6.4.6.5.351518 rknn_server=1.7.1 runtime=1.7.1"


def test_junit_testsuite_carries_board_and_version_properties(run: Run) -> None:
    """The xunit2 schema has no testcase properties: the suite's own <properties> carry the board too."""
    [suite] = ET.parse(run.root / "junit.xml").getroot().iter("testsuite")
    props = {p.get("name"): p.get("value") for p in suite.find("properties").iter("property")}
    assert props["board"] == "sim-rv1126" and props["sim-rv1126.chip"] == "rv1126"
    assert props["sim-rv1126.npu"] == "rknpu1" and props["sim-rv1126.runtime"] == "1.7.1"
    assert props["sim-rv1126.driver"] == "6.4.6.5.351518"


# --- results.json -------------------------------------------------------------------------------------------------
def test_results_json_lists_every_test_with_outcome_and_class(run: Run) -> None:
    data = run.results
    assert data["complete"] is True and data["run_id"] == "run-1" and data["finished"]
    tests = {t["nodeid"].split("::")[-1]: t for t in data["tests"]}
    assert {name: (t["outcome"], t["class"]) for name, t in tests.items()} == {
        name: expected[:2] for name, expected in OUTCOMES.items()}
    assert "fell off the bench" in tests["test_board_error"]["message"]
    assert "sleep 20" in tests["test_link_timeout"]["message"]
    assert tests["test_skipped"]["message"] == "not for this board on purpose"
    assert data["summary"] == {"passed": 1, "failed": 3, "broken": 3, "skipped": 1}
    board = data["boards"]["sim-rv1126"]
    assert board["chip"] == "rv1126" and board["simulated"] is True and board["toolkit"] == "1.7.1"
    assert board["versions"]["runtime"]["version"] == "1.7.1" and board["matrix"]["ok"] is True


def test_results_json_keeps_latency_against_budget_and_baseline(run: Run) -> None:
    test = next(t for t in run.results["tests"] if t["nodeid"].endswith("test_latency_regression"))
    [latency] = test["latency"]
    assert latency["model"] == "mobilenet" and latency["precision"] == "int8" and latency["stats"]["count"] == 40
    assert latency["within_budget"] is False and "exceeds the budget of 8 ms" in latency["budget_problems"][0]
    assert latency["regression"]["baseline_mean"] == 5.0 and latency["change_pct"] > 100
    assert latency["tolerance"] == {"rel": 0.25, "k_sigma": 4.0}  # what the gate judges this row with
    [golden] = test["golden"]
    assert golden["passed"] is False and "3 of 10" in golden["message"]
    [attached] = test["attachments"]
    assert (run.root / "reports" / "run-1" / attached).read_text() == "I RKNN: verbose line on purpose"


# --- an interrupted run -------------------------------------------------------------------------------------------
SLOW_TESTS = '''
import time


def test_first():
    pass


def test_second_never_ends():
    time.sleep(600)
'''


def test_killed_run_leaves_a_partial_results_json(pytester: pytest.Pytester,
                                                  tmp_path_factory: pytest.TempPathFactory) -> None:
    """Killed (SIGKILL, by PID) during its second test: results.json parses, says complete=false, holds test 1.
    Allure is switched off: evidence reaches results.json without it."""
    sim_home = tmp_path_factory.mktemp("sim-home")
    make_lab(pytester.path, SLOW_TESTS)
    results = pytester.path / "reports" / "cut" / "results.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:allure_pytest", "--board",
         "sim-rv1126", "--reports-dir", str(pytester.path / "reports"), "--run-id", "cut", "test_evidence.py"],
        cwd=pytester.path, env=lab_env(sim_home), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + RUN_TIMEOUT
        while time.monotonic() < deadline and proc.poll() is None:
            if results.is_file() and load_results(results)["tests"]:
                break
            time.sleep(0.1)
        assert proc.poll() is None, "the run ended by itself: it was meant to be killed mid-way"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        stop_sim_boards(sim_home)
    data = load_results(results)
    assert data["complete"] is False and data["finished"] is None
    assert [(t["nodeid"], t["outcome"]) for t in data["tests"]] == [("test_evidence.py::test_first", "passed")]
    assert not list(pytester.path.glob("reports/cut/.results.json.*"))  # no temporary file left half-written


def test_board_that_cannot_be_opened_is_broken_infrastructure(pytester: pytest.Pytester,
                                                              tmp_path_factory: pytest.TempPathFactory) -> None:
    """The board fixture turns the open failure into pytest.fail; the class still comes from the BoardError."""
    make_lab(pytester.path, "def test_uses_board(board):\n    board.shell('true')\n")
    (pytester.path / "boards.toml").write_text('[boards.gone]\nchip = "rv1126"\nserial = { port = "/dev/ttyNOPE0" }\n')
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--board", "gone", "--reports-dir",
         str(pytester.path / "reports"), "--run-id", "gone", "--alluredir", str(pytester.path / "allure"),
         "test_evidence.py"],
        cwd=pytester.path, env=lab_env(tmp_path_factory.mktemp("sim-home")), capture_output=True, text=True,
        timeout=RUN_TIMEOUT)
    assert proc.returncode != 0, proc.stdout
    data = load_results(pytester.path / "reports" / "gone" / "results.json")
    [test] = data["tests"]
    assert (test["outcome"], test["class"], test["phase"]) == ("broken", "infrastructure", "setup")
    assert "/dev/ttyNOPE0" in test["message"] and "/dev/ttyNOPE0" in data["boards"]["gone"]["broken"]
    [result] = [json.loads(p.read_text()) for p in (pytester.path / "allure").glob("*-result.json")]
    assert result["status"] == "broken"


# --- units --------------------------------------------------------------------------------------------------------
def test_failure_class_follows_the_exception_and_its_cause() -> None:
    assert failure_class(AssertionError("x")) == "product"
    assert failure_class(ProductError("x")) == "product"
    assert failure_class(BoardError("x")) == "infrastructure"
    assert failure_class(ConfigError("x"), "setup") == "config"
    assert failure_class(OSError("x")) == "infrastructure"
    try:
        try:
            raise BoardError("unreachable")
        except BoardError:
            pytest.fail("board is unusable", pytrace=False)
    except pytest.fail.Exception as exc:
        assert failure_class(exc, "setup") == "infrastructure"  # the board fixture's pytest.fail
    try:
        pytest.fail("Timeout (>180.0s) from pytest-timeout.")
    except pytest.fail.Exception as exc:
        assert failure_class(exc, "call") == "infrastructure"


def test_histogram_is_a_png_and_depends_on_the_samples() -> None:
    first = latency_histogram_png([5.0, 5.1, 5.3, 7.9], title="m", budget_ms=6.0, baseline_ms=5.2, first_run_ms=30)
    second = latency_histogram_png([1.0] * 3, title="m")  # no spread: one bin, still a picture
    for png in (first, second):
        assert png.startswith(PNG_MAGIC) and len(png) > 1000
        assert png[12:16] == b"IHDR" and int.from_bytes(png[16:20], "big") > 100
    assert first != second
    with pytest.raises(ConfigError):
        latency_histogram_png([])


def test_results_file_is_strict_json_and_atomic(tmp_path: Path) -> None:
    target = tmp_path / "results.json"
    write_json_atomic(target, {"schema_version": 1, "nan": float("nan"), "values": (1.5, float("inf"))})
    data = json.loads(target.read_text(), parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}"))
    assert data == {"schema_version": 1, "nan": "nan", "values": [1.5, "inf"]}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_evidence_outside_a_run_is_kept_by_nobody_and_raises_nothing() -> None:
    from harness.npu.goldens import Verdict
    from harness.npu.latency import LatencyStats

    evidence.RECORDER.start_run(None, allure=False, attachments_dir=None)
    assert evidence.attach_text("x", "y") is None
    entry = evidence.record_latency("b", "m", "rv1126", LatencyStats.from_samples([1.0, 2.0]), None, None)
    assert entry["within_budget"] is None and entry["regression"] is None
    assert evidence.record_golden("b", "m", Verdict(passed=True, policy="check"))["passed"] is True


def test_properties_escape_keeps_java_properties_readable() -> None:
    assert properties_escape("a b=c:d") == "a\\ b\\=c\\:d"
    assert properties_escape("é\n") == "\\u00e9\\n"
