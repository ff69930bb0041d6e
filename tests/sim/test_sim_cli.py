"""``npu-hil sim`` as a user runs it: a real subprocess per command, boards as separate processes.

What ``sim up`` prints must be enough to reach the board (each endpoint is dialled here, not just read), ``sim
list`` must show it, ``sim down`` must leave no process, and every user mistake must be one line on stderr, a
non-zero exit and nothing left running.
"""

from __future__ import annotations

import json
import os
import socket
import stat

import pytest
from support.processes import leftovers, processes_mentioning
from support.sim import SimBoards, read_json, sim_cli, ssh_client, ssh_exec

from harness.sim.faults import KINDS

ADB_EMULATOR_PORTS = range(5555, 5586)


def one_line_error(result) -> str:
    """The single stderr line of a failed command (asserts there is exactly one, and no traceback)."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0, result
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("npu-hil: error: "), lines[0]
    return lines[0]


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A simulator home of this test's own; every board left in it is downed and must leave no process."""
    folder = tmp_path / "simhome"
    folder.mkdir()
    monkeypatch.setenv("NPU_HIL_SIM_HOME", str(folder))
    boards = SimBoards(folder)
    yield folder
    boards.names = [p.name for p in folder.iterdir() if (p / "config.json").exists()]
    boards.stop_all()


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    """One board started through the CLI (with a component version override and a fault) for the misuse tests."""
    folder = tmp_path_factory.mktemp("simhome")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NPU_HIL_SIM_HOME", str(folder))
        boards = SimBoards(folder)
        boards.names.append("cli-board")
        try:
            result = sim_cli("up", "rv1126", "--name", "cli-board", "--version", "rknn_server=1.6.0",
                             "--fault", "slow-npu=2", "--compact", home=folder)
            assert result.returncode == 0, result.stderr
            yield folder, json.loads(result.stdout)
        finally:
            boards.stop_all()


def test_up_prints_one_json_object_with_every_endpoint_and_each_answers(home):
    result = sim_cli("up", "rv1126", home=home)
    assert result.returncode == 0, result.stderr
    endpoints = json.loads(result.stdout)  # the whole output is one JSON object
    assert isinstance(endpoints, dict) and endpoints["status"]["state"] == "running"

    console = endpoints["console"]
    assert console["baud"] == 1500000 and console["login"] == "root" and console["password"]
    assert stat.S_ISCHR(os.stat(console["path"]).st_mode)  # a pty, for pyserial
    assert os.path.realpath(console["link"]) == console["path"]

    adb = endpoints["adb"]
    assert adb["host"] == "127.0.0.1" and adb["port"] not in ADB_EMULATOR_PORTS
    assert adb["serial"] == f"{adb['host']}:{adb['port']}"
    with socket.create_connection((adb["host"], adb["port"]), timeout=5):
        pass

    ssh = endpoints["ssh"]
    assert ssh["host"] == "127.0.0.1" and ssh["user"] == "root" and os.path.isfile(ssh["key"])
    client = ssh_client(endpoints)  # the printed password and host key are the right ones
    try:
        assert ssh_exec(client, "hostname")[1].strip() == "rv1126"
    finally:
        client.close()

    host, _, port = endpoints["control"].rpartition(":")
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        conn.sendall(b'{"op": "status"}\n')
        assert json.loads(conn.makefile().readline())["ok"] is True

    assert endpoints["state_dir"] == str(home / "sim-rv1126") and os.path.isdir(endpoints["state_dir"])


def test_list_shows_the_board_and_down_leaves_no_process(home):
    up = sim_cli("up", "rk3588", "--name", "lab-3588", "--compact", home=home)
    assert up.returncode == 0, up.stderr
    endpoints = json.loads(up.stdout)
    pids = [endpoints["supervisor_pid"], endpoints["status"]["board_pid"]]

    listing = sim_cli("list", home=home)
    assert listing.returncode == 0, listing.stderr
    line = next(line for line in listing.stdout.splitlines() if line.startswith("lab-3588 "))
    assert line.split()[1:3] == ["rk3588", "running"] and endpoints["adb"]["serial"] in line
    boards = json.loads(sim_cli("list", "--json", home=home).stdout)
    assert [(b["name"], b["running"]) for b in boards] == [("lab-3588", True)]

    down = sim_cli("down", "lab-3588", home=home)
    assert down.returncode == 0, down.stderr
    assert leftovers(pids, home) == []
    line = next(line for line in sim_cli("list", home=home).stdout.splitlines() if line.startswith("lab-3588 "))
    assert line.split()[2] == "down"


