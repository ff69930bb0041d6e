"""``npu-hil versions BOARD``: the board's NPU stack as the manual reads it, and its verdict against the matrix."""

from __future__ import annotations

import argparse
import json

from harness.cli._boards import add_board_arguments, opened_board
from harness.npu.board_versions import check_board
from harness.report.evidence import COMPONENTS


def _versions(args: argparse.Namespace) -> int:
    with opened_board(args) as board:
        record, verdict = check_board(board, args.toolkit)
    if args.json:
        print(json.dumps({"board": board.name, "chip": board.chip.name, "versions": record.to_dict(),
                          "matrix": verdict.to_dict()}, indent=2))
    else:
        print(f"{board.name} ({board.chip.name}, {board.npu})")
        for name in COMPONENTS:
            parsed = getattr(record, name)
            print(f"  {name:12} {parsed.version or 'unreadable'}" + ("" if parsed.version else f"  ({parsed.raw!r})"))
        print(f"  {'server':12} {'running' if record.server_running else 'NOT running'}")
        print(verdict.explain())
    return 0 if verdict.ok else 1


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("versions", help="probe a board's NPU versions and check them against the matrix",
                       description="Reads driver, rknn_server and runtime versions with the manual's commands "
                                   "(4.1.3) and checks them against the toolkit release's matrix row. "
                                   "Exit 0 when they belong together.")
    add_board_arguments(p)
    p.set_defaults(func=_versions)
