"""The release gate: merge runs' ``results.json`` (several boards, hosts, xdist workers) into GO or NO-GO.

Pure: it reads files and returns a :class:`GateReport`; rendering (terminal, HTML, Markdown) lives elsewhere.
Why pure: the decision is what a release hangs on, so it must be testable without a browser or a terminal.

Decision rules. The verdict is NO-GO when any of these holds, each giving a reason that names its board,
suite and run:

* **incomplete**: a run without ``complete: true`` (interrupted), or whose ``results.json`` is missing or
  truncated. Its gaps are named by the cells below; partial evidence is never read as GO.
* **product**: a test failed by the product's fault (class ``product``; a failure with no class counts too).
* **broken**: a board was broken (class ``infrastructure``, outcome ``broken`` or an unclassified error): the
  gate says it *could not judge* that cell, never that the product failed.
* **config**: a test's setup was wrong (class ``config``): could not judge either.
* **versions**: a board's versions do not belong to the toolkit's release (matrix verdict not ok). Versions no
  run checked are shown as "not checked", never as a mismatch (a required versions suite that did not run is a
  gap).
* **version-disagreement**: two runs read different versions (or chips) for the same board.
* **latency**: a budget missed or not claimable (``budget_problems``), a regression the run itself found, or
  a regression against the last accepted baseline (``harness.report.baseline``).
* **gap**: an expected (board, suite) cell holds no passed test (missing, or every test skipped). A suite the
  run deliberately did not select (a destructive test without ``--destructive``, a test for another chip) is
  "not run", and a gap only when the release requires that suite (``expect_suites``: ``npu-hil gate --suites`` or
  a ``--policy`` file).

GO only when no rule fires and every expected cell has passed tests. Expected cells are every board x every
suite seen in any run, unless ``expect_boards`` / ``expect_suites`` name them. A failure in any given run
counts, even if another run passed the same test: gate only the runs that make up the candidate. Each reason
about a test names it and its evidence file (the console excerpt under the run folder).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.npu.latency import LatencyStats, Tolerance, regression
from harness.npu.versions import same_version
from harness.report.evidence import COMPONENTS as VERSION_COMPONENTS
from harness.report.gate_input import Run, TestEntry, load_run

#: Order in which reasons are listed: what a release manager must read first comes first.
REASON_ORDER = ("incomplete", "product", "versions", "version-disagreement", "latency", "broken", "config", "gap")
NO_BOARD = "(no board)"


# ------------------------------------------------------------------------------------------------ the report
@dataclass(frozen=True)
class Reason:
    kind: str
    text: str
    board: str | None = None
    suite: str | None = None
    run: str | None = None


@dataclass
class Cell:
    """All tests of one suite on one board, across runs."""

    board: str
    suite: str
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("passed", "product", "infrastructure", "config", "skipped", "not_run"), 0))
    messages: list[str] = field(default_factory=list)

    @property
    def state(self) -> str:
        """failed > config > broken > passed > skipped > not_run > missing: the worst thing found wins."""
        for key, state in (("product", "failed"), ("config", "config"), ("infrastructure", "broken"),
                           ("passed", "passed"), ("skipped", "skipped"), ("not_run", "not_run")):
            if self.counts[key]:
                return state
        return "missing"


@dataclass
class BoardVersions:
    """A board's versions as each run read them, its matrix verdicts, and any disagreement between runs."""

    board: str
    chip: str | None
    npu: str | None
    simulated: bool
    runs: list[str] = field(default_factory=list)
    found: dict[str, str | None] = field(default_factory=dict)
    expected: dict[str, str] = field(default_factory=dict)
    toolkit: str | None = None
    matrix_ok: bool | None = None
    mismatches: list[str] = field(default_factory=list)
    disagreements: list[str] = field(default_factory=list)
    variants: dict[str, list[str]] = field(default_factory=dict)  # component -> "value (run)" when runs differ
    broken: list[str] = field(default_factory=list)
    firmware: list[str] = field(default_factory=list)  # per run: the image and RK_VERSION before -> after
    recoveries: list[str] = field(default_factory=list)  # per climb of the ladder: why, what worked, how long


def firmware_text(entry: dict[str, Any], run: str) -> str:
    """``update.img: RK_VERSION A -> B (flashed, run)``, or why it was not flashed, from results.json."""
    image, before, after = entry.get("image", "?"), entry.get("before") or "unknown", entry.get("after")
    if entry.get("error"):
        return f"{image}: RK_VERSION {before}, flash FAILED ({run}): {entry['error']}"
    if not entry.get("flashed"):
        return f"{image}: already ran RK_VERSION {after or before}, not reflashed ({run})"
    return f"{image}: RK_VERSION {before} -> {after} (flashed, {run})"


