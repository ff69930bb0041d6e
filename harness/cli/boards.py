"""``npu-hil boards``: list the inventory, and check it (``--probe``: open every board and ask each link)."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from harness.cli._boards import cli_inventory
from harness.errors import HarnessError


def _links(spec) -> str:
    links = ", ".join(spec.link_names)
    if spec.is_simulated:
        return f"sim:{spec.sim.profile} ({links})"
    return f"place:{spec.place or 'reserved'} ({links})" if spec.is_place else links


def _list(args: argparse.Namespace) -> int:
    inventory = cli_inventory(args.boards_file)
    rows = [{"name": s.name, "chip": s.chip, "links": _links(s), "tags": s.tags, "description": s.description}
            for s in inventory.boards.values()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"boards in {inventory.path or 'the built-in inventory'}")
    for column in ("name", "chip", "links", "tags", "description"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["name"], row["chip"], row["links"], ", ".join(row["tags"]), row["description"])
    Console().print(table)
    return 0


def _check(args: argparse.Namespace) -> int:
    inventory = cli_inventory(args.boards_file)
    print(f"{inventory.path or 'built-in inventory'}: {len(inventory.boards)} board(s), valid")
    if not args.probe:
        return 0
    from harness.session import RunSession

    specs = inventory.select(args.board) if args.board else list(inventory.boards.values())
    failed = 0
    with tempfile.TemporaryDirectory(prefix="npu-hil-check-") as tmp:
        session = RunSession(inventory=inventory, specs=specs, reports_dir=Path(tmp))
        try:
            for spec in specs:
                try:
                    board = session.board(spec.name)
                    problems = {k: v for k, v in board.health().items() if v}
                except HarnessError as exc:
                    problems = {"open": str(exc)}
                failed += bool(problems)
                verdict = "ok" if not problems else "; ".join(f"{k}: {v}" for k, v in problems.items())
                print(f"{spec.name:20} {verdict}")
        finally:
            session.close()
    return 1 if failed else 0


def register(sub: argparse._SubParsersAction) -> None:
    boards = sub.add_parser("boards", help="list and check the board inventory (boards.toml)")
    boards.add_argument("--boards-file", metavar="PATH", help="inventory file (default: ./boards.toml)")
    cmds = boards.add_subparsers(dest="boards_command", metavar="ACTION", required=True)
    p = cmds.add_parser("list", help="the boards and their links")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_list)
    p = cmds.add_parser("check", help="validate boards.toml; --probe also opens each board and checks every link")
    p.add_argument("--probe", action="store_true", help="open the boards (starts simulated ones) and ask each link")
    p.add_argument("board", nargs="*", help="only these boards (with --probe)")
    p.set_defaults(func=_check)
