"""results.json and the gate's input: a run folder whose results.json (or xdist worker parts) hold a real
writer's document with fields swapped for wrong types, deleted or added, cut short, or any bytes. Loading it,
merging the parts (the xdist controller's last step) and gating it give a result or a ConfigError, nothing else."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from fuzzing import FUZZ_SLOW, json_values, mutated_document, mutated_text
from hypothesis import given
from hypothesis import strategies as st

from harness.errors import ConfigError
from harness.report.gate import GateReport, gate
from harness.report.gate_input import Run, load_run
from harness.report.results import ResultsWriter, load_results, read_parts, write_merged

VERSIONS = {"npu": "rknpu2", "server_running": True, "rknn_server": {"component": "rknn_server", "version": "2.3.2",
                                                                        "raw": "rknn_server version: 2.3.2"},
            **{c: {"component": c, "version": v, "raw": v} for c, v in
               (("driver", "0.9.8"), ("runtime", "2.3.2"), ("chip", "rk3588"), ("kernel", "5.10.160"),
                ("rk_version", "V1"))}}
MATRIX = {"ok": False, "npu": "rknpu2", "toolkit": "2.3.2", "expected": {"driver": "0.9.8"},
          "found": {"driver": "0.9.7"},
          "mismatches": [{"component": "driver", "expected": "0.9.8", "found": "0.9.7", "fix": "flash"}],
          "warnings": [], "notes": []}
LATENCY = {"board": "sim-rk3588", "model": "classifier", "chip": "rk3588", "precision": "fp16",
           "stats": {"count": 12, "mean_ms": 1.2, "stdev_ms": 0.1, "p50_ms": 1.2, "first_run_ms": 9.0},
           "budget": {"mean_ms": 1.0}, "budget_problems": ["mean 1.200 ms exceeds the budget of 1 ms"],
           "baseline": {"mean_ms": 1.0}, "regression": {"message": "latency regression: +20 %"}, "within_budget": False}


def base_document(folder: Path, worker: str | None = None) -> dict:
    """What the real writer puts in results.json for one board with versions, two tests and a latency entry."""
    writer = ResultsWriter(folder, run_id="fuzz-run", toolkit="2.3.2", worker=worker)
    writer.set_board("sim-rk3588", chip="rk3588", npu="rknpu2", simulated=True, versions=VERSIONS, matrix=MATRIX)
    writer.add_test({"nodeid": "suites/test_latency.py::test_mean[sim-rk3588]", "suite": "test_latency",
                     "board": "sim-rk3588", "outcome": "failed", "class": "product", "phase": "call",
                     "duration": 1.5, "started": "2025-03-30T09:54:34+00:00", "message": "too slow",
                     "latency": [LATENCY], "golden": [{"output": "scores", "ok": True}], "attachments": []})
    writer.add_test({"nodeid": "suites/test_versions.py::test_matrix[sim-rk3588]", "suite": "test_versions",
                     "board": "sim-rk3588", "outcome": "passed", "class": None, "phase": None, "duration": 0.1,
                     "started": "2025-03-30T09:54:35+00:00", "message": None, "latency": [], "golden": []})
    writer.finish(0)
    return json.loads(writer.path.read_text(encoding="utf-8"))


with tempfile.TemporaryDirectory() as _folder:
    BASE = base_document(Path(_folder))
    BASE_PART = base_document(Path(_folder), worker="gw0")

DOCS = mutated_document(BASE, json_values()).map(json.dumps) | json_values().map(json.dumps)
TEXTS = (DOCS | st.just(json.dumps(BASE)).flatmap(mutated_text)
         | st.integers(1, 3000).map(lambda n: '{"schema_version": 1, "x": ' + "[" * n + "]" * n + "}")
         | st.just('{"schema_version": 1, "run_id": ' + "1" * 5000 + "}"))
CONTENTS = TEXTS.map(lambda t: t.encode("utf-8", "surrogatepass")) | st.binary(max_size=100)
PARTS = mutated_document(BASE_PART, json_values()).map(json.dumps) | TEXTS


def judge(folder: Path) -> None:
    """Load and gate the run folder: a Run, a GateReport, or a one-line ConfigError."""
    try:
        run = load_run(folder)
    except ConfigError as exc:
        assert "\n" not in str(exc), str(exc)
        return
    assert isinstance(run, Run) and isinstance(run.summary(), dict) and run.label
    try:
        report = gate([folder])
    except ConfigError as exc:
        assert "\n" not in str(exc), str(exc)
        return
    assert isinstance(report, GateReport) and report.verdict in ("GO", "NO-GO")


def test_the_base_documents_gate() -> None:  # the mutations below start from documents the gate reads
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "results.json").write_text(json.dumps(BASE))
        assert gate([Path(folder)]).verdict == "NO-GO" and load_run(Path(folder)).complete


@FUZZ_SLOW
@given(CONTENTS)
def test_a_fuzzed_results_json(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "results.json").write_bytes(content)
        judge(Path(folder))
        try:
            assert isinstance(load_results(Path(folder, "results.json")), dict)
        except ConfigError as exc:
            assert "\n" not in str(exc) and "results.json" in str(exc)


@FUZZ_SLOW
@given(st.lists(PARTS, min_size=1, max_size=3), st.booleans())
def test_fuzzed_worker_parts_of_a_killed_controller(parts: list[str], merge: bool) -> None:
    with tempfile.TemporaryDirectory() as folder:
        for i, text in enumerate(parts):
            Path(folder, f"results.gw{i}.json").write_text(text, encoding="utf-8", errors="surrogatepass")
        found, problems = read_parts(Path(folder))
        assert len(found) + len(problems) == len(parts)
        assert all(isinstance(p, dict) for p in found) and all("\n" not in p for p in problems)
        if merge:  # the xdist controller merging what its workers left
            merged = write_merged(Path(folder), run_id="fuzz-run", exitstatus=1)
            assert merged["complete"] is False or not problems
        judge(Path(folder))
