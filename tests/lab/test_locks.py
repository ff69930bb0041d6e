"""Board locks between real processes: a holder subprocess, waiters, ``kill -9``, and two pytest runs.

Every holder is a real Python process holding ``flock`` through :class:`harness.lab.locks.FileBoardLock`; it is
stopped by its PID at the end of each test. Lock dirs and simulator homes are temporary folders of the test.
"""

from __future__ import annotations

import getpass
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.errors import BoardBusy, ConfigError
from harness.lab.locks import FileBoardLock, lock_dir_for

REPO = Path(__file__).resolve().parents[2]
LINE_TIMEOUT = 20.0

HOLDER = """
import sys
from harness.lab.locks import FileBoardLock
lock = FileBoardLock(sys.argv[1], sys.argv[2], run_id=sys.argv[3])
lock.acquire(0)
print("HELD", flush=True)
for line in sys.stdin:  # "release" lets the board go; EOF ends the process
    if line.strip() == "release":
        lock.release()
        print("RELEASED", flush=True)
"""


class Holder:
    """A process holding a board lock until told to release, killed, or its stdin closes."""

    def __init__(self, board: str, lock_dir: Path, run_id: str = "run-holder") -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", HOLDER, board, str(lock_dir), run_id],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO,
                                     env=dict(os.environ, PYTHONPATH=str(REPO)))
        assert self.expect("HELD")

    def expect(self, word: str) -> bool:
        """Read the holder's next line (with a deadline: a stuck holder fails the test instead of hanging it)."""
        import selectors

        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            if not sel.select(LINE_TIMEOUT):
                return False
        return self.proc.stdout.readline().strip() == word

    def release(self) -> None:
        self.proc.stdin.write("release\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=LINE_TIMEOUT)
        for stream in (self.proc.stdin, self.proc.stdout):
            stream.close()


@pytest.fixture
def lock_dir(tmp_path: Path) -> Path:
    return tmp_path / "locks"  # not created yet: the first lock creates it, shared by every user


@pytest.fixture
def holder(lock_dir: Path) -> Iterator[Holder]:
    started = Holder("sim-rv1126", lock_dir)
    yield started
    started.stop()


def test_busy_board_names_user_host_pid_run_and_since(holder: Holder, lock_dir: Path) -> None:
    with pytest.raises(BoardBusy) as caught:
        FileBoardLock("sim-rv1126", lock_dir).acquire(0)
    text = str(caught.value)
    assert text.startswith("board sim-rv1126 is held by ")
    assert f"{getpass.getuser()} on host {socket.gethostname()}" in text
    assert f"pid {holder.proc.pid}," in text and "run run-holder" in text
    assert "since 20" in text and "waited 0 s (--board-wait)" in text
    assert stat.S_IMODE(lock_dir.stat().st_mode) == 0o1777  # every user of the host locks here
    assert stat.S_IMODE((lock_dir / "sim-rv1126.lock").stat().st_mode) == 0o666
    FileBoardLock("sim-rk3588", lock_dir).acquire(0)  # another board is free: the lock is per board


def test_kill_9_of_the_holder_frees_the_board_at_once(holder: Holder, lock_dir: Path) -> None:
    with pytest.raises(BoardBusy):
        FileBoardLock("sim-rv1126", lock_dir).acquire(0)
    os.kill(holder.proc.pid, signal.SIGKILL)
    holder.proc.wait(timeout=LINE_TIMEOUT)
    lock = FileBoardLock("sim-rv1126", lock_dir, run_id="run-after")
    lock.acquire(0)  # no stale lock: the kernel dropped it with the process
    note = json.loads((lock_dir / "sim-rv1126.lock").read_text())
    assert (note["pid"], note["run_id"]) == (os.getpid(), "run-after")
    lock.release()
    assert (lock_dir / "sim-rv1126.lock").read_text() == ""  # a released lock names no holder


WAITER = """
import sys
from harness.errors import BoardBusy
from harness.lab.locks import FileBoardLock
lock = FileBoardLock(sys.argv[1], sys.argv[2])
try:
    lock.acquire(0)
except BoardBusy:
    print("BUSY", flush=True)
lock.acquire(float(sys.argv[3]))
print("ACQUIRED", flush=True)
"""


def test_waiter_acquires_when_the_holder_releases_during_the_wait(holder: Holder, lock_dir: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", WAITER, "sim-rv1126", str(lock_dir), "30"], stdout=subprocess.PIPE,
                            text=True, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)))
    try:
        assert proc.stdout.readline().strip() == "BUSY"  # it found the board held and is now waiting
        holder.release()
        assert holder.expect("RELEASED")
        out, _ = proc.communicate(timeout=LINE_TIMEOUT)
        assert out.strip() == "ACQUIRED" and proc.returncode == 0
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=LINE_TIMEOUT)
        proc.stdout.close()


def test_wait_runs_out_while_the_holder_keeps_the_board(holder: Holder, lock_dir: Path) -> None:
    with pytest.raises(BoardBusy, match=r"pid \d+.*waited 0\.3 s \(--board-wait\)"):
        FileBoardLock("sim-rv1126", lock_dir).acquire(0.3)


