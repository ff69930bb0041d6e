"""How long a simulated board takes to come back by itself: from the fault to the next test passing.

Each round is a real ``pytest --board sim-rv1126`` run in a fresh simulator home with two tests:

* ``killed mid-command``: the first test SIGKILLs the board's processes and sees its command fail; the second
  test's set-up climbs the recovery ladder and its command passes. Measured: the wall-clock time from the kill
  to the end of the second test, and the ladder's own seconds (results.json ``recoveries``).
* ``down at start``: the board is started with ``npu-hil sim up``, its processes are killed, then a run starts
  on it: the board is power-cycled before it is declared unusable. Measured: the run's wall-clock time.

Both cases run twice: with the board's processes killed (SIGKILL, a board that died) and stopped (SIGSTOP, a
board that hangs: its sockets stay open and nothing answers).

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
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _common import down_all  # noqa: E402

KILLED = '''
import json, os, signal, time
from pathlib import Path
import pytest
from harness.errors import HarnessError
from harness.sim import api


def test_a_dies(board):
    status = json.loads((Path(api.endpoints(board.name)["state_dir"]) / "status.json").read_text())
    os.kill(status["board_pid"], signal.FAULT)
    Path("t_fault").write_text(repr(time.time()))
    with pytest.raises(HarnessError):
        board.shell("echo hi", timeout=5)


def test_b_back(board):
    assert board.shell("echo back", timeout=30).stdout.strip() == "back"
    Path("t_back").write_text(repr(time.time()))
'''
NEEDS = "def test_here(board):\n    assert board.shell('echo here', timeout=30).stdout.strip() == 'here'\n"


def run_case(work: Path, name: str, test_text: str, before: Callable[[Path], None] | None = None) -> tuple[Path, float]:
    """One ``pytest --board sim-rv1126`` run of ``test_text`` in its own folder and simulator home (``before``
    may start or break the board first); its folder and wall-clock seconds. Leaves no board running."""
    folder, home = work / name, work / f"{name}-sim"
    folder.mkdir()
    (folder / f"test_{name}.py").write_text(test_text)
    env = dict(os.environ, NPU_HIL_SIM_HOME=str(home), PYTHONPATH=str(REPO))
    try:
        if before is not None:
            before(home)
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--board",
                               "sim-rv1126", "--run-id", "bench", f"test_{name}.py"], cwd=folder, env=env,
                              capture_output=True, text=True, timeout=600)
        seconds = time.monotonic() - started
    finally:
        down_all(home)
    if done.returncode != 0:
        raise SystemExit(f"{name}: the run failed (exit {done.returncode}):\n{done.stdout[-2000:]}")
    return folder, seconds


def mid_command(work: Path, fault: signal.Signals) -> tuple[float, float]:
    folder, _ = run_case(work, f"mid-{fault.name}", KILLED.replace("signal.FAULT", f"signal.{fault.name}"))
    fault, back = float((folder / "t_fault").read_text()), float((folder / "t_back").read_text())
    results = json.loads((folder / "reports" / "bench" / "results.json").read_text())
    [climb] = results["boards"]["sim-rv1126"]["recoveries"]
    return back - fault, climb["seconds"]


def down_at_start(work: Path, fault: signal.Signals) -> float:
    def up_and_fault(home: Path) -> None:
        """A board the run will attach to, dead or hung: started with ``npu-hil sim up``, then signalled."""
        up = subprocess.run([sys.executable, "-m", "harness", "sim", "up", "rv1126", "--compact"], cwd=REPO,
                            env=dict(os.environ, NPU_HIL_SIM_HOME=str(home)), capture_output=True, text=True,
                            timeout=120, check=True)
        os.kill(json.loads(up.stdout)["status"]["board_pid"], fault)

    return run_case(work, f"down-{fault.name}", NEEDS, before=up_and_fault)[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    figures: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for fault in (signal.SIGKILL, signal.SIGSTOP):
            word = {signal.SIGKILL: "killed", signal.SIGSTOP: "stopped"}[fault]
            with tempfile.TemporaryDirectory(prefix="bench-recovery-") as tmp:
                fault_to_pass, climb = mid_command(Path(tmp), fault)
                start = down_at_start(Path(tmp), fault)
            figures.setdefault(f"{word} mid-command: fault -> next test passed", []).append(fault_to_pass)
            figures.setdefault(f"{word} mid-command: the ladder itself", []).append(climb)
            figures.setdefault(f"{word} at start: whole run (power cycle + boot + test)", []).append(start)
    for label, values in figures.items():
        print(f"{label:58} median {statistics.median(values):6.1f} s  "
              f"(min {min(values):.1f}, max {max(values):.1f}, {len(values)} rounds)")


if __name__ == "__main__":
    main()
