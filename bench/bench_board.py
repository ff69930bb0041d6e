"""What the Board facade costs over the raw tools, on one simulated RV1126 (prints figures, asserts nothing).

Why: a suite talks to boards only through ``Board``; these figures say whether it can be the reason a run is
slow. (1) a 20 MiB push: ``Board.push`` (adb link, sha256 verified on the board) vs the ``adb push`` CLI vs
adbutils' ``sync.push``, all on the same device and the same adb server; (2) after ``adb reboot``, the time
from the board's adb TCP endpoint accepting again to ``Board.wait_ready`` returning (target < 1 s); (3) the
round trip of ``board.shell("true")`` vs raw adbutils ``shell2(v2=True)`` (medians of 50, target within 1.1x).

    .venv/bin/python bench/bench_board.py [--size-mib 20] [--rounds 5] [--reboots 3] [--shells 50] [--port 15131]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import timed  # noqa: E402

from harness.board import Board  # noqa: E402
from harness.config.loader import Inventory  # noqa: E402
from harness.connect import open_board  # noqa: E402
from harness.links.adb_server import AdbServer  # noqa: E402
from harness.sim import api  # noqa: E402

BOARD = "sim-rv1126"
REMOTE = "/userdata/bench-board.bin"


def summary(label: str, times: list[float], mib: float | None = None) -> str:
    med = statistics.median(times)
    rate = f", {mib / med:6.0f} MiB/s" if mib else ""
    return f"  {label:42} median {med * 1000:8.2f} ms (min {min(times) * 1000:.2f}, max {max(times) * 1000:.2f}){rate}"


def bench_push(board: Board, server: AdbServer, local: Path, mib: int, rounds: int) -> None:
    serial = board.adb.serial
    device = server.client(socket_timeout=120).device(serial)
    env = server.environment()

    def cli_push() -> None:
        subprocess.run(["adb", "-P", str(server.port), "-s", serial, "push", str(local), REMOTE], env=env,
                       check=True, capture_output=True, timeout=120, stdin=subprocess.DEVNULL)

    contenders = {
        "Board.push (adb link, sha256 verified)": lambda: board.push(local, REMOTE, timeout=120),
        "AdbLink.push (verify=False)": lambda: board.adb.push(local, REMOTE, timeout=120, verify=False),
        "adb push (CLI, process start included)": cli_push,
        "adbutils sync.push": lambda: device.sync.push(str(local), REMOTE),
    }
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):  # interleaved, so a busy moment of the host hits every contender alike
        for name, call in contenders.items():
            times[name].append(timed(call))
    print(f"(1) push of {mib} MiB to {REMOTE}, {rounds} rounds")
    for name, values in times.items():
        print(summary(name, values, mib))
    board.shell(f"rm -f {REMOTE}", check=True)


def port_accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def bench_reboot(board: Board, server: AdbServer, reboots: int) -> None:
    serial = board.adb.serial
    host, _, port = serial.rpartition(":")
    print(f"(2) `adb reboot`, then from the adb endpoint {serial} accepting again to Board.wait_ready returning")
    after: list[float] = []
    for n in range(reboots):
        board.shell("echo before > /tmp/bench-reboot-marker", check=True)
        asked = time.monotonic()
        subprocess.run(["adb", "-P", str(server.port), "-s", serial, "reboot"], env=server.environment(),
                       check=True, capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
        deadline = asked + 120
        while port_accepts(host, int(port)) and time.monotonic() < deadline:
            time.sleep(0.005)
        down = time.monotonic()
        while not port_accepts(host, int(port)) and time.monotonic() < deadline:
            time.sleep(0.005)
        back = time.monotonic()
        board.wait_ready(timeout=120)
        ready = time.monotonic()
        marker = board.shell("cat /tmp/bench-reboot-marker 2>/dev/null || echo gone").stdout.strip()
        after.append(ready - back)
        print(f"  reboot {n + 1}: endpoint gone after {down - asked:.3f} s, back after {back - asked:.3f} s, "
              f"wait_ready returned {ready - back:.3f} s later (rebooted: {marker == 'gone'})")
    print(f"  median endpoint-back -> ready: {statistics.median(after):.3f} s (target < 1 s)")


def bench_shell(board: Board, server: AdbServer, count: int) -> None:
    device = server.client(socket_timeout=30).device(board.adb.serial)
    contenders = {
        'board.shell("true")': lambda: board.shell("true"),
        'AdbLink.shell("true")': lambda: board.adb.shell("true", timeout=30),
        'adbutils shell2("true", v2=True)': lambda: device.shell2("true", timeout=30, v2=True),
    }
    for call in contenders.values():  # warm up: the first call asks adbd's features, imports, etc.
        call()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(count):
        for name, call in contenders.items():
            times[name].append(timed(call))
    board.history.clear()
    print(f"(3) shell round trip, {count} calls each (interleaved)")
    for name, values in times.items():
        print(summary(name, values))
    ratio = statistics.median(times['board.shell("true")']) / statistics.median(
        times['adbutils shell2("true", v2=True)'])
    print(f"  board.shell / adbutils shell2: {ratio:.2f}x (target within 1.1x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--reboots", type=int, default=3)
    parser.add_argument("--shells", type=int, default=50)
    parser.add_argument("--port", type=int, default=15131, help="this bench's own adb server port (not 5037)")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-board-") as tmp_name:
        tmp = Path(tmp_name)
        os.environ["NPU_HIL_SIM_HOME"] = str(tmp / "sim")  # a board of its own, never one a test run uses
        server = AdbServer(port=opts.port, home=tmp / "adb").start()
        board = None
        try:
            inventory = Inventory(path=None)
            started = time.monotonic()
            board = open_board(inventory.get(BOARD), inventory, run_dir=tmp / "run", adb_server=server)
            print(f"{board!r} opened (simulator booted, every link checked) in {time.monotonic() - started:.2f} s")
            local = tmp / "payload.bin"
            local.write_bytes(os.urandom(opts.size_mib << 20))
            bench_push(board, server, local, opts.size_mib, opts.rounds)
            bench_shell(board, server, opts.shells)
            bench_reboot(board, server, opts.reboots)
        finally:
            if board is not None:
                board.close()
            api.down(BOARD)
            server.stop()


if __name__ == "__main__":
    main()
