"""``npu-hil sim``: start, stop and steer simulated boards (the embedded default when no board is at hand)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from harness.config.loader import SIM_PREFIX
from harness.sim import api, state
from harness.sim.faults import KINDS
from harness.sim.profile import known_profiles

EPILOG = """examples:
  npu-hil sim up rv1126                          start sim-rv1126 (the board `pytest --board sim-rv1126` reuses)
  npu-hil sim up rk3588 --name lab-3588 --fault slow-npu=4
  npu-hil sim up rv1126 --version rknn_server=1.6.0   a board whose rknn_server is from another release
  npu-hil sim fault rv1126 npu-hang              inject a fault into a running board (--clear to remove)
  npu-hil sim power rv1126 cycle                 power-cycle it (addresses stay the same)
  npu-hil sim down rv1126                        stop it; its /userdata is kept for the next `up`
  npu-hil sim image rv1126 --rk-version V2 -o update.img   an image it flashes (pytest --firmware update.img)

faults:
""" + "\n".join(f"  {k.name + ('=' + k.default if k.default else ''):24} {k.help}" for k in KINDS.values())


def _versions(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not value:
            raise api.SimError(f"--version takes COMPONENT=VERSION (components: {', '.join(api.COMPONENTS)}), "
                               f"got {pair!r}")
        out[key] = value
    return out


def profile_and_name(profile: str, name: str | None) -> tuple[str, str | None]:
    """``rv1126`` and ``sim-rv1126`` both mean the rv1126 profile on the board named ``sim-rv1126``: the name
    ``pytest --board sim-rv1126`` attaches to, so faults injected by hand reach the run. A profile given as a
    TOML path keeps the profile's own name; ``--name`` always wins."""
    bare = profile.removeprefix(SIM_PREFIX)
    if bare in known_profiles():
        return bare, name or SIM_PREFIX + bare
    return profile, name


def board_name(name: str) -> str:
    """A running board's name as typed, or ``sim-NAME`` when only that one exists (``sim fault rv1126 ...``)."""
    try:
        if not (state.board_dir(name) / "config.json").exists() and \
                (state.board_dir(SIM_PREFIX + name) / "config.json").exists():
            return SIM_PREFIX + name
    except ValueError:
        pass  # an invalid name: the command itself says so
    return name


def _up(args: argparse.Namespace) -> int:
    profile, name = profile_and_name(args.profile, args.name)
    endpoints = api.up(profile, name=name, faults=args.fault, versions=_versions(args.version),
                       timeout=args.timeout, fresh=args.fresh)
    print(json.dumps(endpoints, indent=None if args.compact else 2))
    return 0


def _image(args: argparse.Namespace) -> int:
    """An update.img the simulated board of PROFILE flashes: its chip, RK_VERSION and component versions (the
    profile's, with --version overrides). Made by the harness's RKFW writer, read on the board by its own
    updater, so a lab can try the whole flashing flow (``pytest --firmware``) without a bench."""
    from harness.firmware.rkfw import build_update_image
    from harness.sim.profile import UnknownProfile
    from harness.sim.profile import load as load_profile

    profile, _ = profile_and_name(args.profile, None)
    try:
        prof = load_profile(profile).with_versions(_versions(args.version))
    except (UnknownProfile, ValueError) as exc:
        raise api.SimError(str(exc)) from None
    output = Path(args.output)
    if not output.parent.is_dir():
        raise api.SimError(f"-o {output}: folder {output.parent} does not exist")
    path = build_update_image(output, chip=prof.chip, rk_version=args.rk_version,
                              versions=prof.versions.model_dump())
    print(path)
    return 0


def _down(args: argparse.Namespace) -> int:
    if not api.down(board_name(args.name)):
        raise api.SimError(f"no simulated board named {args.name!r} is running")
    return 0


