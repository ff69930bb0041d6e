"""A board lost mid-run, or down when the run starts, comes back by itself through the recovery ladder.

Each case is a real ``pytest`` run (pytester) on a simulated board whose board processes are killed with
SIGKILL (mid-command and mid-transfer), as a board that dies in the night: the next test that needs the board
must pass after the ladder (reconnect, reboot, power cycle), results.json must keep every step, and the gate
must show the recovery. A board that cannot come back within ``--recovery-budget`` is marked broken with the
reason instead.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from support.sim import sim_cli
from support.sim_leftovers import own_sim_home

pytest_plugins = ["pytester"]

HARD_STOP_S = 240

KILL_MID_RUN = '''
import json
import os
import signal
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.sim import api


def kill_board(name):
    """SIGKILL the simulated board's processes (its supervisor, the "power supply", stays)."""
    status = json.loads((Path(api.endpoints(name)["state_dir"]) / "status.json").read_text())
    os.kill(status["board_pid"], signal.SIGKILL)


def test_a_board_dies_mid_command(board):
    kill_board(board.name)
    with pytest.raises(HarnessError):
        board.shell("echo hi", timeout=5)


def test_b_board_is_back(board):
    assert board.shell("echo back", timeout=30).stdout.strip() == "back"
'''

KILL_MID_TRANSFER = KILL_MID_RUN.replace('''    kill_board(board.name)
    with pytest.raises(HarnessError):
        board.shell("echo hi", timeout=5)''', '''    import threading

    big = Path("big.bin")
    big.write_bytes(os.urandom(1 << 20) * 64)  # 64 MiB: the kill lands while it is on the wire
    killer = threading.Timer(0.3, kill_board, args=(board.name,))
    killer.start()
    try:
        with pytest.raises(HarnessError):
            board.push(big, "/userdata/big.bin", timeout=15)
    finally:
        killer.join()''')

assert "board.push" in KILL_MID_TRANSFER  # the kill lands during a transfer, not a command

NEEDS_BOARD = '''
def test_board_answers(board):
    assert board.shell("echo here", timeout=30).stdout.strip() == "here"
