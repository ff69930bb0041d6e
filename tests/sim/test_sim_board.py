"""Whole simulated boards as separate processes, seen only through real clients: the issue's proofs.

Boards are started with :func:`harness.sim.api.up` (a detached supervisor process that runs the board's OS in a
child process) in a folder of our own (``NPU_HIL_SIM_HOME``), and observed only from outside: the Debian ``adb``
CLI on our own adb server (port 15120, own HOME/TMPDIR), pyserial on the console pty, paramiko over TCP. Every
board is stopped with :func:`api.down` at the end, which must leave no process behind.

The helpers (``AdbCli``, ``SimBoards``, ``processes_mentioning``, ...) live in ``tests/support/``, shared with
``test_sim_cli.py`` and ``test_sim_faults.py``.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import pytest
from support.adb import adb_fixture
from support.net import refuses
from support.sim import open_console, sim_cli, sim_fixture, ssh_client, ssh_exec

from harness.sim import api

ADB_PORT = 15120
MIB = 1024 * 1024


# ------------------------------------------------------------------------------------------------ fixtures
sim = sim_fixture()
adb = adb_fixture(ADB_PORT)


@pytest.fixture(scope="module")
def board(sim, adb):
    """One rv1126 for the module, adb-connected; tests that power it off or reboot it leave it running."""
    endpoints = sim.up("rv1126")
    adb.connect(endpoints["adb"]["serial"])
    return endpoints


def serial(board: dict[str, Any]) -> str:
    return board["adb"]["serial"]


# ------------------------------------------------------------------------------------------------ adb
@pytest.mark.timeout(60)
def test_adb_connect_lists_the_device_and_shell_returns_exit_codes(board, adb):
    assert adb.state(serial(board)) == "device"
    assert adb.shell(serial(board), "false").returncode == 1
    assert adb.shell(serial(board), "true").returncode == 0
    assert adb.shell(serial(board), "exit 7").returncode == 7
    result = adb.shell(serial(board), "cat /etc/hostname")
    assert result.returncode == 0 and result.stdout.strip() == "rv1126"


@pytest.mark.timeout(120)
def test_push_and_pull_20_mib_through_the_adb_cli_keep_every_byte(board, adb, tmp_path):
    data = os.urandom(20 * MIB)
    local, back = tmp_path / "big.bin", tmp_path / "back.bin"
    local.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    try:
        push = adb.run("-s", serial(board), "push", str(local), "/userdata/big.bin", timeout=60)
        assert push.returncode == 0, push.stderr
        on_board = adb.shell(serial(board), "sha256sum /userdata/big.bin")
        assert on_board.stdout.split()[0] == digest  # the board's own sha256sum saw the same bytes
        pull = adb.run("-s", serial(board), "pull", "/userdata/big.bin", str(back), timeout=60)
        assert pull.returncode == 0, pull.stderr
        assert hashlib.sha256(back.read_bytes()).hexdigest() == digest
    finally:
        adb.shell(serial(board), "rm -f /userdata/big.bin")


# ------------------------------------------------------------------------------------------------ console, ssh
@pytest.mark.timeout(60)
def test_console_login_at_the_profile_baud_and_cat_etc_version(board, tmp_path):
    assert board["console"]["baud"] == 1500000
    with open_console(board, tmp_path / "console.log") as console:
        console.login(timeout=20)
        result = console.run("cat /etc/version", timeout=10)
        assert result.exit_code == 0
        assert result.stdout.strip() == "RK_VERSION=RV1126_RV1109_LINUX_SDK_V2.2.0_20211117"
        assert console.run("hostname", timeout=10).stdout.strip() == "rv1126"
    assert b"login:" in (tmp_path / "console.log").read_bytes()


@pytest.mark.timeout(60)
def test_paramiko_exec_and_sftp_round_trip(board, tmp_path):
    client = ssh_client(board)
    try:
        code, out, _ = ssh_exec(client, "cat /proc/device-tree/compatible | tr '\\0' ' '")
        assert code == 0 and "rockchip,rv1126" in out.split()
        assert ssh_exec(client, "exit 3")[0] == 3
        data = os.urandom(MIB + 123)
        (tmp_path / "up.bin").write_bytes(data)
        with client.open_sftp() as sftp:
            sftp.get_channel().settimeout(30)
            sftp.put(str(tmp_path / "up.bin"), "/userdata/sftp.bin")
            assert ssh_exec(client, "sha256sum /userdata/sftp.bin")[1].split()[0] == hashlib.sha256(data).hexdigest()
            sftp.get("/userdata/sftp.bin", str(tmp_path / "down.bin"))
            sftp.remove("/userdata/sftp.bin")
        assert (tmp_path / "down.bin").read_bytes() == data
    finally:
        client.close()


# ------------------------------------------------------------------------------------------------ reboot, power
@pytest.mark.timeout(90)
def test_adb_reboot_replays_the_boot_on_the_console_and_the_device_comes_back(sim, board, adb, tmp_path):
    boot = api.status(board["name"])["status"]["boot"]
    assert adb.shell(serial(board), "echo gone > /tmp/marker").returncode == 0
    with open_console(board, tmp_path / "console.log") as console:
        reboot = adb.run("-s", serial(board), "reboot", timeout=20)
        assert reboot.returncode == 0, reboot.stderr
        console.expect("reboot: Restarting system", timeout=15)
        console.expect(r"U-Boot 2017\.09", timeout=15)
        console.expect(r"Booting Linux", timeout=15)
        console.expect(r"rv1126 login:", timeout=15)
    sim.wait_boot(board["name"], boot + 1)
    adb.connect(serial(board))
    assert adb.shell(serial(board), "test -e /tmp/marker").returncode == 1  # /tmp is a tmpfs: lost on reboot


@pytest.mark.timeout(90)
def test_power_cycle_keeps_userdata_and_every_address_but_not_tmp(sim, board, adb):
    token = os.urandom(8).hex()
    name = board["name"]
    setup = adb.shell(serial(board), f"echo {token} > /userdata/keep.txt && echo {token} > /tmp/lose.txt && sync")
    assert setup.returncode == 0, setup.stderr
    before = api.endpoints(name)
    boot = api.status(name)["status"]["boot"]
    cycle = sim_cli("power", name, "cycle", home=sim.home)
    assert cycle.returncode == 0, cycle.stderr
    sim.wait_boot(name, boot + 1)
    after = api.endpoints(name)
    for key in ("adb", "ssh", "console", "control", "supervisor_pid"):
        assert after[key] == before[key], key
    adb.connect(serial(board))
    assert adb.shell(serial(board), "cat /userdata/keep.txt").stdout.strip() == token
    assert adb.shell(serial(board), "test -e /tmp/lose.txt").returncode == 1
    client = ssh_client(after)  # same port, same host key
    try:
        assert ssh_exec(client, "cat /userdata/keep.txt")[1].strip() == token
    finally:
        client.close()
    adb.shell(serial(board), "rm -f /userdata/keep.txt")


@pytest.mark.timeout(90)
def test_while_off_the_adb_and_ssh_ports_refuse_connections(sim, board, adb):
    name = board["name"]
    boot = api.status(name)["status"]["boot"]
    off = sim_cli("power", name, "off", home=sim.home)
    assert off.returncode == 0, off.stderr
    try:
        assert api.status(name)["power"] == "off"
        assert refuses(board["adb"]["host"], board["adb"]["port"])
        assert refuses(board["ssh"]["host"], board["ssh"]["port"])
        assert adb.run("connect", serial(board), timeout=15).stdout.strip().startswith("failed to connect")
    finally:
        on = sim_cli("power", name, "on", home=sim.home)
    assert on.returncode == 0, on.stderr
    sim.wait_boot(name, boot + 1)
    adb.connect(serial(board))
    assert adb.shell(serial(board), "true").returncode == 0


# ------------------------------------------------------------------------------------------------ two boards
@pytest.mark.timeout(90)
def test_two_boards_side_by_side_have_their_own_ports_and_chips(sim, board, adb):
    other = sim.up("rk3588")
    for key in ("adb", "ssh"):
        assert other[key]["port"] != board[key]["port"]
    assert other["control"] != board["control"]
    assert other["console"]["path"] != board["console"]["path"]
    adb.connect(serial(other))
    adb.connect(serial(board))
    chips = {}
    for endpoints in (board, other):
        result = adb.shell(serial(endpoints), "cat /proc/device-tree/compatible")
        assert result.returncode == 0
        chips[endpoints["name"]] = [c for c in result.stdout.split("\0") if c]
    assert chips["rv1126"][-1] == "rockchip,rv1126"
    assert chips["rk3588"][-1] == "rockchip,rk3588"
    assert adb.shell(serial(other), "cat /etc/hostname").stdout.strip() == "rk3588"
    assert not sim.down("rk3588")  # nothing of the rk3588 is left
    assert adb.shell(serial(board), "true").returncode == 0  # stopping one board left the other alone
