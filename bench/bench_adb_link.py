"""Bench: AdbLink against the adb CLI and plain adbutils, on one simulated device behind one real adb server.

Why: AdbLink writes its own sync frames (64 KiB) because adbutils' 4 KiB frames made pushes ~2.3x slower than
the CLI (reference/adb-notes.md), and it reads shell v2 itself to get a hard deadline. This shows what those
choices cost or gain: push MB/s for 20 MiB (best of 3) and the shell round trip (median of 50). Figures only,
no assertions; the machine is shared, so compare the columns of one run, not runs with each other.

Run: .venv/bin/python bench/bench_adb_link.py [--port 15119] [--mib 20]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import tempfile
from pathlib import Path

from _common import best_seconds, median_ms

from harness.links.adb import AdbLink
from harness.links.adb_server import AdbServer
from harness.sim import profile, rootfs
from harness.sim.adbd import AdbDaemon
from harness.sim.context import BoardContext
from harness.sim.faults import FaultSet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=15119, help="adb server port (default 15119)")
    parser.add_argument("--mib", type=int, default=20, help="file size for the push figures")
    parser.add_argument("--shell-runs", type=int, default=50)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-adb-") as tmp_name:
        tmp = Path(tmp_name)
        prof = profile.load("rv1126")
        root = rootfs.build(tmp / "root", prof)
        (tmp / "state").mkdir()
        ctx = BoardContext(name="bench", profile=prof, root=root, state_dir=tmp / "state",
                           faults=FaultSet(tmp / "state"))
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        daemon = AdbDaemon(ctx, listener)
        daemon.start()
        server = AdbServer(port=args.port, home=tmp / "adb-home", usb=False)
        try:
            server.start()
            serial = "127.0.0.1:%d" % daemon.address[1]
            link = AdbLink(server=server, serial=serial, address=serial, op_timeout=60)
            link.connect(timeout=10)
            device = server.client(socket_timeout=60).device(serial)
            data = tmp / "payload.bin"
            data.write_bytes(os.urandom(args.mib * 1024 * 1024))
            size_mb = data.stat().st_size / 1e6
            cli = [str(server.adb), "-P", str(server.port), "-s", serial, "push", str(data), "/tmp/cli.bin"]
            pushes = {
                "AdbLink.push (64 KiB frames, no verify)":
                    lambda: link.push(data, "/tmp/link.bin", verify=False, progress=False),
                "AdbLink.push (+ sha256 on the board)":
                    lambda: link.push(data, "/tmp/link.bin", verify=True, progress=False),
                "adb push (CLI)":
                    lambda: subprocess.run(cli, env=server.environment(), check=True, timeout=120,
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
                "adbutils sync.push (4 KiB frames)":
                    lambda: device.sync.push(data, "/tmp/adbutils.bin"),
            }
            print(f"push {args.mib} MiB to a simulated device (best of 3):")
            for label, action in pushes.items():
                seconds = best_seconds(action, 3)
                print(f"  {label:42s} {size_mb / seconds:8.1f} MB/s  ({seconds * 1000:.0f} ms)")
            shells = {
                "AdbLink.shell('true')": lambda: link.shell("true", timeout=10),
                "adbutils shell2('true', v2=True)": lambda: device.shell2("true", timeout=10, v2=True),
            }
            print(f"shell round trip (median of {args.shell_runs}):")
            for label, action in shells.items():
                print(f"  {label:42s} {median_ms(action, args.shell_runs):8.1f} ms")
            link.close()
        finally:
            server.stop()
            daemon.stop()


if __name__ == "__main__":
    main()