def recovery_text(entry: dict[str, Any], run: str) -> str:
    """``power-cycled after links lost: ... (41.2 s; reconnect failed: ...) (run)`` from results.json."""
    failed = "; ".join(f"{s.get('rung')} failed: {s.get('error')}" for s in entry.get("steps") or []
                       if isinstance(s, dict) and not s.get("ok"))
    outcome = entry.get("outcome", "?")
    word = "marked broken" if outcome == "broken" else f"recovered ({outcome})"
    seconds = entry.get("seconds")
    took = f"{seconds:g} s" if isinstance(seconds, (int, float)) else "? s"
    return f"{word} after {entry.get('reason') or 'a failure'} ({took}{'; ' + failed if failed else ''}) ({run})"


@dataclass
class LatencyRow:
    board: str
    chip: str
    model: str
    precision: str | None
    run: str
    stats: dict[str, Any]
    budget: dict[str, Any]
    problems: list[str]
    run_regression: str | None
    baseline_mean: float | None = None
    baseline_run: str | None = None
    regression: str | None = None
    trend: list[tuple[str, float]] = field(default_factory=list)  # (run id, mean ms), oldest first
    tolerance: str = str(Tolerance())  # the regression tolerance this row was judged with

    @property
    def ok(self) -> bool:
        return not (self.problems or self.run_regression or self.regression)


@dataclass
class GateReport:
    verdict: str
    reasons: list[Reason]
    runs: list[dict[str, Any]]
    boards: list[str]
    suites: list[str]
    cells: dict[tuple[str, str], Cell]
    versions: list[BoardVersions]
    latency: list[LatencyRow]
    baseline: str | None
    latency_tolerance: str = ""  # which tolerance judged the latency rows, and where it came from

    @property
    def go(self) -> bool:
        return self.verdict == "GO"

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "reasons": [asdict(r) for r in self.reasons], "runs": self.runs,
                "boards": self.boards, "suites": self.suites, "baseline": self.baseline,
                "latency_tolerance": self.latency_tolerance,
                "cells": [{"board": c.board, "suite": c.suite, "state": c.state, "counts": c.counts,
                           "messages": c.messages} for c in self.cells.values()],
                "versions": [asdict(v) for v in self.versions],
                "latency": [asdict(row) | {"ok": row.ok} for row in self.latency]}


# ------------------------------------------------------------------------------------------------ the decision
def classify(test: TestEntry) -> str:
    """passed, skipped, not_run, product, infrastructure or config: whose fault a test's outcome is."""
    if test.outcome == "skipped" and test.skip is not None:
        return "not_run"
    if test.outcome in ("passed", "skipped"):
        return test.outcome
    if test.klass is not None:
        return test.klass
    return "product" if test.outcome == "failed" else "infrastructure"


def _suite(test: TestEntry) -> str:
    return test.suite or Path(test.nodeid.split("::", 1)[0]).stem or "(unknown)"


def _cells(runs: list[Run], boards: list[str], suites: list[str]) -> dict[tuple[str, str], Cell]:
    cells = {(b, s): Cell(b, s) for b in boards for s in suites}
    for run in runs:
        for test in run.data.tests if run.data else []:
            key = (test.board or NO_BOARD, _suite(test))
            cell = cells.setdefault(key, Cell(*key))
            kind = classify(test)
            cell.counts[kind] += 1
            if kind not in ("passed", "skipped", "not_run") and len(cell.messages) < 5:
                cell.messages.append(f"{test.nodeid} [{run.label}]: {(test.message or test.outcome)[:300]}"
                                     + _evidence_note(run, test))
    return cells


def _evidence_note(run: Run, test: TestEntry) -> str:
    """`` (evidence: PATH)`` for the test's console excerpt that exists under the run folder, else nothing."""
    files = [run.path / name for name in test.evidence if (run.path / name).is_file()]
    return f" (evidence: {', '.join(map(str, files))})" if files else ""


