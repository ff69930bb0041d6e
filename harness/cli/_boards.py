"""Shared by the commands that act on boards (boards, versions, doctor, firmware): find the inventory the way
every command does (``--boards-file``, else ./boards.toml, else the built-in one), open a board, close it after."""

from __future__ import annotations

import argparse
import contextlib
import tempfile
from pathlib import Path
from typing import Iterator

from harness.board import Board
from harness.config.loader import Inventory, load_inventory
from harness.session import RunSession


def add_board_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("board", help="board name from boards.toml, a chip with one board, or sim-<profile>")
    parser.add_argument("--boards-file", metavar="PATH", help="inventory file (default: ./boards.toml)")
    parser.add_argument("--toolkit", metavar="VERSION", help="toolkit release to check against (default: boards.toml)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def cli_inventory(boards_file: str | None) -> Inventory:
    """The inventory a command uses: ``boards_file``, else ./boards.toml when it exists, else the built-in one."""
    return load_inventory(boards_file or ("boards.toml" if Path("boards.toml").exists() else None))


@contextlib.contextmanager
def opened_board(args: argparse.Namespace) -> Iterator[Board]:
    """Open the named board (starting a simulated one if needed, stopping it after)."""
    inventory = cli_inventory(args.boards_file)
    spec = inventory.get(args.board)
    with tempfile.TemporaryDirectory(prefix="npu-hil-") as tmp:
        session = RunSession(inventory=inventory, specs=[spec], reports_dir=Path(tmp), toolkit=args.toolkit)
        try:
            yield session.board(spec.name)
        finally:
            session.close()
