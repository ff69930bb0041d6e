"""What N boards in parallel cost on one host: one board alone vs N simulated boards under ``-n N`` (prints figures,
asserts nothing).

Why: a lab sizes its runner hosts by this. Writes a temporary boards.toml with N simulated boards (sim-lab-01..,
profiles alternating rv1126/rk3588, tag ``bench``), then times ``pytest suites/test_connectivity.py
suites/test_versions.py`` on sim-lab-01 alone and on all N with ``-n N`` (one worker per board). Reports the wall
times, their ratio (1.0 = perfect parallelism; with fewer cores than boards expect about N / cores), and the CPU
seconds the simulators used: their processes are found by session (each supervisor starts its own session) and
sampled from /proc every 0.2 s; children a supervisor reaped count through its cutime/cstime.

    .venv/bin/python bench/bench_lab_parallel.py [--boards 4] [--rounds 1] [--keep]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SUITES = ["suites/test_connectivity.py", "suites/test_versions.py"]
PROFILES = ("rv1126", "rk3588")
CLK_TCK = os.sysconf("SC_CLK_TCK")
SAMPLE_S = 0.2


def boards_toml(count: int) -> str:
    lines = ['[defaults]', 'toolkit = { rknpu1 = "1.7.1", rknpu2 = "2.3.2" }', '']
    for i in range(1, count + 1):
        profile = PROFILES[(i - 1) % len(PROFILES)]
        lines += [f"[boards.sim-lab-{i:02d}]", f'chip = "{profile}"', f'sim = {{ profile = "{profile}" }}',
                  'tags = ["bench"]', '']
    return "\n".join(lines)


@dataclass
class SimCpu:
    """CPU ticks of simulator processes: every process in a session led by a supervisor of ``home``."""

    home: str
    supervisors: set[int] = field(default_factory=set)
    classified: set[int] = field(default_factory=set)
    last: dict[int, tuple[int, int, int]] = field(default_factory=dict)  # pid -> (ppid, own ticks, child ticks)
    reaped: set[int] = field(default_factory=set)  # gone while their tracked parent lived: in its cutime

    def sample(self) -> None:
        stats: dict[int, list[str]] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            pid = int(entry)
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                if pid not in self.classified:
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
                    self.classified.add(pid)
                    if b"harness.sim.supervisor" in cmd and self.home.encode() in cmd:
                        self.supervisors.add(pid)
            except OSError:
                continue
            stats[pid] = fields
        for pid, f in stats.items():  # f: 0 state, 1 ppid, 2 pgrp, 3 session, 11 utime, 12 stime, 13/14 children
            if pid in self.supervisors or int(f[3]) in self.supervisors:
                self.last[pid] = (int(f[1]), int(f[11]) + int(f[12]), int(f[13]) + int(f[14]))
        for pid, (ppid, _, _) in self.last.items():
            if pid not in stats and ppid in stats and ppid in self.last:
                self.reaped.add(pid)

    def seconds(self) -> float:
        ticks = sum(own + children for _, own, children in self.last.values())
        ticks -= sum(self.last[pid][1] + self.last[pid][2] for pid in self.reaped)
        return ticks / CLK_TCK


def run_pytest(args: list[str], env: dict[str, str], sim_home: Path) -> tuple[float, float, int, str, float]:
    """Wall seconds, simulator CPU seconds, exit code, the last line of one pytest run, and the CPU seconds of
    pytest and its workers (children's rusage: every process pytest waited for)."""
    cpu = SimCpu(str(sim_home))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 1800
    while proc.poll() is None and time.monotonic() < deadline:
        cpu.sample()
        time.sleep(SAMPLE_S)
    if proc.poll() is None:
        proc.kill()
    out, _ = proc.communicate()
    wall = time.perf_counter() - start
    cpu.sample()
    tail = [line for line in out.splitlines() if line.strip()][-1:] or [""]
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    harness_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu.seconds(), proc.returncode, tail[0], harness_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boards", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (reports, sim logs)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-lab-parallel-"))
    try:
        (work / "boards.toml").write_text(boards_toml(args.boards))
        env = dict(os.environ, NPU_HIL_SIM_HOME=str(work / "sim"), NPU_HIL_LOCK_DIR=str(work / "locks"))
        common = ["--boards-file", str(work / "boards.toml"), "--reports-dir", str(work / "reports"), *SUITES]
        print(f"{args.boards} simulated boards on {os.cpu_count()} CPUs; suites: {' '.join(SUITES)}")
        for rnd in range(1, args.rounds + 1):
            one = run_pytest(["--board", "sim-lab-01", *common], env, work / "sim")
            many = run_pytest(["--board-tag", "bench", "-n", str(args.boards), *common], env, work / "sim")
            for label, (wall, cpu, code, tail, own) in (("1 board", one),
                                                        (f"{args.boards} boards -n {args.boards}", many)):
                print(f"round {rnd}: {label:>20}: wall {wall:7.1f} s, simulator CPU {cpu:7.1f} s, pytest+workers "
                      f"CPU {own:7.1f} s, exit {code} ({tail})")
            ratio = many[0] / one[0]
            print(f"round {rnd}: wall ratio {args.boards} boards / 1 board = {ratio:.2f} "
                  f"(serial would be {args.boards}.00; per board {many[0] / args.boards:.1f} s vs {one[0]:.1f} s); "
                  f"simulator CPU per board {many[1] / args.boards:.1f} s vs {one[1]:.1f} s")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
