"""``npu-hil firmware inspect BOARD|IMAGE``: what a board runs, or what an update.img holds and whether it is sound.

A path that exists is an image; anything else is a board name (from boards.toml, or sim-<profile>). A bad
image ends with one line (not RKFW, truncated, wrong MD5, another chip's with --chip) and exit code 2.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from harness.chips import chip as lookup_chip
from harness.cli._boards import opened_board
from harness.errors import ConfigError
from harness.firmware.inspect import inspect_board, inspect_image


def _inspect_target(args: argparse.Namespace) -> dict[str, Any]:
    target = Path(args.target)
    if target.exists():
        if target.is_dir():
            raise ConfigError(f"{target} is a folder; give an update.img file or a board name")
        return inspect_image(target, chip=args.chip)
    board_args = argparse.Namespace(board=args.target, boards_file=args.boards_file, toolkit=None)
    with opened_board(board_args) as board:
        if args.chip and lookup_chip(args.chip).name not in board.chip.family:
            raise ConfigError(f"board {board.name} is a {board.chip.name}, not {args.chip}")
        return inspect_board(board)


def _print_image(info: dict[str, Any]) -> None:
    print(f"{info['path']}: RKFW update image, version {info['version']}, built {info['build_time']}")
    print(f"  chip         {info['chip_name']} (code {info['chip_code']}"
          + (f", tag {info['chip_tag']!r})" if info["chip_tag"] else ")"))
    print(f"  boot         offset 0x{info['boot_offset']:x}, {info['boot_size']} bytes")
    print(f"  firmware     offset 0x{info['fw_offset']:x}, {info['fw_size']} bytes ({info['payload_magic']})")
    print(f"  md5          {info['md5']} (verified{', signed image' if info['signed'] else ''})")
    manifest = info.get("manifest")
    if manifest:
        print(f"  manifest     chip {manifest['chip']}, RK_VERSION {manifest['rk_version']}")
        for name, value in manifest["versions"].items():
            print(f"    {name:11}  {value}")


def _print_board(info: dict[str, Any]) -> None:
    print(f"{info['board']} ({info['chip']})")
    print(f"  RK_VERSION   {info['rk_version'] or 'unreadable'}")
    print(f"  kernel       {info['kernel'] or 'unreadable'}")
    for name in ("driver", "rknn_server", "runtime"):
        print(f"  {name:12} {info['npu'][name]['version'] or 'unreadable'}")
    parts = info["partitions"]
    names = parts["by_name"]
    devices = parts["block_devices"]
    print(f"  partitions   {', '.join(names) if names else 'no /dev/block/by-name'}")
    if devices is not None:
        print(f"  block devs   {', '.join(d['name'] for d in devices) or 'none listed'}")


def _inspect(args: argparse.Namespace) -> int:
    info = _inspect_target(args)
    if args.json:
        print(json.dumps(info, indent=2))
    elif info["kind"] == "image":
        _print_image(info)
    else:
        _print_board(info)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("firmware", help="inspect firmware: a board's running release or an update.img",
                       description="Firmware tools. `inspect` reads a board's RK_VERSION, kernel, NPU versions "
                                   "and partitions, or an update.img's RKFW header, MD5 and manifest.")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    inspect = actions.add_parser("inspect", help="show what a board runs or what an update.img holds",
                                 description="A path that exists is read as an update.img (its MD5 is "
                                             "verified); anything else is a board name.")
    inspect.add_argument("target", metavar="BOARD|IMAGE", help="board name (or sim-<profile>) or update.img path")
    inspect.add_argument("--boards-file", metavar="PATH", help="inventory file (default: ./boards.toml)")
    inspect.add_argument("--chip", metavar="CHIP", help="refuse an image (or board) of any other chip")
    inspect.add_argument("--json", action="store_true", help="machine-readable output")
    inspect.set_defaults(func=_inspect)
