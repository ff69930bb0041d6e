"""gate.html: the gate's decision as one self-contained page (inline CSS, inline SVG, no script, no fetch).

Why self-contained: the page is a CI artifact opened from a laptop, an air-gapped lab or a mail, years later;
anything fetched from a network may be gone or blocked. A Content-Security-Policy of ``default-src 'none'``
makes that a property the browser enforces (a stray ``<img src=http://...>`` is refused and logged), not a
promise. The verdict sits in ``<div id="verdict" data-verdict="GO|NO-GO">`` so tools and tests read it from the
rendered DOM. Every text from a results file is escaped: a test message is data, never markup.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from harness.report.gate import VERSION_COMPONENTS, GateReport, LatencyRow
from harness.report.gate_md import (
    STATE_MARK,
    TOLERANCE_RULE,
    board_events,
    budget_text,
    cell_of,
    cell_text,
    change_text,
    component_header,
    fmt_ms,
    found_text,
    latency_status,
    matrix_word,
    trend_text,
)
from harness.report.history import Trends, night_label

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #1d1d1f; }
h1 { font-size: 22px; } h2 { font-size: 17px; margin-top: 28px; }
.verdict { display: inline-block; padding: 10px 28px; font-size: 34px; font-weight: 700; border-radius: 8px;
           color: #fff; letter-spacing: .05em; }
.verdict.go { background: #1a7f37; } .verdict.nogo { background: #cf222e; }
table { border-collapse: collapse; margin: 8px 0; } th, td { border: 1px solid #d0d7de; padding: 4px 8px; }
th { background: #f6f8fa; text-align: left; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.passed { background: #dafbe1; } .failed { background: #ffcecb; } .broken, .config { background: #fff1c2; }
.skipped, .not_run, .missing { background: #eaeef2; } .bad { color: #cf222e; font-weight: 600; }
ul.reasons li { margin: 3px 0; } .kind { font-weight: 700; text-transform: uppercase; font-size: 11px; }
.small { color: #57606a; font-size: 12px; } svg { vertical-align: middle; }
td.night { text-align: center; min-width: 16px; } .GO { background: #dafbe1; } .NO-GO { background: #ffcecb; }
.NOT-RUN { background: #eaeef2; }
"""
NIGHT_MARK = {"GO": "✓", "NO-GO": "✗", "NOT-RUN": "○"}


def _e(value: object) -> str:
    return escape("–" if value is None or value == "" else str(value), quote=True)


def _row(cells: list[str], tag: str = "td") -> str:
    return "<tr>" + "".join(c if c.startswith(f"<{tag}") else f"<{tag}>{c}</{tag}>" for c in cells) + "</tr>"


def polyline(points: list[tuple[str, float]], *, last_bad: bool, width: int = 140, height: int = 32,
             label: str = "") -> str:
    """Labelled values as a small inline SVG line; the last point red when ``last_bad`` (else green)."""
    values = [v for _, v in points]
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    xs = [4 + i * (width - 8) / max(1, len(values) - 1) for i in range(len(values))]
    ys = [height - 4 - (v - low) / span * (height - 8) for v in values]
    last = "#cf222e" if last_bad else "#1a7f37"
    dots = "".join(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{last if i == len(xs) - 1 else "#57606a"}">'
                   f"<title>{_e(name)}: {fmt_ms(v)} ms</title></circle>"
                   for i, (x, y, (name, v)) in enumerate(zip(xs, ys, points)))
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys))
    return (f'<svg width="{width}" height="{height}" role="img" aria-label="{_e(label)}">'
            f'<polyline points="{line}" fill="none" stroke="#57606a" stroke-width="1.5"/>{dots}</svg>')


def sparkline(row: LatencyRow) -> str:
    """The mean over accepted baselines and this run (last point, red when it fails) as inline SVG."""
    if len(row.trend) < 2:
        return _e(trend_text(row))
    return (polyline(list(row.trend), last_bad=not row.ok, label=trend_text(row))
            + f'<div class="small">{_e(trend_text(row))}</div>')


def _reasons(report: GateReport) -> str:
    if not report.reasons:
        return "<p>Every expected board × suite cell passed; versions, latency and runs are in order.</p>"
    items = "".join(f'<li><span class="kind">{_e(r.kind)}</span> {_e(r.text)}</li>' for r in report.reasons)
    return f'<h2>Why NO-GO ({len(report.reasons)})</h2><ul class="reasons" id="reasons">{items}</ul>'


def _cells(report: GateReport) -> str:
    rows = [_row(["board"] + [_e(s) for s in report.suites], "th")]
    for board in report.boards:
        tds = []
        for suite in report.suites:
            cell = cell_of(report, board, suite)
            tip = _e(" | ".join(cell.messages)) if cell.messages else ""
            tds.append(f'<td class="{cell.state}" title="{tip}" data-board="{_e(board)}" data-suite="{_e(suite)}"'
                       f' data-state="{cell.state}">{STATE_MARK[cell.state]} {_e(cell_text(cell))}</td>')
        rows.append(_row([_e(board)] + tds))
    return f'<table id="cells">{"".join(rows)}</table>'


