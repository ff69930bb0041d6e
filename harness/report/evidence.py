"""Record evidence for the test that is running: versions, latency, golden verdicts, free text.

Why a tiny module-level API instead of a fixture: the data worth keeping is produced deep in suites and library
code (a golden verdict per sample, a latency run per package) and the caller should not have to thread a
reporter object through. :class:`harness.plugin.reporting.ReportHooks` opens a record when a test starts and
closes it when the test ends; the functions here add to the open record. Everything goes to ``results.json``;
to allure only when allure-pytest is active (``--alluredir``): text at once, the version table, golden diff and
latency histogram when the test fails. Outside a run (no hooks, a script) the calls are harmless no-ops.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import ConfigError
from harness.npu.probes import RECORDED_COMPONENTS

if TYPE_CHECKING:
    from harness.npu.goldens import Verdict
    from harness.npu.latency import LatencyStats, Tolerance
    from harness.npu.matrix import MatrixVerdict
    from harness.npu.probes import VersionRecord
    from harness.report.results import ResultsWriter

#: The components of a board's VersionRecord, in the order every report (tables, JUnit, gate) lists them.
COMPONENTS = RECORDED_COMPONENTS  # what a version table shows, in that order


@dataclass
class TestEvidence:
    """What one test recorded; the hooks turn it into its results.json entry and, on failure, attachments."""

    nodeid: str
    latency: list[dict[str, Any]] = field(default_factory=list)
    golden: list[dict[str, Any]] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)  # board -> version table text
    attachments: list[str] = field(default_factory=list)  # files under the run folder (``attachments/...``)
    plots: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # histogram name -> its arguments


class Recorder:
    """The run's evidence state: the results file, whether allure listens, the test that is open."""

    def __init__(self) -> None:
        self.results: ResultsWriter | None = None
        self.allure = False
        self.attachments_dir: Path | None = None
        self.current: TestEvidence | None = None
        self.board_versions: dict[str, VersionRecord] = {}
        self.board_tables: dict[str, str] = {}

    def start_run(self, results: ResultsWriter | None, *, allure: bool, attachments_dir: Path | None) -> None:
        self.__init__()
        self.results, self.allure, self.attachments_dir = results, allure, attachments_dir

    def begin_test(self, nodeid: str) -> TestEvidence:
        self.current = TestEvidence(nodeid)
        return self.current

    def end_test(self) -> TestEvidence | None:
        done, self.current = self.current, None
        return done


RECORDER = Recorder()


def _name(board: Any) -> str:
    return str(getattr(board, "name", board))


def allure_module() -> Any:
    """allure, when allure-pytest is installed and this run writes allure results; else None."""
    if not RECORDER.allure:
        return None
    try:
        import allure
    except ImportError:
        return None
    return allure


def allure_attach(name: str, body: str | bytes, kind: str = "text") -> bool:
    """Attach to the running allure test (kind: text, png, json); False when allure is not active."""
    allure = allure_module()
    if allure is None:
        return False
    types = {"text": allure.attachment_type.TEXT, "png": allure.attachment_type.PNG,
             "json": allure.attachment_type.JSON}
    allure.attach(body, name=name, attachment_type=types[kind])
    return True


# ------------------------------------------------------------------------------------------------ versions
def version_table(board: str, record: VersionRecord, verdict: MatrixVerdict | None = None) -> str:
    """The board's NPU stack as a table a person reads, with the matrix verdict when there is one."""
    lines = [f"board {board} ({record.npu})", f"{'component':<14} {'version':<22} detail / what the board said"]
    for name in COMPONENTS:
        parsed = getattr(record, name)
        shown = parsed.version or "unreadable"
        said = parsed.detail or ("" if parsed.version else parsed.raw.strip().replace("\n", " | ")[:120])
        lines.append(f"{name:<14} {shown:<22} {said}".rstrip())
    lines.append(f"{'rknn_server running':<14} {'yes' if record.server_running else 'NO'}")
    if verdict is not None:
        lines += ["", verdict.explain()]
    return "\n".join(lines)


def versions_summary(record: VersionRecord) -> str:
    """One line for a JUnit property: ``driver=1.7.1 rknn_server=1.7.1 runtime=1.7.1``."""
    return " ".join(f"{name}={getattr(record, name).version or 'unreadable'}"
                    for name in ("driver", "rknn_server", "runtime"))


def record_versions(board: Any, record: VersionRecord, verdict: MatrixVerdict | None = None) -> None:
    """The board's probed versions (and their matrix verdict): into results.json's boards, the run's
    environment.properties, and the version table attached when this test fails."""
    name = _name(board)
    table = version_table(name, record, verdict)
    RECORDER.board_versions[name] = record
    RECORDER.board_tables[name] = table
    if RECORDER.results is not None:
        RECORDER.results.set_board(name, versions=record.to_dict(),
                                   matrix=verdict.to_dict() if verdict is not None else None)
    if RECORDER.current is not None:
        RECORDER.current.versions[name] = table


