"""End to end: `pytest --boards-file <lab>/boards.toml --board PLACE suites/...` in a subprocess, as CI runs it.

The run acquires the labgrid place, opens the console over RFC2217 (ser2net on the exporter), ssh and adb (the
lab host's adb server) from the place's resources, runs the connectivity suite and releases the place; a second
run waits for the place (--board-wait) and a third with a short wait fails naming the first run's pid.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from support.lab import holder_of, lab_fixture
from support.processes import wait_until

pytestmark = pytest.mark.timeout(240)
REPO = Path(__file__).resolve().parents[2]
SUITE = "suites/test_connectivity.py"
ADB_PORTS = range(15195, 15199)  # helper P's range, apart from test_places.py's


lab = lab_fixture(adb_ports=ADB_PORTS)


HOLD_TEST = '''
import os, time
from pathlib import Path


def test_hold_the_board_until_told(board):
    """Keeps the run (and so its place) busy until the test creates the file HOLD_UNTIL names."""
    go = Path(os.environ["HOLD_UNTIL"])
    deadline = time.monotonic() + 150
    while not go.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert go.exists()
'''


def pytest_run(boards_file: Path, reports: Path, run_id: str, *extra: str, hold_until: Path | None = None
               ) -> subprocess.Popen:
    """A whole pytest run of the suite on the place, as its own process (output in reports/<run_id>.out); with
    ``hold_until`` a last test keeps the place until that file exists."""
    reports.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LG_", "PYTEST_"))}
    files = [SUITE]
    if hold_until is not None:
        env["HOLD_UNTIL"] = str(hold_until)
        hold = reports / "test_hold.py"
        hold.write_text(HOLD_TEST)
        files.append(str(hold))
    with open(reports / f"{run_id}.out", "w") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([sys.executable, "-m", "pytest", "--boards-file", str(boards_file), "--board",
                                 "rv1126-01", *files, "-v", "-rs", "-p", "no:cacheprovider", "--reports-dir",
                                 str(reports), "--run-id", run_id, *extra], cwd=REPO, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)


def finish(proc: subprocess.Popen, reports: Path, run_id: str, timeout: float = 180) -> tuple[int, str]:
    try:
        code = proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    return code, (reports / f"{run_id}.out").read_text()


def test_connectivity_suite_runs_through_the_place(lab, tmp_path: Path) -> None:
    code, out = finish(pytest_run(lab.boards_file, tmp_path, "one"), tmp_path, "one")
    assert code == 0, out[-3000:]
    for test in ("test_console_shell", "test_ssh_exec", "test_adb_stderr_is_separate", "test_every_link_healthy"):
        assert f"{test} PASSED" in out or f"{test}[" in out and "FAILED" not in out, (test, out[-3000:])
    assert " skipped" not in out.splitlines()[-1], out[-3000:]  # every link came from the place
    links_log = (tmp_path / "one" / "rv1126-01" / "links.log").read_text()
    assert "rfc2217://127.0.0.1:" in links_log  # the console went through ser2net, not the pty
    assert holder_of(lab.coordinator, "rv1126-01") is None  # released at the end of the run


def test_second_run_waits_and_a_third_names_the_holder(lab, tmp_path: Path) -> None:
    go = tmp_path / "go"
    first = pytest_run(lab.boards_file, tmp_path, "first", hold_until=go)
    second = third = None
    try:
        assert wait_until(lambda: holder_of(lab.coordinator, "rv1126-01") is not None or first.poll() is not None, 60)
        holder = holder_of(lab.coordinator, "rv1126-01")
        assert holder and holder.endswith(f"-pid{first.pid}"), holder
        third = pytest_run(lab.boards_file, tmp_path, "third", "--board-wait", "0.5")
        code3, out3 = finish(third, tmp_path, "third", timeout=60)
        assert code3 != 0, out3[-3000:]
        assert f"pid {first.pid}" in out3 and "--board-wait" in out3, out3[-3000:]
        assert "test_console_shell PASSED" not in out3
        second = pytest_run(lab.boards_file, tmp_path, "second", "--board-wait", "150")
        assert wait_until(lambda: "test_console_shell" in (tmp_path / "second.out").read_text(), 60)
        assert holder_of(lab.coordinator, "rv1126-01").endswith(f"-pid{first.pid}")  # the second run is waiting
        go.touch()
        code1, out1 = finish(first, tmp_path, "first")
        assert code1 == 0, out1[-3000:]
        code2, out2 = finish(second, tmp_path, "second")
        assert code2 == 0, out2[-3000:]
        assert "test_console_shell PASSED" in out2
    finally:
        for proc in (first, second, third):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    assert holder_of(lab.coordinator, "rv1126-01") is None


def test_coordinator_down_stops_the_run_before_any_test(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    boards = tmp_path / "boards.toml"
    boards.write_text(f'[defaults]\ncoordinator = "127.0.0.1:{port}"\n'
                      f'[boards.rv1126-01]\nchip = "rv1126"\nplace = "rv1126-01"\n')
    code, out = finish(pytest_run(boards, tmp_path, "down"), tmp_path, "down", timeout=60)  # bounded
    assert code != 0
    assert f"127.0.0.1:{port} is not reachable" in out, out[-3000:]
    assert "PASSED" not in out and "FAILED" not in out and "ERROR at setup" not in out, out[-3000:]