def _versions(report: GateReport) -> str:
    rows = [_row(["board", "chip", "toolkit", *map(component_header, VERSION_COMPONENTS), "matrix", "runs"], "th")]
    for v in report.versions:
        state = matrix_word(v) + ("; RUNS DISAGREE" if v.disagreements else "")
        bad = v.matrix_ok is False or v.disagreements
        cells = [_e(v.board + (" (sim)" if v.simulated else "")), _e(v.chip), _e(v.toolkit)]
        for comp in VERSION_COMPONENTS:
            want = v.expected.get(comp)
            off = comp in v.variants or (want is not None and any(m.startswith(f"{comp}:") for m in v.mismatches))
            text = _e(found_text(v, comp)) + (f'<div class="small">expected {_e(want)}</div>' if want and off else "")
            cells.append(f'<td class="{"bad" if off else ""}">{text}</td>')
        details = "".join(f'<div class="small">{_e(t)}</div>' for t in v.mismatches + v.disagreements + v.broken)
        cells += [f'<td class="{"bad" if bad else ""}">{_e(state)}{details}</td>', _e(", ".join(v.runs))]
        rows.append(_row(cells))
    events = "".join(f'<h3>{title}</h3><ul id="{attr}">'
                     + "".join(f"<li>{_e(board)}: {_e(line)}</li>" for board, line in lines) + "</ul>"
                     for title, attr, lines in board_events(report))
    return f'<table id="versions">{"".join(rows)}</table>{events}'


def _latency(report: GateReport) -> str:
    if not report.latency:
        return "<p>No latency figures in these runs.</p>"
    head = ["model", "chip", "precision", "board", "runs", "mean", "p50", "p90", "p99", "budget", "baseline mean",
            "change", "trend", "status"]
    rows = [_row(head, "th")]
    for r in report.latency:
        num = [f'<td class="num">{_e(v)}</td>' for v in (r.stats.get("count"), fmt_ms(r.stats.get("mean_ms")),
                                                         fmt_ms(r.stats.get("p50_ms")), fmt_ms(r.stats.get("p90_ms")),
                                                         fmt_ms(r.stats.get("p99_ms")))]
        rows.append(_row([_e(r.model), _e(r.chip), _e(r.precision), _e(r.board), *num, _e(budget_text(r)),
                          f'<td class="num">{_e(fmt_ms(r.baseline_mean))}</td>', _e(change_text(r)), sparkline(r),
                          f'<td class="{"passed" if r.ok else "failed"}">{_e(latency_status(r))}</td>']))
    rule = f'<p id="latency-tolerance">Regression tolerance: {_e(report.latency_tolerance)} ({TOLERANCE_RULE}).</p>'
    return f'{rule}<table id="latency">{"".join(rows)}</table>'


def _runs(report: GateReport) -> str:
    rows = [_row(["run", "host", "complete", "started", "finished", "boards", "tests", "path"], "th")]
    for r in report.runs:
        done = "yes" if r["complete"] else f'<span class="bad">NO: {_e(r["problem"])}</span>'
        rows.append(_row([_e(r["run_id"]), _e(r["host"]), done, _e(r["started"]), _e(r["finished"]),
                          _e(", ".join(r["boards"])), _e(r["tests"]), _e(r["path"])]))
    return f'<table id="runs">{"".join(rows)}</table>'


def _history(trends: Trends) -> str:
    """Per board a row of nights (GO / NO-GO / not run), then per board and model the latency over the nights."""
    head = _row(["board"] + [f'<th title="{_e(n)}">{_e(night_label(n))}</th>' for n in trends.nights], "th")
    rows = [head]
    for board in trends.boards:
        cells = []
        for night in trends.nights:
            verdict = trends.verdicts[board].get(night)
            cells.append(f'<td class="night {_e(verdict or "")}" data-night="{_e(night)}" data-verdict="{_e(verdict)}"'
                         f' title="{_e(night)}: {_e(verdict)}">{NIGHT_MARK.get(verdict or "", "")}</td>')
        rows.append(_row([_e(board)] + cells))
    charts = [_row(["board", "model", "nights", "latency mean over the nights (ms)", "last"], "th")]
    for (board, model), points in trends.latency.items():
        labelled = [(night_label(n), v) for n, v in points]
        worse = len(points) > 1 and points[-1][1] > points[0][1]
        chart = polyline(labelled, last_bad=worse, width=220, label=f"{board} {model}") if len(points) > 1 else ""
        charts.append(_row([_e(board), _e(model), f'<td class="num">{len(points)}</td>',
                            f'<td data-board="{_e(board)}" data-model="{_e(model)}">{chart}</td>',
                            f'<td class="num">{_e(fmt_ms(points[-1][1]))}</td>']))
    return (f'<table id="history">{"".join(rows)}</table><h3>Latency over the nights</h3>'
            f'<table id="history-latency">{"".join(charts)}</table>')


def render_html(report: GateReport, trends: Trends | None = None) -> str:
    klass = "go" if report.go else "nogo"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>npu-hil release gate: {_e(report.verdict)}</title><style>{CSS}</style></head>
<body>
<h1>npu-hil release gate</h1>
<div id="verdict" class="verdict {klass}" data-verdict="{_e(report.verdict)}">{_e(report.verdict)}</div>
<p class="small">{len(report.runs)} run(s), {len(report.boards)} board(s), {len(report.suites)} suite(s);
baseline: {_e(report.baseline or "none")}</p>
{_reasons(report)}
<h2>Boards × suites</h2>{_cells(report)}
<h2>Versions</h2>{_versions(report)}
<h2>Latency (ms, measured on the board)</h2>{_latency(report)}
{f"<h2>The last {len(trends.nights)} night(s)</h2>{_history(trends)}" if trends and trends.nights else ""}
<h2>Runs</h2>{_runs(report)}
</body></html>
"""


def write_html(report: GateReport, path: Path, trends: Trends | None = None) -> Path:
    """Write the page; ``trends``: the nightly history to show beside the decision (npu-hil nightly)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(report, trends), encoding="utf-8")
    return path
