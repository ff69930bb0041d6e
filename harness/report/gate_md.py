"""gate.md: the gate's decision as Markdown for a merge request (GitLab and GitHub render the same tables).

Why Markdown besides HTML: a merge request shows Markdown inline, so reviewers see the verdict and its reasons
without opening an artifact. The text helpers here are shared with :mod:`harness.report.gate_html` so both
documents say exactly the same thing.
"""

from __future__ import annotations

from pathlib import Path

from harness.report.gate import VERSION_COMPONENTS, BoardVersions, Cell, GateReport, LatencyRow
from harness.report.history import Trends, night_label

#: Marks every common font has (DejaVu, Liberation): a lab PC without an emoji font still shows them.
STATE_MARK = {"passed": "✓", "failed": "✗", "broken": "⚠", "config": "⚙", "skipped": "–", "not_run": "○",
              "missing": "?"}
STATE_WORDS = {"passed": "passed", "failed": "product failed", "broken": "could not judge (board broken)",
               "config": "could not judge (config error)", "skipped": "all skipped",
               "not_run": "not run (not selected)", "missing": "no test ran"}


#: Table headers of the version components ("chip" is what the board reported, beside the configured chip).
COMPONENT_HEADERS = {"chip": "chip read", "rk_version": "firmware"}


def component_header(name: str) -> str:
    return COMPONENT_HEADERS.get(name, name)


def found_text(v: BoardVersions, component: str) -> str:
    """The version the runs read; every run's value when they disagree."""
    if component in v.variants:
        return " ≠ ".join(v.variants[component])
    return v.found.get(component) or "unreadable"


