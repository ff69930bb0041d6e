"""``npu-hil lab``: a labgrid lab on this host's loopback -- coordinator, exporter, adb server, simulated boards.

Why a command: trying the harness's remote places (or developing against them) should not need a rack. ``lab up``
starts a whole stand whose boards are simulated and prints the commands to use it; ``lab down`` stops it.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from harness.sim import state as sim_state
from harness.sim.profile import known_profiles

DEFAULT_PORT = 20408  # labgrid's own default coordinator port

EPILOG = """examples:
  npu-hil lab up --boards 2                       rv1126-01 and rk3588-02 as places on 127.0.0.1:20408
  npu-hil lab up --boards 4 --profile rk3588      four RK3588 places, rk3588-01 .. rk3588-04
  npu-hil lab up --boards 3 --profile rv1126 --profile rk3566 --port 20500 --dir /tmp/mylab
  npu-hil lab status                              places, who holds them, whether console/ssh/adb are exported
  npu-hil lab down                                stop everything the stand started (by PID)

what runs (all on 127.0.0.1; logs in DIR/logs/, PIDs and ports in DIR/stand.json):
  labgrid-coordinator --listen 127.0.0.1:PORT     (cwd DIR: its places.yaml and resources.yaml live there)
  one simulated board per place, named like the place (npu-hil sim list shows them)
  one adb server (adb -P ADB_PORT nodaemon server, HOME=DIR/adb-home) connected to every board
  labgrid-exporter -n lab-host-a DIR/exporter.yaml; each place's group exports
      console  RawSerialPort -> clients see a NetworkSerialPort (ser2net runs while the place is acquired)
      ssh      NetworkService 127.0.0.1:PORT root + password
      adb      NetworkService: address/port = the adb server, username = the device serial
  places tagged soc=<chip> npu=<rknpu1|rknpu2> board=<place>; DIR/boards.toml names them all

The stand's processes outlive this command. DIR defaults to $NPU_HIL_LAB_DIR, else <simulator home>/lab
(the simulator home is $NPU_HIL_SIM_HOME or ~/.cache/npu-hil/sim).
"""


def default_dir() -> Path:
    return Path(os.environ.get("NPU_HIL_LAB_DIR") or sim_state.home() / "lab")


def _dir(args: argparse.Namespace) -> Path:
    return Path(args.dir).expanduser() if args.dir else default_dir()


def _up(args: argparse.Namespace) -> int:
    from harness.lab.labgrid.stand import lab_up  # lazy: keeps `npu-hil --help` fast

    stand = lab_up(args.boards, lab_dir=_dir(args), coordinator_port=args.port,
                   profiles=tuple(args.profile or ("rv1126", "rk3588")), timeout=args.timeout,
                   adb_port=args.adb_port)
    print(f"coordinator  {stand.coordinator}")
    print(f"exporter     {stand.exporter} (adb server {stand.adb_server})")
    print(f"places       {' '.join(stand.places)}")
    print(f"boards file  {stand.boards_file}")
    print("\nnext:")
    print(f"  LG_COORDINATOR={stand.coordinator} labgrid-client places")
    print(f"  pytest --boards-file {stand.boards_file} --board-tag lab -n auto suites/")
    print(f"  npu-hil lab down --dir {stand.lab_dir}")
    return 0


def _down(args: argparse.Namespace) -> int:
    from harness.lab.labgrid.stand import lab_down
    from harness.lab.labgrid.stand_files import read_state

    lab_dir = _dir(args)
    if read_state(lab_dir) is None:
        print(f"no lab stand in {lab_dir}")
        return 0
    lab_down(lab_dir, timeout=args.timeout)
    print(f"lab stand in {lab_dir} stopped")
    return 0


def _status(args: argparse.Namespace) -> int:
    from harness.lab.labgrid.stand_status import stand_status

    status = stand_status(_dir(args))
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    print(f"coordinator {status['coordinator']}  exporter {status['exporter']}  adb server {status['adb_server']}")
    for name, proc in status["processes"].items():
        print(f"  {name:22} pid {proc['pid']:<8} {'running' if proc['alive'] else 'GONE'}")
    if status["error"]:
        print(f"coordinator does not answer: {status['error']}")
        return 1
    for name, place in status["places"].items():
        if not place["exists"]:
            print(f"{name:16} MISSING at the coordinator")
            continue
        tags = " ".join(f"{k}={v}" for k, v in sorted(place["tags"].items()))
        res = " ".join(f"{r}:{'ok' if ok else 'unavailable'}" for r, ok in place["resources"].items())
        print(f"{name:16} {('acquired by ' + place['acquired']) if place['acquired'] else 'free':28} {res}  {tags}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    lab = sub.add_parser("lab", help="a labgrid lab of simulated boards on this host: up, status, down",
                         description="A labgrid lab on 127.0.0.1: coordinator, exporter (ser2net consoles), one adb "
                                     "server and simulated boards exported as tagged places.",
                         epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    cmds = lab.add_subparsers(dest="lab_command", metavar="ACTION", required=True)
    dir_help = "the stand's folder (default: $NPU_HIL_LAB_DIR or <simulator home>/lab)"

    p = cmds.add_parser("up", help="start a stand of N simulated boards as places and print how to use it",
                        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--boards", type=int, required=True, metavar="N", help="number of places/boards")
    p.add_argument("--profile", action="append", metavar="PROFILE",
                   help=f"board profile, repeatable; place i uses the (i-1) mod count-th "
                        f"(default: rv1126 then rk3588; known: {', '.join(known_profiles())})")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"coordinator port (default {DEFAULT_PORT})")
    p.add_argument("--adb-port", type=int, metavar="PORT",
                   help="port of the lab host's adb server (default: a free one)")
    p.add_argument("--dir", help=dir_help)
    p.add_argument("--timeout", type=float, default=90.0, help="seconds for the whole start-up (default 90)")
    p.set_defaults(func=_up)

    p = cmds.add_parser("down", help="stop every process of the stand by its recorded PID")
    p.add_argument("--dir", help=dir_help)
    p.add_argument("--timeout", type=float, default=20.0, help="seconds to wait for processes to stop (default 20)")
    p.set_defaults(func=_down)

    p = cmds.add_parser("status", help="the stand's processes, places, holders and exported resources")
    p.add_argument("--dir", help=dir_help)
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    p.set_defaults(func=_status)