@pytest.mark.parametrize("args, says", [
    (["up", "rv9999"], "unknown profile 'rv9999'"),
    (["up", "rv1126", "--fault", "bogus"], "unknown fault 'bogus'"),
    (["up", "rv1126", "--fault", "server-stopped=1"], "takes no value"),
    (["up", "rv1126", "--version", "bogus=1"], "bogus"),
    (["up", "rv1126", "--version", "rknn_server"], "COMPONENT=VERSION"),
    (["up", "rv1126", "--name", "../escape"], "invalid board name"),
    (["image", "rv9999", "--rk-version", "V1", "-o", "u.img"], "unknown profile 'rv9999'"),
    (["image", "rv1126", "--rk-version", "V1", "--version", "bogus=1", "-o", "u.img"], "bogus"),
    (["image", "rv1126", "--rk-version", "V1", "-o", "/nonexistent/u.img"], "folder /nonexistent does not exist"),
    (["down", "nosuch"], "nosuch"),
    (["fault", "nosuch", "npu-hang"], "nosuch"),
    (["power", "nosuch", "cycle"], "nosuch"),
])
def test_bad_input_is_one_line_on_stderr_and_leaves_no_process(home, args, says):
    result = sim_cli(*args, home=home)
    assert says in one_line_error(result)
    assert result.stdout == ""
    assert processes_mentioning(str(home)) == []
    assert not any(read_json(p / "status.json").get("state") == "running" for p in home.iterdir())


def test_a_name_already_in_use_is_refused_and_the_running_board_is_untouched(running):
    folder, endpoints = running
    before = sorted(processes_mentioning(str(folder)))
    assert "already running" in one_line_error(sim_cli("up", "rv1126", "--name", "cli-board", home=folder))
    assert sorted(processes_mentioning(str(folder))) == before
    assert read_json(folder / "cli-board" / "endpoints.json")["supervisor_pid"] == endpoints["supervisor_pid"]


def test_unknown_fault_on_a_running_board_is_one_line_and_changes_nothing(running):
    folder, _ = running
    assert "unknown fault 'bogus'" in one_line_error(sim_cli("fault", "cli-board", "bogus", home=folder))
    assert "takes no value" in one_line_error(sim_cli("fault", "cli-board", "npu-hang=3", home=folder))
    faults = sim_cli("fault", "cli-board", "wrong-output", home=folder)
    assert faults.returncode == 0 and json.loads(faults.stdout) == {"slow-npu": "2", "wrong-output": None}
    cleared = sim_cli("fault", "cli-board", "wrong-output", "--clear", home=folder)
    assert cleared.returncode == 0 and json.loads(cleared.stdout) == {"slow-npu": "2"}


def test_clear_option_may_come_before_the_fault_name(running):
    """``sim fault NAME --clear FAULT`` is how people type it; argparse must not call FAULT unrecognized."""
    folder, _ = running
    assert sim_cli("fault", "cli-board", "adb-drop", home=folder).returncode == 0
    cleared = sim_cli("fault", "cli-board", "--clear", "adb-drop", home=folder)
    if cleared.returncode != 0:
        sim_cli("fault", "cli-board", "adb-drop", "--clear", home=folder)  # leave the board as it was
    assert cleared.returncode == 0, cleared.stderr
    assert json.loads(cleared.stdout) == {"slow-npu": "2"}


def test_version_override_from_the_command_line_reaches_the_board(running):
    _, endpoints = running
    client = ssh_client(endpoints)
    try:
        code, out, _ = ssh_exec(client, "strings /usr/bin/rknn_server | grep build; "
                                        "strings /usr/lib/librknn_runtime.so | grep version")
    finally:
        client.close()
    assert code == 0
    server, runtime = out.splitlines()
    assert server.startswith("1.6.0 (") and runtime.startswith("librknn_runtime version 1.7.1 (")


@pytest.mark.parametrize("args", [["--help"], ["up", "--help"], ["fault", "--help"]])
def test_help_lists_every_fault(tmp_path, args):
    result = sim_cli(*args, home=tmp_path)
    assert result.returncode == 0 and "faults:" in result.stdout
    for name in KINDS:
        assert f"  {name}" in result.stdout, name


@pytest.mark.parametrize("typed", ["rv1126", "sim-rv1126"])
def test_up_by_profile_or_sim_name_starts_the_board_pytest_reuses(home, typed):
    from harness.config.loader import load_inventory
    from harness.connect import start_simulator

    up = sim_cli("up", typed, "--compact", home=home)
    assert up.returncode == 0, up.stderr
    endpoints = json.loads(up.stdout)
    assert endpoints["state_dir"] == str(home / "sim-rv1126")

    fault = sim_cli("fault", "rv1126", "npu-hang", home=home)  # typed as the README shows it
    assert fault.returncode == 0, fault.stderr
    assert "npu-hang" in json.loads(fault.stdout)

    attached, started = start_simulator(load_inventory(None).get("sim-rv1126"), owner_pid=None)
    assert not started and attached["supervisor_pid"] == endpoints["supervisor_pid"]

    down = sim_cli("down", "rv1126", home=home)
    assert down.returncode == 0, down.stderr
    assert leftovers([endpoints["supervisor_pid"], endpoints["status"]["board_pid"]], home) == []
