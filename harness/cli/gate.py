"""``npu-hil gate RUN_DIR...``: merge runs into one GO / NO-GO decision; exit 0 only on GO.

Writes gate.html (self-contained) and gate.md (for a merge request) and prints the decision as a table.
The rules are in :mod:`harness.report.gate`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from harness.errors import ConfigError
from harness.npu.latency import Tolerance
from harness.report.baseline import DEFAULT_DIR
from harness.report.gate import GateReport, gate
from harness.report.gate_html import write_html
from harness.report.gate_md import (
    STATE_MARK,
    TOLERANCE_RULE,
    board_events,
    cell_of,
    cell_text,
    change_text,
    fmt_ms,
    latency_status,
    write_markdown,
)
from harness.report.gate_policy import GatePolicy, load_policy
from harness.report.history import read, trends

STYLE = {"passed": "green", "failed": "bold red", "broken": "yellow", "config": "yellow", "skipped": "dim",
         "not_run": "dim", "missing": "dim"}


def _names(text: str | None) -> list[str] | None:
    return [n.strip() for n in text.split(",") if n.strip()] if text else None


def print_report(report: GateReport, console: Console) -> None:
    colour = "bold green" if report.go else "bold red"
    console.print(f"[{colour}]{report.verdict}[/]  {len(report.runs)} run(s), {len(report.boards)} board(s), "
                  f"{len(report.suites)} suite(s); baseline: {report.baseline or 'none'}")
    for reason in report.reasons:
        console.print(f"  - {reason.kind}: {reason.text}", markup=False)  # a test message is no markup
    cells = Table(title="boards x suites")
    cells.add_column("board")
    for suite in report.suites:
        cells.add_column(Text(suite))
    for board in report.boards:  # Text, not markup: names and messages come from files
        row = [cell_of(report, board, s) for s in report.suites]
        cells.add_row(Text(board), *[Text(f"{STATE_MARK[c.state]} {cell_text(c)}", STYLE[c.state]) for c in row])
    console.print(cells)
    for title, _, lines in board_events(report):
        for board, line in lines:
            console.print(f"{title.lower()}, {board}: {line}", markup=False)
    if report.latency:
        table = Table(title="latency (ms, on-board)")
        for name in ("model", "chip", "board", "mean", "p90", "baseline", "change", "status"):
            table.add_column(name)
        for r in report.latency:
            table.add_row(*map(Text, (r.model, r.chip, r.board, fmt_ms(r.stats.get("mean_ms")),
                                      fmt_ms(r.stats.get("p90_ms")), fmt_ms(r.baseline_mean), change_text(r))),
                          Text(latency_status(r), "green" if r.ok else "red"))
        console.print(table)
        console.print(f"latency regression tolerance: {report.latency_tolerance} ({TOLERANCE_RULE})",
                      markup=False)


def _gate(args: argparse.Namespace) -> int:
    paths = [Path(p) for p in args.run_dirs]
    if args.baseline and not Path(args.baseline).is_dir():  # a typo must not silently skip the comparison
        raise ConfigError(f"baseline folder {args.baseline} does not exist (accept one with `npu-hil baseline "
                          f"accept RUN_DIR --into {args.baseline}`)")
    baseline = None if args.no_baseline else (Path(args.baseline) if args.baseline else
                                              (DEFAULT_DIR if DEFAULT_DIR.is_dir() else None))
    policy = load_policy(Path(args.policy)) if args.policy else GatePolicy()
    tolerance = Tolerance.parse(args.latency_tolerance) if args.latency_tolerance else policy.tolerance
    report = gate(paths, baseline_dir=baseline, expect_boards=_names(args.boards) or policy.boards,
                  expect_suites=_names(args.suites) or policy.suites, latency_tolerance=tolerance)
    out = Path(args.out) if args.out else paths[0].resolve().parent / "gate"
    shown = trends(read(Path(args.history))) if args.history else None
    if args.history and not shown.nights:
        raise ConfigError(f"no nightly history in {args.history} (npu-hil nightly writes history.jsonl there)")
    html, md = write_html(report, out / "gate.html", shown), write_markdown(report, out / "gate.md", shown)
    if args.json:
        print(json.dumps(report.to_dict() | {"html": str(html), "markdown": str(md)}, indent=2, default=str))
    else:
        console = Console(highlight=False)
        print_report(report, console)
        console.print(f"written: {html} and {md}", markup=False)
    return 0 if report.go else 1


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gate", help="merge runs into one GO / NO-GO release decision (exit 0 only on GO)",
                       description="Reads reports/<run-id>/results.json of each run (boards, hosts, workers), "
                                   "decides GO or NO-GO with the reasons, and writes gate.html and gate.md. "
                                   "Exit 0 on GO, 1 on NO-GO, 2 on bad input.")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="a run's folder (or its results.json)")
    p.add_argument("--baseline", metavar="DIR",
                   help=f"accepted baselines to compare latency with (default: {DEFAULT_DIR} when it exists)")
    p.add_argument("--no-baseline", action="store_true", help="compare with no accepted baseline")
    p.add_argument("--out", metavar="DIR", help="where gate.html and gate.md go (default: gate/ beside the "
                                                "first run's folder)")
    p.add_argument("--policy", metavar="FILE", help="what the release requires, a TOML file: boards, suites, "
                                                    "latency_tolerance (see harness/report/gate_policy.py)")
    p.add_argument("--boards", metavar="A,B", help="the boards the release needs (default: the policy's, else "
                                                   "every board seen)")
    p.add_argument("--suites", metavar="X,Y", help="the suites the release needs; one of them not run is a gap "
                                                   "(default: the policy's, else every suite seen, and a suite "
                                                   "not selected is only reported as not run)")
    p.add_argument("--latency-tolerance", metavar="PCT%[,Ksigma]",
                   help="regression rule for latency against the baseline (default: the policy's, else what "
                        "each run judged with, i.e. pytest's --latency-tolerance)")
    p.add_argument("--history", metavar="DIR", help="a nightly archive (npu-hil nightly --archive): its last "
                                                    "nights are shown as trends in gate.html and gate.md")
    p.add_argument("--json", action="store_true", help="print the decision as JSON instead of tables")
    p.set_defaults(func=_gate)