def record_firmware(board: Any, **entry: Any) -> None:
    """The firmware under test on a board (image, RK_VERSION before and after, flashed or why not): into
    results.json's boards, where the gate reads it."""
    if RECORDER.results is not None:
        RECORDER.results.set_board(_name(board), firmware={k: v for k, v in entry.items() if v is not None})


def record_recovery(board: Any, recovery: dict[str, Any]) -> None:
    """One climb of the recovery ladder (reason, outcome, steps with times and errors): appended to the board's
    ``recoveries`` in results.json, where the gate shows recovered boards."""
    if RECORDER.results is not None:
        name = _name(board)
        earlier = list((RECORDER.results.board(name) or {}).get("recoveries") or [])
        RECORDER.results.set_board(name, recoveries=earlier + [recovery])


# ------------------------------------------------------------------------------------------------ latency
def _baseline_summary(baseline: Any) -> dict[str, Any] | None:
    if baseline is None:
        return None
    if isinstance(baseline, Mapping):
        keep = ("mean_ms", "stdev_ms", "count", "p50_ms", "p90_ms", "p99_ms", "runner", "board")
        return {k: baseline[k] for k in keep if k in baseline}
    return baseline.to_dict()


def record_latency(board: Any, model: str, chip: str, stats: LatencyStats, budget: Mapping[str, float] | None = None,
                   baseline: LatencyStats | Mapping[str, Any] | None = None, *, precision: str | None = None,
                   tolerance: Tolerance | None = None) -> dict[str, Any]:
    """One latency measurement judged against its budget and baseline (the same functions and tolerance the
    suite uses); returns the entry written to results.json. A histogram is attached when the test fails."""
    from harness.npu.latency import Tolerance, check_budget, regression

    tolerance = tolerance or Tolerance()

    entry: dict[str, Any] = {"board": _name(board), "model": model, "chip": chip, "precision": precision,
                             "stats": stats.to_dict(),
                             "budget": dict(budget) if budget else None, "baseline": _baseline_summary(baseline)}
    entry["budget_problems"] = check_budget(stats, budget) if budget else []
    entry["within_budget"] = (not entry["budget_problems"]) if budget else None
    entry["regression"] = None
    entry["tolerance"] = tolerance.to_dict()
    if baseline is not None:
        try:
            found = regression(stats, baseline, tolerance)
        except ConfigError as exc:
            entry["baseline_problem"] = str(exc)
        else:
            if found is not None:
                entry["regression"] = dataclasses.asdict(found)
            base_mean = (entry["baseline"] or {}).get("mean_ms")
            if isinstance(base_mean, (int, float)) and base_mean > 0:
                entry["change_pct"] = (stats.mean - base_mean) / base_mean * 100
    if RECORDER.current is not None:
        RECORDER.current.latency.append(entry)
        if stats.samples_ms:
            budget_mean = (budget or {}).get("mean_ms")
            base_mean = (entry["baseline"] or {}).get("mean_ms")
            RECORDER.current.plots.append((f"latency {model} on {entry['board']}", {
                "samples_ms": list(stats.samples_ms), "title": f"{model} on {entry['board']} ({chip})",
                "budget_ms": budget_mean, "baseline_ms": base_mean, "first_run_ms": stats.first_run_ms}))
    return entry


# ------------------------------------------------------------------------------------------------ goldens
def golden_entry(board: Any, model: str, verdict: Verdict, sample: str = "") -> dict[str, Any]:
    outputs = [{k: v for k, v in dataclasses.asdict(c).items() if v is not None} for c in verdict.comparisons]
    return {"board": _name(board), "model": model, "sample": sample or None, "passed": verdict.passed,
            "policy": verdict.policy, "hang": verdict.hang, "rewritten": list(verdict.rewritten),
            "message": verdict.message(), "outputs": outputs}


def record_golden(board: Any, model: str, verdict: Verdict, *, sample: str = "") -> dict[str, Any]:
    """One output comparison against the golden; its diff summary is attached when the test fails."""
    entry = golden_entry(board, model, verdict, sample)
    if RECORDER.current is not None:
        RECORDER.current.golden.append(entry)
    return entry


def golden_summary(entries: list[dict[str, Any]]) -> str:
    lines = []
    for e in entries:
        where = f"{e['model']}{'[' + e['sample'] + ']' if e.get('sample') else ''} on {e['board']}"
        lines.append(f"{where}: {'PASSED' if e['passed'] else 'FAILED'} (policy {e['policy']})")
        lines += ["  " + line for line in str(e["message"]).splitlines()]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ free text
def _safe(text: str, limit: int = 120) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[-limit:] or "evidence"


def attach_text(name: str, text: str) -> Path | None:
    """Keep a piece of text (a verbose runtime log, a command's output) with the running test: a file in the
    run's ``attachments/`` folder listed in results.json, and an allure attachment when allure is active.
    Returns the file written, or None outside a run."""
    allure_attach(name, text, "text")
    current, folder = RECORDER.current, RECORDER.attachments_dir
    if current is None or folder is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{_safe(current.nodeid)}.{len(current.attachments)}.{_safe(name, 60)}.txt"
    path.write_text(text, encoding="utf-8", errors="replace")
    current.attachments.append(str(path.relative_to(folder.parent)))  # relative to the run folder: portable
    return path
