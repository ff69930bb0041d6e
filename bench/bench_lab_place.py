"""How fast a labgrid place becomes a board: pre-flight, acquire + resolve, and how soon a waiter notices a release.

Stands up a real lab (coordinator, exporter, ser2net, adb server, 2 simulated boards) in a temp folder, then:

* ``check``: PlaceLock.check() (coordinator, place, resources, service probes);
* ``acquire+resolve``: PlaceLock.acquire(0) + resolve_links() on a free place (release not counted);
* ``notice``: another process holds the place; this one waits in acquire(wait=60); the holder releases and
  prints the wall-clock time its release returned (t0); the waiter's acquire returns at t1: t1 - t0.

    .venv/bin/python bench/bench_lab_place.py --rounds 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _common import release_notice_seconds, timed

from harness.config.loader import load_inventory
from harness.lab.labgrid.place import PlaceLock, resolve_links
from harness.lab.labgrid.stand import lab_down, lab_up
from harness.links.ports import port_in_use

ADB_PORTS = range(15190, 15200)  # helper P's adb server ports
HOLDER = textwrap.dedent("""
    import sys, time
    from harness.config.loader import load_inventory
    from harness.lab.labgrid.place import PlaceLock
    inv = load_inventory(sys.argv[1])
    lock = PlaceLock(inv.get(sys.argv[2]), inv)
    lock.acquire(30)
    print("held", flush=True)
    sys.stdin.readline()
    lock.release()
    print(f"released {time.time()!r}", flush=True)
""")


def free_port(ports: range) -> int:
    """The first port of ``ports`` nobody listens on."""
    port = next((p for p in ports if not port_in_use("127.0.0.1", p)), None)
    if port is None:
        raise SystemExit(f"no free port in {ports.start}-{ports.stop - 1}")
    return port


def notice_once(boards_file: Path, place: str, inv) -> float:
    waiter = PlaceLock(inv.get(place), inv)
    return release_notice_seconds([sys.executable, "-c", HOLDER, str(boards_file), place], REPO,
                                  lambda: waiter.acquire(wait=60), waiter.release, settle=2.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-place-") as tmp:
        root = Path(tmp)
        os.environ["NPU_HIL_SIM_HOME"] = str(root / "simhome")
        os.environ.pop("LG_COORDINATOR", None)
        started = time.perf_counter()
        stand = lab_up(2, lab_dir=root / "lab", adb_port=free_port(ADB_PORTS))
        print(f"lab up (2 boards): {time.perf_counter() - started:.2f} s")
        try:
            inv = load_inventory(stand.boards_file)
            spec = inv.get("rv1126-01")
            checks, acquires, notices = [], [], []
            for _ in range(args.rounds):
                lock = PlaceLock(spec, inv)
                checks.append(timed(lock.check))
                acquires.append(timed(lambda lock=lock: (lock.acquire(0), resolve_links(spec, inv, root))))
                lock.release()
                notices.append(notice_once(stand.boards_file, "rk3588-02", inv))
            for label, values in (("check", checks), ("acquire+resolve", acquires), ("notice release", notices)):
                print(f"{label:16s} median {statistics.median(values):.3f} s  min {min(values):.3f}  "
                      f"max {max(values):.3f}  ({len(values)} rounds)")
        finally:
            lab_down(stand.lab_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