'''


@pytest.fixture
def lab(pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    with own_sim_home(tmp_path_factory, monkeypatch):
        yield pytester


def run(lab: pytest.Pytester, run_id: str, *args: str) -> pytest.RunResult:
    return lab.runpytest_subprocess("-p", "no:cacheprovider", "--board", "sim-rv1126", "--reports-dir",
                                    str(lab.path / "reports"), "--run-id", run_id, *args, timeout=HARD_STOP_S)


def results(lab: pytest.Pytester, run_id: str) -> dict:
    return json.loads((lab.path / "reports" / run_id / "results.json").read_text())


def recoveries(lab: pytest.Pytester, run_id: str) -> list[dict]:
    return results(lab, run_id)["boards"]["sim-rv1126"].get("recoveries") or []


def recorded_tests(lab: pytest.Pytester, run_id: str) -> list[dict]:
    return results(lab, run_id)["tests"]


def test_a_board_stopped_mid_command_fails_that_test_in_time_and_is_power_cycled_for_the_next(
        lab: pytest.Pytester) -> None:
    """SIGSTOP: a hang, not a death. The command fails at its deadline; no link answers, so no reboot can be
    carried and the ladder power-cycles at once."""
    lab.makepyfile(test_lost=KILL_MID_RUN.replace("signal.SIGKILL", "signal.SIGSTOP").replace(
        'with pytest.raises(HarnessError):\n        board.shell("echo hi", timeout=5)',
        'board.shell("echo hi", timeout=5)  # fails: the report must say why'))
    result = run(lab, "stopped")
    result.assert_outcomes(passed=1, failed=1)
    # the failing test's own report says why, not only that a command missed its deadline
    result.stdout.fnmatch_lines(["*links (npu-hil)*",
                                 "sim-rv1126: the board stopped answering on every link (adb, ssh, console)"])
    [failed] = [t for t in recorded_tests(lab, "stopped") if t["outcome"] != "passed"]
    assert failed["message"].endswith("sim-rv1126: the board stopped answering on every link (adb, ssh, console)")
    [climb] = recoveries(lab, "stopped")
    assert climb["reason"].startswith("the board stopped answering on every link (adb, ssh, console)"), climb
    assert [(s["rung"], s["ok"]) for s in climb["steps"]] == [("power cycle", True)]


@pytest.mark.parametrize("fault", ["SIGKILL", "SIGSTOP"], ids=["killed", "stopped"])
def test_a_board_lost_mid_transfer_is_back_for_the_next_test(lab: pytest.Pytester, fault: str) -> None:
    """Killed, the push fails at once (LinkDown); stopped, at its deadline (LinkTimeout). Either way the next
    test gets the board back."""
    lab.makepyfile(test_lost=KILL_MID_TRANSFER.replace("signal.SIGKILL", f"signal.{fault}"))
    result = run(lab, "transfer")
    result.assert_outcomes(passed=2)
    [climb] = recoveries(lab, "transfer")
    assert climb["outcome"] in ("rebooted", "power-cycled"), climb


def test_a_board_killed_mid_run_is_back_for_the_next_test_and_the_gate_shows_it(lab: pytest.Pytester) -> None:
    lab.makepyfile(test_lost=KILL_MID_RUN)
    result = run(lab, "killed")
    result.assert_outcomes(passed=2)
    [climb] = recoveries(lab, "killed")
    assert climb["outcome"] == "power-cycled"  # killed: no link answers, so no reboot can be carried
    assert climb["reason"].startswith("the board stopped answering on every link (adb, ssh, console) after: ")
    assert [s["rung"] for s in climb["steps"]][-1] == {"rebooted": "reboot", "power-cycled": "power cycle"}[
        climb["outcome"]] and climb["steps"][-1]["ok"]
    log = (lab.path / "reports" / "killed" / "sim-rv1126" / "links.log").read_text()
    assert "climbing the recovery ladder" in log and "recovery: " + climb["outcome"] in log
    decision = subprocess.run([sys.executable, "-m", "harness", "gate", str(lab.path / "reports" / "killed"),
                               "--no-baseline", "--json", "--out", str(lab.path / "gate")],
                              capture_output=True, text=True, timeout=120)
    [board] = json.loads(decision.stdout)["versions"]
    assert board["recoveries"] and board["recoveries"][0].startswith("recovered (power-cycled) after the board")


@pytest.mark.parametrize("fault", [signal.SIGKILL, signal.SIGSTOP], ids=["killed", "stopped"])
def test_a_board_down_when_the_run_starts_is_power_cycled_before_it_is_declared_unusable(
        lab: pytest.Pytester, fault: signal.Signals) -> None:
    home = Path(os.environ["NPU_HIL_SIM_HOME"])  # this test's own (own_sim_home)
    up = sim_cli("up", "rv1126", "--compact", home=home)  # the board the run attaches to; then it dies or hangs
    assert up.returncode == 0, up.stderr
    os.kill(json.loads(up.stdout)["status"]["board_pid"], fault)
    lab.makepyfile(test_needs=NEEDS_BOARD)
    result = run(lab, "down-at-start")
    result.assert_outcomes(passed=1)
    [climb] = recoveries(lab, "down-at-start")
    assert climb["outcome"] == "power-cycled" and climb["reason"].startswith("unreachable at the start of the run")


def test_a_board_that_cannot_come_back_is_marked_broken_within_the_budget(lab: pytest.Pytester) -> None:
    boot_loop = "    api.fault(board.name, 'boot-loop')  # every later boot fails\n"
    dies_for_good = KILL_MID_RUN.replace("    kill_board(board.name)\n", boot_loop + "    kill_board(board.name)\n")
    lab.makepyfile(test_lost=dies_for_good)
    result = run(lab, "gone", "--recovery-budget", "20")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*board sim-rv1126 is marked broken for the rest of this run: the board stopped "
                                 "answering on every link*; power cycle failed*"])
    [climb] = recoveries(lab, "gone")
    assert climb["outcome"] == "broken" and climb["seconds"] < 20 + 5  # the budget, plus one rung's last poll