def fmt_ms(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "–"


#: What the latency tolerance means, said once for every rendering of the report.
TOLERANCE_RULE = "slower than the baseline by more than the percentage AND the sigmas fails"
#: The per-board events a report lists under the versions: (title, BoardVersions attribute).
BOARD_EVENTS = (("Firmware under test", "firmware"), ("Recoveries", "recoveries"))


def board_events(report: GateReport) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """(title, attribute, [(board, line)]) for each kind of board event the runs recorded (none: left out)."""
    found = [(title, attr, [(v.board, line) for v in report.versions for line in getattr(v, attr)])
             for title, attr in BOARD_EVENTS]
    return [event for event in found if event[2]]


def matrix_word(versions: BoardVersions) -> str:
    """ok, MISMATCH, or "not checked" (no run checked the board's versions: not a mismatch)."""
    return "not checked" if versions.matrix_ok is None else "ok" if versions.matrix_ok else "MISMATCH"


def cell_text(cell: Cell) -> str:
    """``passed 3`` / ``product failed 1 of 4``: the state and how many tests back it."""
    c = cell.counts
    total = sum(c.values())
    if cell.state in ("passed", "skipped", "not_run", "missing"):
        n = c["passed"] if cell.state == "passed" else c["not_run"] if cell.state == "not_run" else c["skipped"]
        return STATE_WORDS[cell.state] + (f" {n}" if n else "")
    bad = {"failed": c["product"], "config": c["config"], "broken": c["infrastructure"]}[cell.state]
    return f"{STATE_WORDS[cell.state]} {bad} of {total}"


def cell_of(report: GateReport, board: str, suite: str) -> Cell:
    return report.cells.get((board, suite)) or Cell(board, suite)


def budget_text(row: LatencyRow) -> str:
    return ", ".join(f"{k} ≤ {v:g}" if isinstance(v, (int, float)) else f"{k} {v}"
                     for k, v in row.budget.items()) or "–"


def change_text(row: LatencyRow) -> str:
    mean, base = row.stats.get("mean_ms"), row.baseline_mean
    if not isinstance(mean, (int, float)) or not isinstance(base, (int, float)) or base <= 0:
        return "–"
    return f"{(mean / base - 1) * 100:+.1f} %"


def trend_text(row: LatencyRow) -> str:
    return " → ".join(fmt_ms(mean) for _, mean in row.trend) or "–"


def latency_status(row: LatencyRow) -> str:
    return "ok" if row.ok else "; ".join(row.problems + [t for t in (row.run_regression, row.regression) if t])


def _md(text: object) -> str:
    """A table cell: pipes escaped, one line."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").strip() or "–"


def _table(header: list[str], rows: list[list[object]]) -> list[str]:
    lines = ["| " + " | ".join(_md(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_md(v) for v in row) + " |" for row in rows]
    return lines + [""]


NIGHT_WORD = {"GO": "✓ GO", "NO-GO": "✗ NO-GO", "NOT-RUN": "○ not run"}


def history_markdown(trends: Trends) -> list[str]:
    """The nightly history as text: per board a row of nights, then latency per board and model over them."""
    out = [f"## The last {len(trends.nights)} night(s)", "",
           "Columns, oldest first: " + ", ".join(night_label(n) for n in trends.nights), ""]
    out += _table(["board"] + [night_label(n) for n in trends.nights],
                  [[board] + [NIGHT_WORD.get(trends.verdicts[board].get(n) or "", "") for n in trends.nights]
                   for board in trends.boards])
    if trends.latency:
        out += ["Latency mean over the nights (ms, oldest first):", ""]
        out += _table(["board", "model", "nights"],
                      [[board, model, " → ".join(fmt_ms(v) for _, v in points)]
                       for (board, model), points in trends.latency.items()])
    return out


def render_markdown(report: GateReport, trends: Trends | None = None) -> str:
    mark = "✅" if report.go else "⛔"
    out = [f"# Release gate: {mark} **{report.verdict}**", ""]
    runs = ", ".join(r["label"] + ("" if r["complete"] else " (INCOMPLETE)") for r in report.runs)
    out += [f"Runs: {runs}. Baseline: {report.baseline or 'none'}.", ""]
    if report.reasons:
        out += [f"## Why NO-GO ({len(report.reasons)})", ""]
        out += [f"- **{r.kind}**: {_md(r.text)}" for r in report.reasons] + [""]
    out += ["## Boards × suites", ""]
    out += _table(["board"] + report.suites,
                  [[board] + [f"{STATE_MARK[cell_of(report, board, s).state]} {cell_text(cell_of(report, board, s))}"
                              for s in report.suites] for board in report.boards])
    out += ["## Versions", ""]
    out += _table(["board", "chip", "toolkit", *map(component_header, VERSION_COMPONENTS), "matrix", "runs"],
                  [[v.board + (" (sim)" if v.simulated else ""), v.chip, v.toolkit,
                    *[found_text(v, c) for c in VERSION_COMPONENTS],
                    matrix_word(v) + ("; RUNS DISAGREE" if v.disagreements else ""),
                    ", ".join(v.runs)] for v in report.versions])
    for title, _, lines in board_events(report):
        out += [f"## {title}", ""] + [f"- {_md(board)}: {_md(line)}" for board, line in lines] + [""]
    if report.latency:
        out += ["## Latency (ms, on-board)", "", f"Regression tolerance: {report.latency_tolerance} "
                f"({TOLERANCE_RULE}).", ""]
        out += _table(["model", "chip", "precision", "board", "runs", "mean", "p50", "p90", "budget",
                       "baseline mean", "change", "trend", "status"],
                      [[r.model, r.chip, r.precision or "–", r.board, r.stats.get("count", "–"),
                        fmt_ms(r.stats.get("mean_ms")), fmt_ms(r.stats.get("p50_ms")), fmt_ms(r.stats.get("p90_ms")),
                        budget_text(r), fmt_ms(r.baseline_mean), change_text(r), trend_text(r),
                        latency_status(r)] for r in report.latency])
    if trends and trends.nights:
        out += history_markdown(trends)
    out += ["## Runs", ""]
    out += _table(["run", "host", "complete", "started", "finished", "boards", "tests", "path"],
                  [[r["run_id"], r["host"] or "–", "yes" if r["complete"] else f"NO: {r['problem']}",
                    r["started"] or "–", r["finished"] or "–", ", ".join(r["boards"]), r["tests"], r["path"]]
                   for r in report.runs])
    return "\n".join(out)


def write_markdown(report: GateReport, path: Path, trends: Trends | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_markdown(report, trends), encoding="utf-8")
    return path
