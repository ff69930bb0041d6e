"""``npu-hil doctor BOARD``: the troubleshooting manual's checklist, in order, as a table. Exit 0 only if all pass."""

from __future__ import annotations

import argparse
import json

from harness.cli._boards import add_board_arguments, opened_board
from harness.doctor import run_doctor
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
    ok = all(c.passed for c in checks)
    if args.json:
        print(json.dumps({"board": args.board, "ok": ok, "checks": [c.to_dict() for c in checks]}, indent=2))
        return 0 if ok else 1
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"npu-hil doctor {args.board}: {'all checks pass' if ok else 'PROBLEMS FOUND'}")
    for column in ("check", "result", "detail", "fix (manual)"):
        table.add_column(column, overflow="fold")
    for c in checks:
        table.add_row(c.name, "[green]pass[/]" if c.passed else "[red]FAIL[/]", c.detail,
                      f"{c.fix} ({c.section})" if c.fix and c.section else c.fix)
    Console().print(table)
    return 0 if ok else 1


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="run the troubleshooting manual's checklist against a board",
                       description="Checks, in order: every link answers (adb state and permissions), no stray "
                                   "npu_transfer_proxy on the host, versions vs the matrix, rknn_server running, "
                                   "no NPU hang in dmesg, free space on /userdata. Exit 0 only when all pass.")
    add_board_arguments(p)
    p.set_defaults(func=_doctor)
