"""``npu-hil doctor BOARD``: the troubleshooting manual's checklist, in the manual's order, each check with its
section. Exit 0 only if every required check passes (advice is shown, not failed on)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from harness.cli._boards import add_board_arguments, opened_board
from harness.doctor import Check, doctor_ok, run_doctor
from harness.errors import HarnessError
from harness.npu.model_package import load_package


def _doctor(args: argparse.Namespace) -> int:
    verbose: dict[str, Any] | None = None
    try:
        package = load_package(args.verbose_log) if args.verbose_log else None  # bad: one line, no board touched
        with opened_board(args) as board:
            checks = run_doctor(board, args.toolkit)
            if package is not None:
                verbose = _verbose_log(board, package, Path(args.log_out or f"runtime-verbose-{args.board}.log"))
    except HarnessError as exc:
        if args.json:
            print(json.dumps({"board": args.board, "ok": False, "error": str(exc), "checks": []}, indent=2))
            return 1
        raise
    ok = doctor_ok(checks)
    if args.json:
        report = {"board": args.board, "ok": ok, "checks": [c.to_dict() for c in checks]}
        print(json.dumps(report | ({"verbose_log": verbose} if verbose else {}), indent=2))
    else:
        _print_table(args.board, ok, checks)
        if verbose:
            print(f"verbose runtime log (RKNN_LOG_LEVEL=5, manual 1.2.3) of {args.verbose_log}: "
                  f"exit {verbose['exit_code']}, written to {verbose['path']}")
    return 0 if ok else 1


def _verbose_log(board: Any, package: Any, out: Path) -> dict[str, Any]:
    """What a failed NPU test does by itself, by hand: run the package once on the board, then again with the
    runtime's verbose log (rknn_server restarted at level 5, then back), and write the log to ``out``."""
    from harness.npu.run import run_package
    from harness.npu.verbose_log import collect_verbose_log

    board.last_npu_step, failure = None, None
    try:
        run_package(board, package, loops=1, warmup=0)
    except HarnessError as exc:  # a failing run is what the verbose log is for
        failure = exc
    if board.last_npu_step is None:
        raise HarnessError(f"{package.name}: no model run reached {board.name}: {failure}")
    log = collect_verbose_log(board, board.last_npu_step)
    out.write_text(log.text)
    return {"package": str(package.root), "exit_code": log.exit_code, "path": str(out.resolve())}


def _print_table(board: str, ok: bool, checks: list[Check]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"npu-hil doctor {board}: {'all checks pass' if ok else 'PROBLEMS FOUND'}")
    for column in ("manual", "check", "result", "detail", "fix"):
        table.add_column(column, overflow="fold")
    for c in checks:
        result = "[green]pass[/]" if c.passed else "[yellow]note[/]" if c.level == "advice" else "[red]FAIL[/]"
        table.add_row(c.section, escape(c.name), result, escape(c.detail), escape(c.fix))  # "[defaults]" is text
    Console().print(table)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="run the troubleshooting manual's checklist against a board",
                       description="Checks, in the manual's order (section in brackets): every link answers, adb "
                                   "permissions (4.1.1); versions vs the matrix and rknn_server running (4.1.3 (1)); "
                                   "no stray npu_transfer_proxy on the host (4.1.3 (5)); the full NPU driver, not the "
                                   "Mini Driver, on RV1109/RV1126 (4.1.3 (9)); NTB enabled, as advice (4.1.5); no NPU "
                                   "hang in dmesg (4.2.13); free space on /userdata. Exit 0 only when every required "
                                   "check passes; --json gives the same checks as JSON.")
    add_board_arguments(p)
    p.add_argument("--verbose-log", metavar="PACKAGE",
                   help="also run the model package folder PACKAGE once with the runtime's verbose log "
                        "(RKNN_LOG_LEVEL=5, rknn_server restarted at that level and back; manual 1.2.3), as a "
                        "failed NPU test does by itself")
    p.add_argument("--log-out", metavar="FILE", help="where --verbose-log writes the log "
                                                     "(default: ./runtime-verbose-BOARD.log)")
    p.set_defaults(func=_doctor)
