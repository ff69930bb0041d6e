"""The Board facade on a simulated RV1126 opened the way a run opens it (``harness.connect.open_board``).

Real pieces throughout: the simulator's processes, our own adb server (port 15130, own HOME, stopped by PID),
paramiko over TCP, the console on a pty. Links are taken down for real (the adb server is stopped, the ssh
connection closed) and brought back afterwards, so the tests do not depend on their order.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import socket
from pathlib import Path

import pytest
from support.opened import Opened, opened_sim_board

from harness.board import Board
from harness.errors import BoardError, LinkDown, LinkTimeout

ADB_PORT = 15130
BOARD = "sim-rv1126"


@pytest.fixture(scope="module")
def opened(tmp_path_factory: pytest.TempPathFactory):
    with opened_sim_board(tmp_path_factory, BOARD, ADB_PORT) as opened:
        yield opened


@pytest.fixture
def board(opened: Opened) -> Board:
    """The module's board, checked healthy and unbroken before each test."""
    board = opened.board
    board.broken = None
    assert board.shell("true").ok
    return board


def closed_port() -> int:
    """A loopback port nobody listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def random_file(path: Path, size: int) -> str:
    data = os.urandom(size)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def board_sha(board: Board, remote: str, link: str) -> str:
    return board.shell(f"sha256sum {shlex.quote(remote)}", link=link, check=True).stdout.split()[0]


# --- shell: fallback, but never a retry after a timeout ----------------------------------------------------------
def test_shell_falls_back_to_the_next_link_when_one_is_down(opened: Opened, board: Board) -> None:
    assert board.link_order[:3] == ["adb", "ssh", "console"]
    assert board.shell("echo first").link == "adb"
    ssh_port = board.ssh.port
    opened.server.stop()  # the adb server process is gone: adb is down for real
    try:
        result = board.shell("echo over-$((40+2))")
        assert (result.link, result.stdout.strip(), result.exit_code) == ("ssh", "over-42", 0)
        board.ssh.port = closed_port()  # ssh reconnects by itself: aim it at a port where nothing listens
        board.ssh.close()
        result = board.shell("cat /etc/version")
        assert result.link == "console" and "RK_VERSION=" in result.stdout
    finally:
        board.ssh.port = ssh_port
        opened.server.start()
        board.adb.connect(timeout=30)
        board.ssh.connect()
    assert board.shell("echo back").link == "adb"


def test_an_explicit_link_is_never_swapped_for_another(opened: Opened, board: Board) -> None:
    opened.server.stop()
    try:
        with pytest.raises(LinkDown, match=r"no link could run `echo explicit`: adb: "):
            board.shell("echo explicit", link="adb", timeout=5)
    finally:
        opened.server.start()
        board.adb.connect(timeout=30)
    assert board.shell("echo explicit", link="adb").stdout.strip() == "explicit"


def test_a_link_check_names_the_lost_link_and_the_ones_that_still_answer(opened: Opened, board: Board) -> None:
    opened.server.stop()
    try:
        check = board.check_links(timeout=10)
        assert set(check.problems) == {"adb"} and not check.every_link_down
        assert check.diagnosis() == "links lost (adb) while ssh, console still answer"
        assert board.silent is None and "(not read" not in board.kernel_log(lines=5)  # dmesg over ssh still
    finally:
        board.link_check = None
        opened.server.start()
        board.adb.connect(timeout=30)
    assert board.check_links(timeout=10).diagnosis() is None


def test_timeout_is_raised_not_retried_on_another_link(board: Board) -> None:
    board.shell("rm -f /userdata/ran-times", check=True)
    before = len(board.history)
    with pytest.raises(LinkTimeout):
        board.shell("echo ran >> /userdata/ran-times; sleep 30", timeout=2)
    runs = board.shell("cat /userdata/ran-times", link="ssh", check=True).stdout.split()
    assert runs == ["ran"], "the timed-out command was run again over another link"
    assert len(board.history) == before + 1  # the cat; the timed-out command left no result
    board.shell("rm -f /userdata/ran-times", check=True)


# --- transfers --------------------------------------------------------------------------------------------------
def test_push_and_pull_keep_every_byte(board: Board, tmp_path: Path) -> None:
    digest = random_file(tmp_path / "blob.bin", 2 * 1024 * 1024 + 5)
    board.push(tmp_path / "blob.bin", "/userdata/blob.bin")
    assert board_sha(board, "/userdata/blob.bin", link="ssh") == digest  # checked over another link
    board.pull("/userdata/blob.bin", tmp_path / "back.bin")
    assert hashlib.sha256((tmp_path / "back.bin").read_bytes()).hexdigest() == digest
    board.shell("rm -f /userdata/blob.bin", check=True)


def test_push_verification_catches_a_file_that_did_not_land(board: Board, tmp_path: Path) -> None:
    """Pushed onto a symlink to /dev/null: the transfer itself succeeds, only the on-board checksum can tell."""
    random_file(tmp_path / "lost.bin", 4096)
    board.shell("ln -sf /dev/null /userdata/sink", check=True)
    try:
        with pytest.raises(BoardError, match=r"/userdata/sink is corrupt after transfer"):
            board.push(tmp_path / "lost.bin", "/userdata/sink")
    finally:
        board.shell("rm -f /userdata/sink", check=True)


def test_pull_verification_catches_a_file_that_changed_and_keeps_nothing(board: Board, tmp_path: Path) -> None:
    """A writer on the console keeps appending to the file, so the bytes pulled differ from the board's sha256."""
    board.shell("rm -f /tmp/stop-writer /userdata/growing", check=True)
    board.console.run("(n=0; while [ ! -e /tmp/stop-writer ] && [ $n -lt 2000000 ]; do echo x >> /userdata/growing;"
                      " n=$((n+1)); done) >/dev/null 2>&1 &", timeout=20)
    try:
        assert board.shell("sleep 0.3; test -s /userdata/growing").ok, "the writer did not start"
        with pytest.raises(BoardError, match=r"/userdata/growing is corrupt after transfer"):
            board.pull("/userdata/growing", tmp_path / "growing.txt")
        assert not list(tmp_path.iterdir()), "a failed pull left a file behind"
    finally:
        board.shell("touch /tmp/stop-writer; sleep 0.2; rm -f /userdata/growing /tmp/stop-writer", check=True)


