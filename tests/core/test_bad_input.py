"""Every bad input of a lab's day ends in a one-line cause and a non-zero exit, soon: nothing hangs.

Each case is a real process: ``npu-hil boards check --probe`` (what a lab runs on a new boards.toml) or a
``pytest`` run through pytester. The unreachable endpoints are real too: a closed port on 127.0.0.1, a
listening socket that accepts TCP and never says a word, a device path that does not exist. Durations are
measured only to bound them generously (< 60 s: "it does not hang"); how fast is for bench/.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.sim_leftovers import down_running_boards

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parents[2]
BOUND_S = 60.0  # "it does not hang": far above every deadline involved (boot_timeout 5 s below)
HARD_STOP_S = 180  # the process is killed past this, so a hang fails the test instead of blocking CI

HEADER = """
[defaults]
boot_timeout = 5
"""


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def silent_port():
    """A port that completes the TCP handshake (the kernel's backlog) but never sends a byte."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield sock.getsockname()[1]
    sock.close()


@pytest.fixture
def sim_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path_factory.mktemp("sim-home")
    monkeypatch.setenv("NPU_HIL_SIM_HOME", str(home))
    yield home
    down_running_boards()


def inventory(tmp_path: Path, entry: str, name: str = "bad") -> Path:
    path = tmp_path / "boards.toml"
    path.write_text(f'{HEADER}\n[boards.{name}]\nchip = "rv1126"\n{entry}\n')
    return path


def npu_hil(*args: str, cwd: Path) -> tuple[subprocess.CompletedProcess, float]:
    """Run the real ``npu-hil`` command; returns the finished process and how long it took."""
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=HARD_STOP_S, env={**os.environ, "PYTHONPATH": str(REPO)})
    return proc, time.monotonic() - start


def probe(boards: Path, name: str = "bad") -> tuple[subprocess.CompletedProcess, float, str]:
    """``npu-hil boards check --probe NAME``: the process, its duration, and the board's one verdict line."""
    proc, took = npu_hil("boards", "--boards-file", str(boards), "check", "--probe", name, cwd=boards.parent)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(name + " ")]
    assert len(lines) == 1, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc, took, lines[0]