def _cell_reasons(cells: dict[tuple[str, str], Cell], expected: set[tuple[str, str]],
                  required_suites: set[str]) -> list[Reason]:
    reasons = []  # one per fault kind found in the cell, then the gap when nothing was judged
    for (board, suite), cell in sorted(cells.items()):
        c, state, first = cell.counts, cell.state, (cell.messages[0] if cell.messages else "")
        if c["product"]:
            reasons.append(Reason("product", f"{board} / {suite}: {c['product']} product failure(s): {first}",
                                  board, suite))
        if c["config"]:
            reasons.append(Reason("config", f"{board} / {suite}: could not judge: {c['config']} test(s) with "
                                            f"a configuration error: {first}", board, suite))
        if c["infrastructure"]:
            reasons.append(Reason("broken", f"{board} / {suite}: could not judge: board broken in "
                                            f"{c['infrastructure']} test(s) (not a product failure): {first}",
                                  board, suite))
        if (board, suite) in expected and state in ("missing", "skipped"):
            why = "no test ran" if state == "missing" else f"all {c['skipped']} test(s) skipped"
            reasons.append(Reason("gap", f"{board} / {suite}: nothing judged ({why})", board, suite))
        if (board, suite) in expected and state == "not_run" and suite in required_suites:
            reasons.append(Reason("gap", f"{board} / {suite}: required, but not run (not selected: "
                                         f"{c['not_run']} test(s))", board, suite))
    return reasons


def _versions(runs: list[Run]) -> tuple[list[BoardVersions], list[Reason]]:
    boards: dict[str, BoardVersions] = {}
    reasons = []
    for run in runs:
        for name, entry in (run.data.boards if run.data else {}).items():
            found = {c: ((entry.versions or {}).get(c) or {}).get("version") for c in VERSION_COMPONENTS}
            bv = boards.get(name)
            if bv is None:
                bv = boards[name] = BoardVersions(name, entry.chip, entry.npu, entry.simulated, found=found)
            else:
                if entry.chip != bv.chip:
                    bv.disagreements.append(f"chip {bv.chip} in {bv.runs[0]} vs {entry.chip} in {run.label}")
                for comp in VERSION_COMPONENTS:
                    a, b = bv.found.get(comp), found[comp]
                    if a != b and not same_version(a, b):
                        bv.disagreements.append(f"{comp} {a or 'unreadable'} in {bv.runs[0]} vs "
                                                f"{b or 'unreadable'} in {run.label}")
                        bv.variants.setdefault(comp, [f"{a or 'unreadable'} ({bv.runs[0]})"]).append(
                            f"{b or 'unreadable'} ({run.label})")
            bv.runs.append(run.label)
            if entry.firmware:
                bv.firmware.append(firmware_text(entry.firmware, run.label))
            bv.recoveries += [recovery_text(r, run.label) for r in entry.recoveries if isinstance(r, dict)]
            if entry.broken:
                bv.broken.append(f"{run.label}: {entry.broken if isinstance(entry.broken, str) else 'broken'}")
            matrix = entry.matrix
            if not matrix:  # this run did not check them: "not checked" unless another run did
                continue
            bv.toolkit, bv.expected = matrix.get("toolkit"), dict(matrix.get("expected") or {})
            ok = bool(matrix.get("ok")) and not matrix.get("mismatches")
            bv.matrix_ok = ok if bv.matrix_ok is None else (bv.matrix_ok and ok)
            for m in matrix.get("mismatches") or []:
                bv.mismatches.append(f"{m.get('component')}: expected {m.get('expected')}, found "
                                     f"{m.get('found') or 'unreadable'} ({run.label}); fix: {m.get('fix', '')}")
    for bv in boards.values():
        for text in bv.broken:
            reasons.append(Reason("broken", f"{bv.board}: could not judge: the board was broken in {text}", bv.board))
        for text in bv.mismatches:
            reasons.append(Reason("versions", f"{bv.board}: version mismatch: {text}", bv.board))
        for text in bv.disagreements:
            reasons.append(Reason("version-disagreement", f"{bv.board}: runs disagree on versions: {text}",
                                  bv.board))
    return sorted(boards.values(), key=lambda v: v.board), reasons


