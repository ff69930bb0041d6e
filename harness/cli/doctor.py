"""``npu-hil doctor BOARD``: the troubleshooting manual's checklist, in the manual's order, each check with its
section. Exit 0 only if every required check passes (advice is shown, not failed on)."""

from __future__ import annotations

import argparse
import json

from harness.cli._boards import add_board_arguments, opened_board
from harness.doctor import Check, doctor_ok, run_doctor
from harness.errors import HarnessError


def _doctor(args: argparse.Namespace) -> int:
    try:
        with opened_board(args) as board:
            checks = run_doctor(board, args.toolkit)
    except HarnessError as exc:
        if args.json:
            print(json.dumps({"board": args.board, "ok": False, "error": str(exc), "checks": []}, indent=2))
            return 1
        raise
    ok = doctor_ok(checks)
    if args.json:
        print(json.dumps({"board": args.board, "ok": ok, "checks": [c.to_dict() for c in checks]}, indent=2))
    else:
        _print_table(args.board, ok, checks)
    return 0 if ok else 1


def _print_table(board: str, ok: bool, checks: list[Check]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"npu-hil doctor {board}: {'all checks pass' if ok else 'PROBLEMS FOUND'}")
    for column in ("manual", "check", "result", "detail", "fix"):
        table.add_column(column, overflow="fold")
    for c in checks:
        result = "[green]pass[/]" if c.passed else "[yellow]note[/]" if c.level == "advice" else "[red]FAIL[/]"
        table.add_row(c.section, c.name, result, c.detail, c.fix)
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
    p.set_defaults(func=_doctor)