def test_unusable_lock_dir_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError, match="lock dir .* cannot be created"):
        FileBoardLock("b", blocker / "locks").check()


def test_simulated_boards_lock_in_their_simulator_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Two simulator homes may each run a ``sim-rv1126``: they are different boards, so different locks."""
    from harness.config.loader import load_inventory

    monkeypatch.delenv("NPU_HIL_LOCK_DIR", raising=False)
    monkeypatch.setenv("NPU_HIL_SIM_HOME", str(tmp_path / "home"))
    spec = load_inventory(None).get("sim-rv1126")
    assert lock_dir_for(spec) == tmp_path / "home" / ".locks"
    assert lock_dir_for(spec, tmp_path / "x") == tmp_path / "x"
    monkeypatch.setenv("NPU_HIL_LOCK_DIR", str(tmp_path / "env"))
    assert lock_dir_for(spec) == tmp_path / "env"


# --- two pytest runs on one simulated board --------------------------------------------------------------------
HOLDING_TEST = """
import os, time
from pathlib import Path

def test_holds_the_board(board):
    assert board.shell("echo up", timeout=30).exit_code == 0
    Path(os.environ["HOLD_STARTED"]).write_text(str(os.getpid()))
    deadline = time.monotonic() + 90
    while not Path(os.environ["HOLD_GO"]).exists():
        assert time.monotonic() < deadline, "nobody said go"
        time.sleep(0.05)
"""


def _pytest(args: list[str], folder: Path, env: dict[str, str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=folder, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


def test_second_run_on_a_held_board_fails_naming_the_first(tmp_path: Path) -> None:
    folder = tmp_path / "suite"
    folder.mkdir()
    (folder / "conftest.py").write_text((REPO / "conftest.py").read_text())
    (folder / "pytest.ini").write_text("[pytest]\ntimeout = 150\n")
    (folder / "test_hold.py").write_text(textwrap.dedent(HOLDING_TEST))
    (folder / "test_other.py").write_text("def test_uses_board(board):\n    board.shell('true')\n")
    env = dict(os.environ, PYTHONPATH=str(REPO), NPU_HIL_SIM_HOME=str(tmp_path / "sim"),
               NPU_HIL_LOCK_DIR=str(tmp_path / "locks"), HOLD_STARTED=str(tmp_path / "started"),
               HOLD_GO=str(tmp_path / "go"))
    first = _pytest(["--board", "sim-rv1126", "--run-id", "first", "test_hold.py"], folder, env)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "started").exists():
            assert first.poll() is None, first.communicate()[0]
            assert time.monotonic() < deadline, "the first run never reached its test"
            time.sleep(0.1)
        second = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--board", "sim-rv1126",
                                 "--board-wait", "1", "--run-id", "second", "test_other.py"], cwd=folder, env=env,
                                capture_output=True, text=True, timeout=120, check=False)
        out = second.stdout + second.stderr
        assert second.returncode != 0, out
        assert f"board sim-rv1126 is held by {getpass.getuser()} on host" in out, out
        assert f"pid {first.pid}, run first" in out and "waited 1 s (--board-wait)" in out, out
        (tmp_path / "go").write_text("go")
        first_out, _ = first.communicate(timeout=120)
        assert first.returncode == 0, first_out  # the second run did not disturb the holder's board
        assert not sim_boards(tmp_path / "sim", "running"), "the first run left its simulated board running"
    finally:
        if first.poll() is None:
            os.kill(first.pid, signal.SIGKILL)
            first.wait(timeout=30)
        first.stdout.close()
        sim_boards(tmp_path / "sim", "down")  # a run that died: stop its board by its supervisor PID


SIM_API = """
import json, sys
from harness.sim import api
running = [b["name"] for b in api.list_boards() if b["running"]]
if sys.argv[1] == "down":
    for name in running:
        api.down(name)
print(json.dumps(running))
"""


def sim_boards(home: Path, action: str) -> list[str]:
    """The running boards of simulator home ``home`` (``down``: and stop them), through the simulator's API."""
    out = subprocess.run([sys.executable, "-c", SIM_API, action], cwd=REPO, capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(REPO), NPU_HIL_SIM_HOME=str(home)), timeout=60,
                         check=True)
    return json.loads(out.stdout)


def test_preflight_lock_problem_is_one_line_and_no_test_runs(tmp_path: Path) -> None:
    """A lock that cannot be taken at all (here: the lock dir is under a file) stops the run before any test."""
    folder = tmp_path / "suite"
    folder.mkdir()
    (folder / "conftest.py").write_text((REPO / "conftest.py").read_text())
    (folder / "test_x.py").write_text("def test_x(board):\n    pass\n")
    (tmp_path / "file").write_text("")
    env = dict(os.environ, PYTHONPATH=str(REPO), NPU_HIL_SIM_HOME=str(tmp_path / "sim"))
    result = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--board", "sim-rv1126",
                             "--lock-dir", str(tmp_path / "file" / "locks"), "test_x.py"], cwd=folder, env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "board sim-rv1126: lock dir" in errors[0] and "cannot be created" in errors[0], errors
    assert "Traceback" not in result.stderr and "passed" not in result.stdout
    assert not (tmp_path / "sim").exists() or not any((tmp_path / "sim").iterdir())  # no board was started