def _latency(runs: list[Run], baselines: Any, tolerance: Tolerance | None) -> tuple[list[LatencyRow], list[Reason]]:
    """Latency rows; a row is judged with ``tolerance`` when the gate sets one, else with the one its run
    recorded (the suite's), so suite and gate agree unless told otherwise."""
    rows, reasons = [], []
    for run in runs:
        for test in run.data.tests if run.data else []:
            board = test.board or NO_BOARD
            board_chip = run.data.boards.get(board).chip if board in run.data.boards else None
            for entry in test.latency:
                chip = entry.chip or board_chip or "(unknown chip)"
                row = LatencyRow(board, chip, entry.model, entry.precision, run.label, dict(entry.stats),
                                 dict(entry.budget or {}), list(entry.budget_problems), entry.regression_text)
                judged_with = tolerance or Tolerance.from_dict(entry.tolerance) or Tolerance()
                row.tolerance = str(judged_with)
                if entry.baseline_problem:
                    row.problems.append(f"the run's baseline is unusable: {entry.baseline_problem}")
                where = f"{entry.model} on {board} ({chip}{', ' + entry.precision if entry.precision else ''})"
                mean = entry.stats.get("mean_ms")
                if not isinstance(mean, (int, float)) or not math.isfinite(mean):
                    row.problems.append("no mean latency recorded")
                elif baselines is not None:
                    base = baselines.get(chip, entry.model, entry.precision, board)
                    row.trend = [(p.run_id, p.mean_ms) for p in baselines.trend(chip, entry.model, entry.precision)]
                    row.trend.append((run.label, float(mean)))
                    if base is not None:
                        row.baseline_mean, row.baseline_run = base.stats.get("mean_ms"), base.run_id
                        try:
                            current = LatencyStats(int(entry.stats.get("count") or 0), float(mean), 0.0, 0.0, 0.0,
                                                   None, None, None)  # regression() reads the mean and count
                            found = regression(current, base.stats, judged_with)
                        except ConfigError as exc:
                            row.problems.append(f"baseline {base.run_id} unusable: {exc}")
                        else:
                            row.regression = found.message + f" (baseline {base.run_id})" if found else None
                for text in row.problems + [t for t in (row.run_regression, row.regression) if t]:
                    reasons.append(Reason("latency", f"{where}: {text}", board, _suite(test), run.label))
                rows.append(row)
    return rows, reasons


def decide(runs: list[Run], *, baselines: Any = None, baseline_dir: str | None = None,
           expect_boards: list[str] | None = None, expect_suites: list[str] | None = None,
           latency_tolerance: Tolerance | None = None) -> GateReport:
    """Merge ``runs`` into one GateReport; ``baselines`` is a :class:`harness.report.baseline.BaselineStore`."""
    if not runs:
        raise ConfigError("no run to gate: name at least one run directory")
    seen = [str(r.path.resolve()) for r in runs]
    if len(set(seen)) != len(seen):
        raise ConfigError(f"a run directory was given twice: {next(p for p in seen if seen.count(p) > 1)}")
    boards = set(expect_boards or [])
    suites = set(expect_suites or [])
    for run in runs:
        if run.data:
            if not expect_boards:
                boards |= set(run.data.boards) | {t.board for t in run.data.tests if t.board}
            if not expect_suites:
                suites |= {_suite(t) for t in run.data.tests}
    cells = _cells(runs, sorted(boards), sorted(suites))
    expected = {(b, s) for b in boards for s in suites}
    reasons = [Reason("incomplete", f"run {run.label} ({run.path}) is incomplete: {run.problem}", run=run.label)
               for run in runs if run.problem]
    reasons += _cell_reasons(cells, expected, set(expect_suites or []))
    versions, version_reasons = _versions(runs)
    reasons += version_reasons
    for board in sorted(boards - {v.board for v in versions} - {NO_BOARD}):
        reasons.append(Reason("versions", f"{board}: no run recorded this board's versions", board))
    latency, latency_reasons = _latency(runs, baselines, latency_tolerance)
    reasons += latency_reasons
    if not expected and not reasons:
        reasons.append(Reason("gap", "the runs hold no test at all: nothing was judged"))
    reasons.sort(key=lambda r: REASON_ORDER.index(r.kind))
    used = sorted({row.tolerance for row in latency})
    tolerance_text = (f"{latency_tolerance} (set for this gate)" if latency_tolerance is not None else
                      f"{', '.join(used)} (as the runs judged)" if used else "")
    return GateReport("NO-GO" if reasons else "GO", reasons, [r.summary() for r in runs],
                      sorted({b for b, _ in cells} | boards), sorted({s for _, s in cells} | suites), cells,
                      versions, latency, baseline_dir, tolerance_text)


def gate(paths: list[Path], *, baseline_dir: Path | None = None, expect_boards: list[str] | None = None,
         expect_suites: list[str] | None = None, latency_tolerance: Tolerance | None = None) -> GateReport:
    """Read the runs under ``paths`` (and the accepted baselines under ``baseline_dir``) and decide."""
    from harness.report.baseline import load_baselines  # baseline.py imports load_run from here

    runs = [load_run(Path(p)) for p in paths]
    store = load_baselines(baseline_dir) if baseline_dir is not None else None
    return decide(runs, baselines=store, baseline_dir=str(baseline_dir) if baseline_dir else None,
                  expect_boards=expect_boards, expect_suites=expect_suites, latency_tolerance=latency_tolerance)