def _list(args: argparse.Namespace) -> int:
    boards = api.list_boards()
    if args.json:
        print(json.dumps(boards, indent=2))
        return 0
    if not boards:
        print("no simulated boards (start one with `npu-hil sim up rv1126`)")
    for board in boards:
        ep = board["endpoints"] or {}
        where = (f"adb {ep['adb']['serial']}  ssh {ep['ssh']['host']}:{ep['ssh']['port']}  "
                 f"console {ep['console']['path']}") if ep else ""
        print(f"{board['name']:16} {board['profile']:8} {board['state']:9} {where}")
    return 0


def _fault(args: argparse.Namespace) -> int:
    spec = args.fault or (args.clear if isinstance(args.clear, str) else "")
    if not spec and not args.clear:
        raise api.SimError("name a fault to inject, or --clear [FAULT] (see `npu-hil sim fault --help`)")
    print(json.dumps(api.fault(board_name(args.name), spec, clear=bool(args.clear))))
    return 0


def _power(args: argparse.Namespace) -> int:
    print(api.power(board_name(args.name), args.action))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    sim = sub.add_parser("sim", help="simulated boards: up, down, list, fault, power, image",
                         description="Simulated Rockchip NPU boards reached through real protocols: a console pty, "
                                     "an adb device endpoint for the real adb server, an SSH server.",
                         epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    cmds = sim.add_subparsers(dest="sim_command", metavar="ACTION", required=True)

    p = cmds.add_parser("up", help="start a board in the background and print its endpoints (JSON)",
                        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("profile", help=f"board profile: {', '.join(known_profiles())} (or sim-PROFILE), or a path to a "
                                   f"profile TOML")
    p.add_argument("--name", help="board name (default: sim-PROFILE, the board `pytest --board sim-PROFILE` "
                                  "reuses); names must be unique")
    p.add_argument("--fault", action="append", default=[], metavar="FAULT", help="inject a fault at start (repeatable)")
    p.add_argument("--version", action="append", default=[], metavar="COMPONENT=VERSION",
                   help="override a component version: rknn_server, driver or runtime (repeatable)")
    p.add_argument("--timeout", type=float, default=20.0, help="seconds to wait for the boot (default 20)")
    p.add_argument("--fresh", action="store_true", help="wipe a previous board of this name, /userdata included")
    p.add_argument("--compact", action="store_true", help="print the JSON on one line")
    p.set_defaults(func=_up)

    p = cmds.add_parser("image", help="write an update.img a simulated board accepts (try --firmware with it)",
                        epilog="example:\n  npu-hil sim image rv1126 --rk-version RV1126_V2.0 --version "
                               "rknn_server=1.7.1 -o update.img\n  pytest --board sim-rv1126 --firmware update.img "
                               "suites/", formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("profile", help=f"board profile: {', '.join(known_profiles())} (or sim-PROFILE)")
    p.add_argument("--rk-version", required=True, metavar="V", help="the image's RK_VERSION (/etc/version after "
                                                                    "the flash)")
    p.add_argument("--version", action="append", default=[], metavar="COMPONENT=VERSION",
                   help="a component version the image installs: rknn_server, driver or runtime (repeatable; "
                        "default: the profile's)")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="where to write the image")
    p.set_defaults(func=_image)

    p = cmds.add_parser("down", help="stop a board and every process it runs")
    p.add_argument("name")
    p.set_defaults(func=_down)

    p = cmds.add_parser("list", help="list simulated boards")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_list)

    p = cmds.add_parser("fault", help="inject a fault into a running board, or --clear it",
                        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name")
    p.add_argument("fault", nargs="?", help="FAULT[=VALUE]; with --clear and no FAULT, clears all")
    p.add_argument("--clear", nargs="?", const=True, default=False, metavar="FAULT",
                   help="remove FAULT (or every fault) instead of adding it")
    p.set_defaults(func=_fault)

    p = cmds.add_parser("power", help="power a board on, off, or cycle it")
    p.add_argument("name")
    p.add_argument("action", choices=("on", "off", "cycle"))
    p.set_defaults(func=_power)