# --- through `npu-hil boards check --probe` ---------------------------------------------------------------------
def test_unknown_board_lists_the_known_ones(tmp_path: Path) -> None:
    boards = inventory(tmp_path, 'ssh = { host = "127.0.0.1" }', name="bench-1")
    proc, took = npu_hil("boards", "--boards-file", str(boards), "check", "--probe", "rv9999", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1, proc.stderr  # one line
    assert "unknown board 'rv9999'" in proc.stderr and "known boards: bench-1" in proc.stderr
    assert took < BOUND_S


def test_malformed_toml_names_line_and_column(tmp_path: Path) -> None:
    boards = tmp_path / "boards.toml"
    boards.write_text('[boards.a]\nchip = "rv1126"\nserial = { port = /dev/ttyUSB0 }\n')
    proc, took = npu_hil("boards", "--boards-file", str(boards), "check", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "not valid TOML" in proc.stderr and "line 3, column 19" in proc.stderr
    assert took < BOUND_S


def test_serial_port_that_does_not_exist(tmp_path: Path) -> None:
    proc, took, verdict = probe(inventory(tmp_path, 'serial = { port = "/dev/ttyNOPE0" }'))
    assert proc.returncode == 1
    assert "console" in verdict and "cannot open console port /dev/ttyNOPE0" in verdict
    assert took < BOUND_S


def test_ssh_port_closed(tmp_path: Path) -> None:
    port = closed_port()
    proc, took, verdict = probe(inventory(tmp_path, f'ssh = {{ host = "127.0.0.1", port = {port} }}'))
    assert proc.returncode == 1
    assert f"ssh root@127.0.0.1:{port}: connection refused" in verdict
    assert took < BOUND_S


def test_ssh_port_that_never_speaks(tmp_path: Path, silent_port: int) -> None:
    proc, took, verdict = probe(inventory(tmp_path, f'ssh = {{ host = "127.0.0.1", port = {silent_port} }}'))
    assert proc.returncode == 1
    assert f"ssh root@127.0.0.1:{silent_port}: no SSH answer within 5s" in verdict
    assert took < BOUND_S


def test_adb_device_that_never_appears(tmp_path: Path) -> None:
    port = closed_port()
    proc, took, verdict = probe(inventory(tmp_path, f'adb = {{ address = "127.0.0.1:{port}" }}'))
    assert proc.returncode == 1
    assert f"adb connect 127.0.0.1:{port}" in verdict or f"adb device 127.0.0.1:{port}" in verdict, verdict
    assert took < BOUND_S


def test_adb_address_that_accepts_tcp_but_never_speaks_adb(tmp_path: Path, silent_port: int) -> None:
    proc, took, verdict = probe(inventory(tmp_path, f'adb = {{ address = "127.0.0.1:{silent_port}" }}'))
    assert proc.returncode == 1
    assert f"127.0.0.1:{silent_port}" in verdict and "adb" in verdict, verdict
    assert took < BOUND_S


# --- through pytest ---------------------------------------------------------------------------------------------
@pytest.fixture
def lab(pytester: pytest.Pytester, sim_home: Path, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    pytester.makeconftest((REPO / "conftest.py").read_text())
    pytester.makeini("[pytest]\ntimeout = 120\n")
    pytester.makepyfile(test_board="""
        import pytest

        @pytest.mark.parametrize("n", range(3))
        def test_on_board(board, n):
            assert board.shell("true").ok
    """)
    return pytester


def pytest_run(lab: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, float]:
    start = time.monotonic()
    result = lab.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=HARD_STOP_S)
    return result, time.monotonic() - start


def test_pytest_unknown_board(lab: pytest.Pytester) -> None:
    result, took = pytest_run(lab, "--board", "rv9999")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    causes = [line for line in result.errlines if line.startswith("ERROR:")]
    assert len(causes) == 1 and "unknown board 'rv9999'" in causes[0] and "sim-<profile>" in causes[0], causes
    assert took < BOUND_S


def test_pytest_malformed_toml(lab: pytest.Pytester) -> None:
    lab.makefile(".toml", boards='[boards.a]\nchip = "rv1126"\nserial = { port = /dev/ttyUSB0 }\n')
    result, took = pytest_run(lab, "--board", "a")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    causes = [line for line in result.errlines if line.startswith("ERROR:")]
    assert len(causes) == 1 and "line 3, column 19" in causes[0], causes
    assert took < BOUND_S


UNREACHABLE = {
    "serial-missing": ('serial = {{ port = "/dev/ttyNOPE0" }}', "cannot open console port /dev/ttyNOPE0"),
    "ssh-silent": ('ssh = {{ host = "127.0.0.1", port = {silent} }}', "no SSH answer within 5s"),
    "ssh-closed": ('ssh = {{ host = "127.0.0.1", port = {closed} }}', "connection refused"),
    "adb-absent": ('adb = {{ address = "127.0.0.1:{closed}" }}', "adb connect 127.0.0.1:{closed}"),
}


def unreachable(lab: pytest.Pytester, case: str, silent_port: int) -> str:
    """Write a boards.toml whose only board is unreachable in the way ``case`` says; returns the cause to expect."""
    entry, cause = UNREACHABLE[case]
    closed = closed_port()
    lab.makefile(".toml", boards=f'{HEADER}\n[boards.bad]\nchip = "rv1126"\n'
                                 + entry.format(silent=silent_port, closed=closed) + "\n")
    return cause.format(closed=closed)


@pytest.mark.parametrize("case", list(UNREACHABLE))
def test_pytest_unreachable_board_is_one_error_naming_the_cause(lab: pytest.Pytester, silent_port: int,
                                                                 case: str) -> None:
    cause = unreachable(lab, case, silent_port)
    result, took = pytest_run(lab, "--board", "bad")
    outcomes = result.parseoutcomes()
    assert outcomes.get("errors", outcomes.get("error")) == 1 and "passed" not in outcomes, outcomes
    assert result.ret != 0
    stops = [line for line in result.outlines if "Interrupted: board bad is unusable" in line]
    assert len(stops) == 1 and cause in stops[0], result.outlines[-5:]
    assert took < BOUND_S


def test_pytest_unreachable_board_error_shows_the_cause_not_a_traceback(lab: pytest.Pytester,
                                                                         silent_port: int) -> None:
    """A lab's wrong port is not a harness bug: the error is its one-line cause, not 80 lines of harness source."""
    cause = unreachable(lab, "serial-missing", silent_port)
    result, _ = pytest_run(lab, "--board", "bad")
    errors = result.stdout.str().split("= ERRORS =", 1)[-1].split("short test summary info", 1)[0]
    assert cause in errors
    assert "harness/connect.py" not in errors and "def open_board" not in errors, errors[-800:]
