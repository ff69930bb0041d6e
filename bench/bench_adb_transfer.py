"""Push and pull throughput of the simulated board's adbd through the real ``adb`` CLI (prints, asserts nothing).

Why: adb-notes.md measured ~500 MB/s for ``adb push`` to a loopback device; this shows what our device side
costs on top, so a slow transfer in a suite can be told apart from a slow simulator.

    .venv/bin/python bench/bench_adb_transfer.py [--size-mib 20] [--rounds 5] [--port 15109]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from filelock import FileLock, Timeout

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.sim import profile, rootfs  # noqa: E402
from harness.sim.adbd import AdbDaemon  # noqa: E402
from harness.sim.context import BoardContext  # noqa: E402
from harness.sim.faults import FaultSet  # noqa: E402


def adb(port: int, env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    result = subprocess.run(["adb", "-P", str(port), *args], env=env, capture_output=True, text=True,
                            timeout=timeout, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise SystemExit(f"adb {' '.join(args)} failed: {result.stdout}{result.stderr}")
    return result


def timed(port: int, env: dict[str, str], *args: str) -> float:
    start = time.perf_counter()
    adb(port, env, *args)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--port", type=int, default=15109, help="the adb server's own port (not 5037)")
    opts = parser.parse_args()
    # Same lock file as tests/sim/test_adbd.py, so a concurrent test run never shares (or kills) this server.
    lock = FileLock(Path(tempfile.gettempdir()) / f"npu-hil-adb-{opts.port}.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise SystemExit(f"port {opts.port} is in use by another npu-hil run; pass --port") from None
    with lock:
        run(opts)


def run(opts: argparse.Namespace) -> None:
    probe = socket.socket()
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as adb's own listener: TIME_WAIT is no owner
    try:
        probe.bind(("127.0.0.1", opts.port))
    except OSError:
        raise SystemExit(f"port {opts.port} is taken (an adb server already there?); pass --port") from None
    finally:
        probe.close()
    with tempfile.TemporaryDirectory(prefix="bench-adb-") as tmp_name:
        tmp = Path(tmp_name)
        prof = profile.load("rv1126")
        root = rootfs.build(tmp / "root", prof)
        ctx = BoardContext(name="bench", profile=prof, root=root, state_dir=tmp, faults=FaultSet(tmp))
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        daemon = AdbDaemon(ctx, listener)
        serial = "127.0.0.1:%d" % listener.getsockname()[1]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tmp_name, "TMPDIR": tmp_name,
               "ADB_MDNS": "0", "ADB_USB": "0", "ADB_EMU": "0"}
        data = os.urandom(opts.size_mib << 20)
        local, back = tmp / "local.bin", tmp / "back.bin"
        local.write_bytes(data)
        daemon.start()
        adb(opts.port, env, "start-server")
        try:
            adb(opts.port, env, "connect", serial)
            adb(opts.port, env, "-s", serial, "wait-for-device", timeout=30)
            push, pull = [], []
            for _ in range(opts.rounds):
                push.append(timed(opts.port, env, "-s", serial, "push", str(local), "/userdata/bench.bin"))
                pull.append(timed(opts.port, env, "-s", serial, "pull", "/userdata/bench.bin", str(back)))
                if hashlib.sha256(back.read_bytes()).digest() != hashlib.sha256(data).digest():
                    raise SystemExit("pulled file differs from the pushed one")
                back.unlink()
        finally:
            subprocess.run(["adb", "-P", str(opts.port), "kill-server"], env=env, timeout=30, capture_output=True)
            daemon.stop()
    mib = opts.size_mib
    for name, times in (("push", push), ("pull", pull)):
        rates = [mib / t for t in times]
        print(f"adb {name} {mib} MiB x{opts.rounds}: median {statistics.median(rates):.0f} MiB/s "
              f"(min {min(rates):.0f}, max {max(rates):.0f}); median {statistics.median(times) * 1000:.0f} ms "
              "including the CLI's start")


if __name__ == "__main__":
    main()
