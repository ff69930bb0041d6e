"""How long a simulated board takes to come back by itself: from the fault to the next test passing.

Each round is a real ``pytest --board sim-rv1126`` run in a fresh simulator home with two tests:

* ``killed mid-command``: the first test SIGKILLs the board's processes and sees its command fail; the second
  test's set-up climbs the recovery ladder and its command passes. Measured: the wall-clock time from the kill
  to the end of the second test, and the ladder's own seconds (results.json ``recoveries``).
* ``down at start``: the board is started with ``npu-hil sim up``, its processes are killed, then a run starts
  on it: the board is power-cycled before it is declared unusable. Measured: the run's wall-clock time.

Prints figures; asserts nothing.

    .venv/bin/python bench/bench_recovery.py --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

KILLED = '''
import json, os, signal, time
from pathlib import Path
import pytest
from harness.errors import HarnessError
from harness.sim import api


def test_a_dies(board):
    status = json.loads((Path(api.endpoints(board.name)["state_dir"]) / "status.json").read_text())
    os.kill(status["board_pid"], signal.SIGKILL)
    Path("t_fault").write_text(repr(time.time()))
    with pytest.raises(HarnessError):
        board.shell("echo hi", timeout=5)


def test_b_back(board):
    assert board.shell("echo back", timeout=30).stdout.strip() == "back"
    Path("t_back").write_text(repr(time.time()))
'''
NEEDS = "def test_here(board):\n    assert board.shell('echo here', timeout=30).stdout.strip() == 'here'\n"


def _pytest(folder: Path, home: Path, test_file: str) -> tuple[int, float]:
    env = dict(os.environ, NPU_HIL_SIM_HOME=str(home), PYTHONPATH=str(REPO))
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--board", "sim-rv1126",
                           "--run-id", "bench", test_file], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=600)
    return done.returncode, time.monotonic() - started


def _down(home: Path) -> None:
    env = dict(os.environ, NPU_HIL_SIM_HOME=str(home))
    for folder in home.iterdir() if home.is_dir() else []:
        if (folder / "config.json").exists():
            subprocess.run([sys.executable, "-m", "harness", "sim", "down", folder.name], env=env, cwd=REPO,
                           capture_output=True, timeout=60)


def killed_mid_command(work: Path) -> tuple[float, float]:
    folder, home = work / "killed", work / "killed-sim"
    folder.mkdir()
    (folder / "test_killed.py").write_text(KILLED)
    try:
        code, _ = _pytest(folder, home, "test_killed.py")
    finally:
        _down(home)
    if code != 0:
        raise SystemExit(f"killed mid-command: the run failed (exit {code})")
    fault, back = float((folder / "t_fault").read_text()), float((folder / "t_back").read_text())
    results = json.loads((folder / "reports" / "bench" / "results.json").read_text())
    [climb] = results["boards"]["sim-rv1126"]["recoveries"]
    return back - fault, climb["seconds"]


def down_at_start(work: Path) -> float:
    folder, home = work / "down", work / "down-sim"
    folder.mkdir()
    (folder / "test_needs.py").write_text(NEEDS)
    env = dict(os.environ, NPU_HIL_SIM_HOME=str(home))
    up = subprocess.run([sys.executable, "-m", "harness", "sim", "up", "rv1126", "--compact"], env=env, cwd=REPO,
                        capture_output=True, text=True, timeout=120, check=True)
    os.kill(json.loads(up.stdout)["status"]["board_pid"], signal.SIGKILL)
    try:
        code, seconds = _pytest(folder, home, "test_needs.py")
    finally:
        _down(home)
    if code != 0:
        raise SystemExit(f"down at start: the run failed (exit {code})")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    killed, ladder, start = [], [], []
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="bench-recovery-") as tmp:
            fault_to_pass, climb = killed_mid_command(Path(tmp))
            killed.append(fault_to_pass)
            ladder.append(climb)
            start.append(down_at_start(Path(tmp)))
    for label, values in (("killed mid-command: fault -> next test passed", killed),
                          ("killed mid-command: the ladder itself", ladder),
                          ("down at start: whole run (power cycle + boot + test)", start)):
        print(f"{label:55} median {statistics.median(values):6.1f} s  "
              f"(min {min(values):.1f}, max {max(values):.1f}, {len(values)} rounds)")


if __name__ == "__main__":
    main()
