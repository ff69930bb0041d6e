"""How long a simulated board takes from ``npu-hil sim up`` to every endpoint answering, and adb push/pull speed.

Why: suites start a simulated board per session and CI pays that time on every run; a slow endpoint (adb
reconnect, SSH key exchange, console replay) shows up here before it shows up as flaky suite timeouts. Each
round starts ``npu-hil sim up`` as a subprocess in a fresh simulator home and, from the same wall-clock start,
measures: the CLI returning, the adb CLI seeing ``device``, an SSH exec answering, and ``login:`` on the console
(a newline typed on the pty after ``sim up`` returned). Prints figures; asserts nothing.

    .venv/bin/python bench/bench_sim.py [--rounds 5] [--profiles rv1126 rk3588] [--size-mib 20] [--port 15125]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import paramiko

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import down_all  # noqa: E402

from harness.links.adb_server import AdbServer  # noqa: E402
from harness.links.console import ConsoleLink  # noqa: E402

READY_TIMEOUT = 30.0
ENDPOINTS = ("cli", "adb", "ssh", "console", "all")


class Adb:
    """The Debian adb CLI on our own server (its own port, HOME and TMPDIR)."""

    def __init__(self, port: int, home: Path) -> None:
        self.port, self.server = port, AdbServer(port=port, home=home, usb=False)

    def __call__(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
        return subprocess.run(["adb", "-P", str(self.port), *args], env=self.server.environment(),
                              capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False)

    def state(self, serial: str) -> str | None:
        for line in self("devices", timeout=10).stdout.splitlines()[1:]:
            parts = line.split()
            if len(parts) >= 2 and parts[0] == serial:
                return parts[1]
        return None

    def until_device(self, serial: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while self.state(serial) != "device":
            if time.monotonic() > deadline:
                raise TimeoutError(f"adb: {serial} never reached device")
            try:
                self("connect", serial, timeout=5)
            except subprocess.TimeoutExpired:
                pass


def until_ssh(endpoints: dict) -> None:
    ssh = endpoints["ssh"]
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())  # a loopback board of our own
        try:
            client.connect(ssh["host"], port=ssh["port"], username=ssh["user"], password=ssh["password"],
                           timeout=5, banner_timeout=5, auth_timeout=5, allow_agent=False, look_for_keys=False)
            _, out, _ = client.exec_command("true", timeout=10)
            if out.channel.recv_exit_status() == 0:
                return
        except (OSError, paramiko.SSHException):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
        finally:
            client.close()


def until_console(endpoints: dict, capture: Path) -> None:
    console = endpoints["console"]
    with ConsoleLink(console["path"], baud=console["baud"], capture=capture) as link:
        link.send("\n")
        link.expect(r"login: ?$", timeout=READY_TIMEOUT, not_matching=[])


def one_round(profile: str, adb: Adb, home: Path) -> tuple[dict[str, float], str]:
    """Seconds from starting ``sim up`` to each endpoint answering (and to all of them), and the adb serial."""
    env = dict(os.environ, NPU_HIL_SIM_HOME=str(home))
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "harness", "sim", "up", profile, "--compact"], env=env,
                            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, check=False)
    times = {"cli": time.monotonic() - start}
    if result.returncode != 0:
        raise SystemExit(f"sim up {profile} failed: {result.stderr.strip()}")
    endpoints = json.loads(result.stdout)
    checks: dict[str, Callable[[], None]] = {
        "adb": lambda: adb.until_device(endpoints["adb"]["serial"]),
        "ssh": lambda: until_ssh(endpoints),
        "console": lambda: until_console(endpoints, home / "console.log"),
    }
    errors: list[str] = []

    def timed(name: str, check: Callable[[], None]) -> None:
        try:
            check()
            times[name] = time.monotonic() - start
        except Exception as exc:  # noqa: BLE001 - reported, the bench goes on
            errors.append(f"{name}: {exc}")

    threads = [threading.Thread(target=timed, args=item) for item in checks.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(READY_TIMEOUT + 10)
    times["all"] = max(times.values())
    if errors:
        print(f"  {profile}: " + "; ".join(errors))
    return times, endpoints["adb"]["serial"]


def transfer(adb: Adb, serial: str, work: Path, size_mib: int, rounds: int) -> tuple[list[float], list[float]]:
    """MiB/s of ``adb push`` and ``adb pull`` of ``size_mib`` MiB, checked by sha256 on the board and back."""
    data = os.urandom(size_mib * 1024 * 1024)
    local, back = work / "push.bin", work / "pull.bin"
    local.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    pushes, pulls = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        result = adb("-s", serial, "push", str(local), "/userdata/bench.bin")
        pushes.append(size_mib / (time.perf_counter() - start))
        if result.returncode != 0:
            raise SystemExit(f"adb push failed: {result.stderr.strip()}")
        if adb("-s", serial, "shell", "sha256sum /userdata/bench.bin").stdout.split()[:1] != [digest]:
            raise SystemExit("adb push: the board's sha256 differs")
        start = time.perf_counter()
        result = adb("-s", serial, "pull", "/userdata/bench.bin", str(back))
        pulls.append(size_mib / (time.perf_counter() - start))
        if result.returncode != 0 or hashlib.sha256(back.read_bytes()).hexdigest() != digest:
            raise SystemExit(f"adb pull failed or differs: {result.stderr.strip()}")
    adb("-s", serial, "shell", "rm -f /userdata/bench.bin")
    return pushes, pulls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profiles", nargs="+", default=["rv1126", "rk3588"])
    parser.add_argument("--size-mib", type=int, default=20)
    parser.add_argument("--port", type=int, default=15125, help="our adb server's port (not 5037)")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-sim-") as tmp_name:
        work = Path(tmp_name)
        adb = Adb(opts.port, work / "adb")
        adb.server.start(timeout=15)
        homes: list[Path] = []
        try:
            print(f"sim up -> ready (s), median of {opts.rounds} (min-max); adb server pid {adb.server.pid}")
            print(f"  {'profile':8} " + " ".join(f"{name:>17}" for name in ENDPOINTS))
            for profile in opts.profiles:
                rounds = []
                for _ in range(opts.rounds):
                    homes.append(Path(tempfile.mkdtemp(prefix="home-", dir=work)))
                    times, serial = one_round(profile, adb, homes[-1])
                    rounds.append(times)
                    if profile == opts.profiles[0] and len(rounds) == opts.rounds:
                        pushes, pulls = transfer(adb, serial, work, opts.size_mib, 3)
                    adb("disconnect", serial, timeout=10)
                    down_all(homes[-1])
                cells = []
                for name in ENDPOINTS:
                    values = [r[name] for r in rounds if name in r]
                    cells.append(f"{statistics.median(values):6.2f} ({min(values):.2f}-{max(values):.2f})"
                                 if values else "             n/a")
                print(f"  {profile:8} " + " ".join(f"{c:>17}" for c in cells))
            print(f"adb push {opts.size_mib} MiB: median {statistics.median(pushes):6.0f} MiB/s "
                  f"({', '.join(f'{v:.0f}' for v in pushes)})")
            print(f"adb pull {opts.size_mib} MiB: median {statistics.median(pulls):6.0f} MiB/s "
                  f"({', '.join(f'{v:.0f}' for v in pulls)})")
        finally:
            for home in homes:
                down_all(home)
            adb("kill-server", timeout=10)
            adb.server.stop()


if __name__ == "__main__":
    main()
