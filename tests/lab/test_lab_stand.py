"""The lab stand (``npu-hil lab up/status/down``): a real labgrid coordinator, exporter and ser2net, one real adb
server and two simulated boards, all on 127.0.0.1, used only the way a lab user would use them.

Places are listed and acquired with the ``labgrid-client`` CLI; the acquired place's resources come from
``labgrid-client env``; the console is read through ser2net with pyserial's rfc2217 client, SSH with paramiko
(strict host keys from the stand's known_hosts), adb with the Debian ``adb`` CLI against the lab host's server.
The module's stand is torn down by :func:`support.lab.lab_stand`, which asserts no process it started is left.
Ports: adb server 15183 (S's range) for the failure test; everything else on free ephemeral ports.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import paramiko
import pytest
import serial
import yaml
from labgrid.factory import target_factory
from labgrid.remote.config import ResourceConfig
from support.lab import lab_fixture, labgrid_client, stand_pids
from support.processes import alive, processes_matching, processes_mentioning

from harness.errors import ConfigError
from harness.lab.labgrid import exporter_yaml, stand_status
from harness.lab.labgrid.client import parse_show
from harness.lab.labgrid.stand import StepFailed, lab_up, restart_exporter
from harness.lab.labgrid.stand_files import read_state
from harness.links.ports import free_port

REPO = Path(__file__).resolve().parents[2]
FAILURE_ADB_PORT = 15183

lab = lab_fixture(boards=2)  # adb server on a free ephemeral port: safe when xdist gives each worker a stand


# ------------------------------------------------------------------------------ exporter YAML (no processes)
def _export(place: str, password: str = "rockchip") -> exporter_yaml.PlaceExport:
    endpoints = {"console": {"path": "/dev/pts/7", "baud": 1500000},
                 "ssh": {"host": "127.0.0.1", "port": 2222, "user": "root", "password": password},
                 "adb": {"serial": "127.0.0.1:5599"}}
    return exporter_yaml.PlaceExport.from_sim_endpoints(place, endpoints, ("127.0.0.1", 15181))


def _load_with_labgrid(tmp_path: Path, exports: list[exporter_yaml.PlaceExport]) -> dict:
    path = exporter_yaml.write(tmp_path / "exporter.yaml", exports)
    return ResourceConfig(str(path), {"env": {}, "isolated": False, "hostname": "h", "name": "n"}).data


def test_exporter_yaml_is_read_by_labgrids_own_loader(tmp_path: Path) -> None:
    data = _load_with_labgrid(tmp_path, [_export("rv1126-01", password="pa#ss"), _export("rk3588-02")])
    assert list(data) == ["rv1126-01", "rk3588-02"]
    group = data["rv1126-01"]
    # each resource must be constructible by labgrid's resource classes, as the exporter does with them
    made = {}
    for name, params in group.items():
        params = dict(params)
        made[name] = target_factory.resources[params.pop("cls")](None, None, **params)
    assert type(made["console"]).__name__ == "RawSerialPort"
    assert (made["console"].port, made["console"].speed) == ("/dev/pts/7", 1500000)
    assert (made["ssh"].address, made["ssh"].port, made["ssh"].password) == ("127.0.0.1", 2222, "pa#ss")
    assert (made["adb"].address, made["adb"].port, made["adb"].username) == ("127.0.0.1", 15181, "127.0.0.1:5599")


def test_exporter_yaml_refuses_jinja_markup_and_duplicate_places(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Jinja2"):
        exporter_yaml.render([_export("rv1126-01", password="{{ env.HOME }}")])
    with pytest.raises(ConfigError, match="twice"):
        exporter_yaml.render([_export("rv1126-01"), _export("rv1126-01")])
    with pytest.raises(ConfigError, match="incomplete endpoints"):
        exporter_yaml.PlaceExport.from_sim_endpoints("x", {"console": {}}, ("127.0.0.1", 1))


# ------------------------------------------------------------------------------------ the running stand
def test_places_are_listed_with_their_tags(lab) -> None:
    done = labgrid_client(lab.coordinator, "-v", "places")
    assert done.returncode == 0, done.stderr
    places = {info.name: info for info in parse_show(done.stdout)}
    assert lab.places == ["rv1126-01", "rk3588-02"]
    assert places["rv1126-01"].tags == {"soc": "rv1126", "npu": "rknpu1", "board": "rv1126-01"}
    assert places["rk3588-02"].tags == {"soc": "rk3588", "npu": "rknpu2", "board": "rk3588-02"}
    assert all(p.acquired is None for p in places.values())


def _acquired_env(lab, place: str) -> dict[str, dict]:
    """Acquire ``place`` with labgrid-client and return its resources from ``labgrid-client env`` by name."""
    done = labgrid_client(lab.coordinator, "-p", place, "acquire")
    assert done.returncode == 0, done.stderr
    env = labgrid_client(lab.coordinator, "-p", place, "env")
    assert env.returncode == 0, env.stderr
    resources = {}
    for item in yaml.safe_load(env.stdout)["targets"][place]["resources"]:
        (cls, args), = item.items()
        resources[args.get("name", cls)] = {"cls": cls, **args}
    return resources


def _read_until(port: serial.Serial, wanted: tuple[bytes, ...], deadline_s: float) -> bytes:
    seen = b""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end and not any(w in seen for w in wanted):
        seen += port.read(256)
    return seen


def test_acquired_place_exports_console_ssh_and_adb(lab, tmp_path: Path) -> None:
    place = "rv1126-01"
    try:
        res = _acquired_env(lab, place)
        status = stand_status.stand_status(lab.lab_dir)
        assert status["places"][place]["acquired"] is not None
        assert status["places"]["rk3588-02"]["acquired"] is None

        console = res["console"]
        assert console["cls"] == "NetworkSerialPort" and console["port"]
        url = f"rfc2217://{console['host']}:{console['port']}?ign_set_control"
        with serial.serial_for_url(url, baudrate=console["speed"], timeout=0.5) as port:
            port.write(b"\n")
            seen = _read_until(port, (b"login:", b"# "), 15.0)
        assert b"rv1126 login:" in seen or b"# " in seen, seen[-300:]

        ssh = res["ssh"]
        client = paramiko.SSHClient()
        client.load_host_keys(str(lab.lab_dir / "known_hosts"))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        client.connect(ssh["address"], port=ssh["port"], username=ssh["username"], password=ssh["password"],
                       timeout=10, banner_timeout=10, auth_timeout=10, allow_agent=False, look_for_keys=False)
        try:
            _, out, _ = client.exec_command("cat /proc/device-tree/compatible | tr '\\0' ' '; echo", timeout=20)
            assert "rv1126" in out.read().decode()
        finally:
            client.close()

        adb = res["adb"]
        home = tmp_path / "adbclient"
        (home / "tmp").mkdir(parents=True)
        env = dict(os.environ, HOME=str(home), TMPDIR=str(home / "tmp"))
        env.pop("ANDROID_SERIAL", None)
        done = subprocess.run(["adb", "-H", adb["address"], "-P", str(adb["port"]), "-s", adb["username"],
                               "shell", "echo", "lab-adb-ok"], capture_output=True, text=True, timeout=30, env=env,
                              stdin=subprocess.DEVNULL, check=False)
        assert done.returncode == 0 and done.stdout.strip() == "lab-adb-ok", done.stdout + done.stderr
    finally:
        labgrid_client(lab.coordinator, "-p", place, "release")


def test_restart_exporter_brings_every_resource_back(lab) -> None:
    before = read_state(lab.lab_dir)["exporter_proc"]
    restart_exporter(lab.lab_dir, timeout=30)
    after = read_state(lab.lab_dir)["exporter_proc"]
    assert after["pid"] != before["pid"] and not alive(before["pid"]) and alive(after["pid"])
    status = stand_status.stand_status(lab.lab_dir)
    assert all(all(p["resources"].values()) for p in status["places"].values()), status["places"]


# ------------------------------------------------------------------------------------ failures and the CLI
def test_failed_lab_up_names_the_step_and_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("NPU_HIL_SIM_HOME", str(tmp_path / "simhome"))
    with pytest.raises(ConfigError, match="unknown profile"):
        lab_up(1, lab_dir=tmp_path / "lab", profiles=("no-such-board",))
    port = free_port()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", FAILURE_ADB_PORT))
        squatter.listen(1)
        with pytest.raises(StepFailed, match=r"step 'start adb server'.*see .*adb-server\.log"):
            lab_up(1, lab_dir=tmp_path / "lab", coordinator_port=port, adb_port=FAILURE_ADB_PORT,
                   profiles=("rv1126",), timeout=60)
    assert read_state(tmp_path / "lab") is None
    assert not processes_matching(f"--listen 127.0.0.1:{port}")
    deadline = time.monotonic() + 10
    while processes_mentioning(str(tmp_path)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not processes_mentioning(str(tmp_path))


def _cli(*args: str, home: Path, timeout: float = 120.0) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LG_")}
    env.update(NPU_HIL_SIM_HOME=str(home), NPU_HIL_LAB_DIR=str(home / "lab"))
    return subprocess.run([sys.executable, "-m", "harness", "lab", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=REPO, stdin=subprocess.DEVNULL, check=False)


def test_cli_up_status_down(tmp_path: Path) -> None:
    home, port = tmp_path / "simhome", free_port()
    up = _cli("up", "--boards", "1", "--profile", "rk3566", "--port", str(port), home=home)
    pids: list[int] = []
    try:
        assert up.returncode == 0, up.stderr
        pids = stand_pids(home / "lab")
        assert f"LG_COORDINATOR=127.0.0.1:{port} labgrid-client places" in up.stdout
        assert f"--boards-file {home / 'lab' / 'boards.toml'}" in up.stdout
        assert pids and all(alive(pid) for pid in pids)  # the stand outlives the command

        again = _cli("up", "--boards", "1", "--port", str(port), home=home)
        assert again.returncode == 2 and "already running" in again.stderr and again.stderr.count("\n") == 1

        status = _cli("status", home=home)
        assert status.returncode == 0, status.stderr
        line = next(ln for ln in status.stdout.splitlines() if ln.startswith("rk3566-01"))
        assert "free" in line and "console:ok ssh:ok adb:ok" in line and "soc=rk3566" in line
    finally:
        down = _cli("down", home=home)
    assert down.returncode == 0, down.stderr
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in pids if alive(pid)]
    assert read_state(home / "lab") is None
    assert "no lab stand" in _cli("down", home=home).stdout
