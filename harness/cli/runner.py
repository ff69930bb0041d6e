"""``npu-hil runner build``: build the native on-board runner (no python3 needed on the board)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from harness.npu.runner.native_build import ABIS, ARCHES, build

DEFAULT_OUT = Path("build/runner")


def _build(args: argparse.Namespace) -> int:
    built = [b for arch in (args.arch or ["host"])
             for b in build(Path(args.out), cc=args.cc, abis=tuple(args.abi or ABIS), stub=args.stub, arch=arch)]
    if args.json:
        print(json.dumps([b.to_dict() for b in built], indent=2))
        return 0
    for b in built:
        print(f"{b.abi} ({b.arch}): {b.runner}" + (f"  stub runtime: {b.stub}" if b.stub else ""))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("runner", help="build the native on-board runner (C, for stock board images)")
    actions = p.add_subparsers(dest="runner_command", metavar="ACTION", required=True)
    b = actions.add_parser("build", help="compile the C runner for each runtime ABI and print the binaries' paths",
                           description="Compiles harness/npu/runner/native/npu_hil_runner.c once per runtime ABI: "
                                       "rknpu1 (librknn_api.so: RV1109/RV1126, RK1808) and rknpu2 (librknnrt.so), "
                                       "for the host or, with --arch, a board's architecture. The runner prints "
                                       "the same protocol as the Python runner and opens the runtime with dlopen "
                                       "(--lib PATH at run time). --stub also builds a stand-in runtime library "
                                       "for testing (ARM builds run here under qemu-user). A run builds and pushes "
                                       "it by itself for boards on the native runner (runner in boards.toml; kept "
                                       "in ~/.cache/npu-hil/runner): this is the same build, by hand.")
    b.add_argument("--out", default=str(DEFAULT_OUT), metavar="DIR", help=f"where to put them (default {DEFAULT_OUT})")
    b.add_argument("--arch", action="append", choices=["host", *ARCHES],
                   help="target architecture (repeatable; default host): armhf for RV1109/RV1126 and RV1106, "
                        "aarch64 for RK356x/RK3588/RK1808, with Debian's cross compilers")
    b.add_argument("--cc", metavar="COMPILER", help="C compiler (default: $CC or cc; a board's: its cross gcc)")
    b.add_argument("--abi", action="append", choices=sorted(ABIS), help="build only this ABI (repeatable)")
    b.add_argument("--stub", action="store_true", help="also build the stub runtime library (host tests)")
    b.add_argument("--json", action="store_true", help="print what was built as JSON")
    b.set_defaults(func=_build)
