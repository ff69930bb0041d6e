"""``npu-hil model inspect FILE [--json]``: what an ``.rknn`` file says about itself.

Why a command: before pushing a model a person wants to know which chips it was built for and by which
toolkit, read from the file's own trailer ("model folders lie": the folder a model sits in proves nothing).
A corrupt or foreign file ends with one line on stderr (a ConfigError) and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from harness.npu.rknn_file import RknnInfo, read_rknn_file

#: Trailer keys worth a row of their own in the table (the rest is in ``--json``).
_TRAILER_ROWS = ("ori_network_platform", "name", "input_num", "output_num", "node_num", "norm_tensor_num")


def register(subparsers: Any) -> None:
    """Add ``model`` and its sub-commands to the ``npu-hil`` parser."""
    model = subparsers.add_parser("model", help="inspect model files (.rknn)")
    sub = model.add_subparsers(dest="model_command", metavar="ACTION", required=True)
    inspect = sub.add_parser("inspect", help="show an .rknn file's layout, target platforms and toolkit version")
    inspect.add_argument("file", metavar="FILE", help="the .rknn file")
    inspect.add_argument("--json", action="store_true", help="print JSON (with the whole trailer) instead of a table")
    inspect.set_defaults(func=run_inspect)


def run_inspect(args: argparse.Namespace) -> int:
    """Print the file's facts; a bad file raises ConfigError, which the CLI prints as one line."""
    info = read_rknn_file(args.file)
    if args.json:
        json.dump({"file": args.file, **info.to_dict()}, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
    else:
        Console(soft_wrap=True).print(info_table(args.file, info))
    return 0


def _text(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "(none declared)"
    return str(value)


def info_table(title: str, info: RknnInfo) -> Table:
    """A two-column table of the fields a person checks before pushing a model."""
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    payload = "-" if info.payload_offset is None else f"{info.payload_kind} at 0x{info.payload_offset:x}, " \
                                                      f"{info.payload_length} bytes"
    rows: list[tuple[str, object]] = [
        ("layout", info.layout),
        ("header version", info.header_version),
        ("npu", info.npu),
        ("target platforms", info.target_platforms),
        ("toolkit version", info.toolkit_version),
        ("pre-compiled", info.pre_compile),
        ("payload", payload),
        ("trailer", f"JSON at 0x{info.trailer_offset:x}, {len(info.trailer)} keys"),
        ("size", f"{info.size} bytes"),
        ("sha256", info.sha256),
    ]
    rows += [(key, info.trailer[key]) for key in _TRAILER_ROWS if key in info.trailer]
    for key, value in rows:
        table.add_row(key, _text(value))
    for warning in info.warnings:
        table.add_row("[yellow]warning[/yellow]", warning)
    return table
