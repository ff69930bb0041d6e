"""Connectivity: every link of the board answers, exit codes are real, files survive a round trip, and the
board comes back from a reboot. The first suite a lab runs on a new board."""

from __future__ import annotations

import hashlib
import os
import shlex

import pytest


def test_console_shell(console) -> None:
    result = console.run("cat /etc/version", timeout=20)
    assert result.exit_code == 0, result.output
    assert "RK_VERSION=" in result.stdout


def test_console_exit_code(console) -> None:
    assert console.run("false", timeout=20).exit_code == 1


@pytest.mark.needs("adb")
@pytest.mark.parametrize("command, code", [("true", 0), ("false", 1), ("exit 42", 42)])
def test_adb_exit_codes(adb, command: str, code: int) -> None:
    assert adb.shell(command, timeout=20).exit_code == code


@pytest.mark.needs("adb")
def test_adb_stderr_is_separate(adb) -> None:
    result = adb.shell("echo out; echo err >&2", timeout=20)
    assert result.stdout.strip() == "out"
    assert result.stderr.strip() == "err"


@pytest.mark.needs("ssh")
def test_ssh_exec(ssh, board) -> None:
    result = ssh.shell("cat /proc/device-tree/compatible | tr '\\0' '\\n'", timeout=20)
    assert result.exit_code == 0, result.output
    assert f"rockchip,{board.chip.name}" in result.stdout.split()


@pytest.mark.needs("ssh")
def test_ssh_exit_code(ssh) -> None:
    assert ssh.shell("exit 3", timeout=20).exit_code == 3


@pytest.fixture
def payload(tmp_path):
    data = os.urandom(3 * 1024 * 1024 + 17)
    path = tmp_path / "payload.bin"
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def test_push_pull_round_trip(board, payload, tmp_path) -> None:
    local, digest = payload
    remote = "/userdata/npu-hil connectivity.bin"  # a space on purpose: every path is quoted
    board.push(local, remote)
    on_board = board.shell(f"sha256sum {shlex.quote(remote)}", check=True).stdout.split()[0]
    assert on_board == digest
    back = tmp_path / "back.bin"
    board.pull(remote, back)
    assert hashlib.sha256(back.read_bytes()).hexdigest() == digest
    board.shell(f"rm -f {shlex.quote(remote)}", check=True)


def test_every_link_healthy(board) -> None:
    problems = {link: problem for link, problem in board.health().items() if problem}
    assert not problems, problems


def test_reboot_and_back(board) -> None:
    board.shell("echo before-reboot > /tmp/marker", check=True)
    board.reboot()
    assert board.shell("cat /tmp/marker 2>/dev/null || echo gone").stdout.strip() == "gone", "/tmp survived a reboot"
    assert not {k: v for k, v in board.health().items() if v}