@pytest.mark.parametrize("name", ["a b;touch x", "it's $(touch x)`touch x`"])
def test_hostile_paths_are_quoted(board: Board, tmp_path: Path, name: str) -> None:
    remote = f"/userdata/{name}"
    places = "/x /root/x /userdata/x /tmp/x"
    board.shell(f"rm -f {places}", check=True)
    digest = random_file(tmp_path / "payload", 1000)
    board.push(tmp_path / "payload", remote)
    board.pull(remote, tmp_path / "back")
    assert hashlib.sha256((tmp_path / "back").read_bytes()).hexdigest() == digest
    listing = board.shell("ls -1 /userdata", check=True).stdout.splitlines()
    assert name in listing  # the file has exactly the odd name
    assert board_sha(board, remote, link="console") == digest
    assert board.shell(f"ls {places} 2>/dev/null | wc -l").stdout.strip() == "0", "a name was run as a command"
    board.shell(f"rm -f {shlex.quote(remote)}", check=True)


# --- broken boards, reboots --------------------------------------------------------------------------------------
def test_mark_broken_refuses_every_later_command_and_transfer(board: Board, tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"data")
    board.shell("rm -f /tmp/ran-while-broken", check=True)
    before = len(board.history)
    board.mark_broken("recovery by power cycle failed")
    calls = {
        "shell": lambda: board.shell("touch /tmp/ran-while-broken"),
        "shell over console": lambda: board.shell("touch /tmp/ran-while-broken", link="console"),
        "push": lambda: board.push(tmp_path / "f", "/tmp/ran-while-broken"),
        "pull": lambda: board.pull("/etc/version", tmp_path / "v"),
    }
    for call in calls.values():
        with pytest.raises(BoardError, match=r"marked broken .*recovery by power cycle failed"):
            call()
    assert len(board.history) == before
    board.broken = None
    assert board.shell("test -e /tmp/ran-while-broken").exit_code == 1
    assert not (tmp_path / "v").exists()


@pytest.mark.parametrize("action", ["reboot", "power_cycle", "wait_ready"])
def test_mark_broken_refuses_life_cycle_calls(board: Board, action: str) -> None:
    """A broken board must not be rebooted or waited for again: each of these would take up to boot_timeout."""
    board.shell("echo alive > /tmp/boot-marker", check=True)
    board.mark_broken("the board hung twice")
    try:
        with pytest.raises(BoardError, match="marked broken"):
            getattr(board, action)(timeout=60)
        board.broken = None
        assert board.shell("cat /tmp/boot-marker").stdout.strip() == "alive"  # it was not rebooted
    finally:
        board.broken = None
        board.wait_ready(timeout=120)  # if it did reboot, let it finish before the next test


def test_reboot_returns_when_every_link_answers(board: Board) -> None:
    board.shell("echo before > /tmp/boot-marker", check=True)
    mark = board.console.mark()
    took = board.reboot(timeout=120)
    assert took > 0
    for name in board.command_links():
        result = board.shell("cat /tmp/boot-marker 2>/dev/null || echo gone", link=name, timeout=20)
        assert result.stdout.strip() == "gone", f"{name}: /tmp survived, so the board did not reboot"
    assert board.health() == {"adb": None, "ssh": None, "console": None}
    assert "login:" in board.console.excerpt(since=mark)  # the console saw the board boot again
