"""``npu-hil boards``: list the inventory, and check it (``--probe``: open every board and ask each link)."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from harness.config.loader import Inventory, load_inventory
from harness.errors import HarnessError


def _inventory(args: argparse.Namespace) -> Inventory:
    path = args.boards_file or ("boards.toml" if Path("boards.toml").exists() else None)
    return load_inventory(path)


def _links(spec) -> str:
    if spec.is_simulated:
        return f"sim:{spec.sim.profile} (console, adb, ssh)"
    return ", ".join(name for name, key in (("console", "serial"), ("adb", "adb"), ("ssh", "ssh"), ("usb", "usb"))
                     if getattr(spec, key) is not None)


def _list(args: argparse.Namespace) -> int:
    inventory = _inventory(args)
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
    inventory = _inventory(args)
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
