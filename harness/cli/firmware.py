"""``npu-hil firmware inspect BOARD|IMAGE``: what a board runs, or what an update.img holds and whether it is sound.

``npu-hil firmware flash BOARD IMAGE``: flash an update.img (OTA over adb/ssh, or USB Loader mode), follow the
boot and check the board reports the image's versions. A bad image or a full /userdata is refused (exit 2)
before anything touches the board.

A path that exists is an image; anything else is a board name (from boards.toml, or sim-<profile>). A bad
image ends with one line (not RKFW, truncated, wrong MD5, another chip's with --chip) and exit code 2.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from harness.chips import chip as lookup_chip
from harness.cli._boards import cli_inventory, opened_board
from harness.errors import ConfigError
from harness.firmware.flash import DEFAULT_STRATEGY, STRATEGIES, UsbLoaderStrategy, flash, strategy_from_name
from harness.firmware.inspect import inspect_board, inspect_image
from harness.firmware.rkfw import read_update_image


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


def _partitions(values: list[str]) -> dict[str, str]:
    parts = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"--partition {value!r}: give NAME=FILE (e.g. boot=boot.img)")
        parts[name] = path
    return parts


def _flash(args: argparse.Namespace) -> int:
    if not Path(args.image).is_file():
        raise ConfigError(f"{args.image}: no such update.img")
    options: dict[str, Any] = {}
    if args.strategy.startswith("usb"):
        options = {"rkdeveloptool": args.rkdeveloptool, "partitions": _partitions(args.partition),
                   "loader": args.loader, "location": args.usb_location}
        if args.upgrade_tool:
            options["upgrade_tool"] = args.upgrade_tool
    strategy = strategy_from_name(args.strategy, **options)
    # refuse a bad image or an unusable strategy before the board is opened (a simulated one started)
    read_update_image(args.image, chip=cli_inventory(args.boards_file).get(args.board).chip)
    if isinstance(strategy, UsbLoaderStrategy):
        strategy.check()
    board_args = argparse.Namespace(board=args.board, boards_file=args.boards_file, toolkit=None)
    with opened_board(board_args) as board:
        result = flash(board, args.image, strategy, progress=None if args.json else print)
    if args.json:
        print(json.dumps({"board": result.board, "strategy": result.strategy, "image": result.image.to_dict(),
                          "rk_version": result.rk_version, "versions": result.versions,
                          "boot_stages": result.boot_stages}, indent=2))
    else:
        print(f"{result.board} flashed with {Path(args.image).name} ({result.strategy}): "
              f"RK_VERSION {result.rk_version}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("firmware", help="firmware: inspect a board or an update.img, flash an update.img",
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
    fl = actions.add_parser("flash", help="flash an update.img onto a board and check it runs its versions",
                            description="DESTRUCTIVE: rewrites the board's partitions. The image (RKFW, MD5, chip) "
                                        "and /userdata's free space are checked before the board is touched.")
    fl.add_argument("board", metavar="BOARD", help="board name (or sim-<profile>)")
    fl.add_argument("image", metavar="IMAGE", help="update.img to flash")
    fl.add_argument("--strategy", choices=STRATEGIES, default=DEFAULT_STRATEGY,
                    help=f"how to flash (default {DEFAULT_STRATEGY})")
    fl.add_argument("--boards-file", metavar="PATH", help="inventory file (default: ./boards.toml)")
    fl.add_argument("--rkdeveloptool", default="rkdeveloptool", metavar="PATH", help="usb: rkdeveloptool to run")
    fl.add_argument("--upgrade-tool", metavar="PATH", help="usb: run `upgrade_tool uf IMAGE` instead")
    fl.add_argument("--partition", action="append", default=[], metavar="NAME=FILE",
                    help="usb with rkdeveloptool: write FILE to partition NAME (repeatable)")
    fl.add_argument("--loader", metavar="PATH", help="usb: loader.bin for `db` when the board is in Maskrom")
    fl.add_argument("--usb-location", metavar="PORT", help="usb: the board's USB port path, e.g. 1-2.3")
    fl.add_argument("--json", action="store_true", help="machine-readable output")
    fl.set_defaults(func=_flash)
