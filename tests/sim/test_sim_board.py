"""Whole simulated boards as separate processes, seen only through real clients: the issue's proofs.

Boards are started with :func:`harness.sim.api.up` (a detached supervisor process that runs the board's OS in a
child process) in a folder of our own (``NPU_HIL_SIM_HOME``), and observed only from outside: the Debian ``adb``
CLI on our own adb server (port 15120, own HOME/TMPDIR), pyserial on the console pty, paramiko over TCP. Every
board is stopped with :func:`api.down` at the end, which must leave no process behind.

The helpers at the top (``AdbCli``, ``SimBoards``, ``processes_mentioning``) are shared with
``test_sim_cli.py`` and ``test_sim_faults.py``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paramiko
import pytest

from harness.links.adb_server import AdbServer
from harness.links.console import ConsoleLink
from harness.sim import api

ADB_PORT = 15120
MIB = 1024 * 1024
BOOT_TIMEOUT = 30.0


# ------------------------------------------------------------------------------------------------ processes
def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (a reaped-later child of ours is already dead)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def processes_mentioning(text: str) -> list[str]:
    """``"PID: cmdline"`` of every live process whose command line contains ``text`` (e.g. a test's folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if text.encode() in raw:
            command = raw.replace(b"\0", b" ").decode(errors="replace").strip()
            found.append(f"{entry.name}: {command}")
    return found


def leftovers(pids: list[int], folder: Path, timeout: float = 10.0) -> list[str]:
    """What is still running after ``timeout``: any of ``pids``, or any process that mentions ``folder``."""
    deadline = time.monotonic() + timeout
    while True:
        left = [f"{pid}: still alive" for pid in pids if _alive(pid)] + processes_mentioning(str(folder))
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.05)


def sim_cli(*args: str, home: Path, timeout: float = 60.0) -> subprocess.CompletedProcess:
    """``npu-hil sim ARGS`` as a real subprocess of this interpreter, against the simulator home ``home``."""
    env = dict(os.environ, NPU_HIL_SIM_HOME=str(home))
    return subprocess.run([sys.executable, "-m", "harness", "sim", *args], env=env, capture_output=True, text=True,
                          check=False, timeout=timeout, stdin=subprocess.DEVNULL,
                          cwd=Path(__file__).resolve().parents[2])


# ------------------------------------------------------------------------------------------------ boards
def read_json(path: Path) -> dict[str, Any]:
    """A board's state file ({} while it is missing or being replaced)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


class SimBoards:
    """The boards one test module starts in its own simulator home; :meth:`stop_all` proves nothing is left."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.names: list[str] = []

    def up(self, profile: str, **kwargs: Any) -> dict[str, Any]:
        name = kwargs.get("name") or profile
        if name not in self.names:
            self.names.append(name)
        return api.up(profile, timeout=BOOT_TIMEOUT, **kwargs)

    def pids(self, name: str) -> list[int]:
        """The board's supervisor and its current board-OS process (read before ``down``: it rewrites status)."""
        pids = []
        for file, key in (("endpoints.json", "supervisor_pid"), ("status.json", "board_pid")):
            pid = read_json(self.home / name / file).get(key)
            if pid:
                pids.append(int(pid))
        return pids

    def down(self, name: str) -> list[str]:
        """Stop one board; returns what is left of it (empty when the board is really gone)."""
        pids = self.pids(name)
        api.down(name)
        return leftovers(pids, self.home / name)

    def stop_all(self) -> None:
        left = []
        for name in self.names:
            left += self.down(name)
        left += leftovers([], self.home)
        assert not left, f"processes left after api.down: {left}"

    def wait_boot(self, name: str, boot: int, timeout: float = BOOT_TIMEOUT) -> dict[str, Any]:
        """Wait until boot number ``boot`` of the board is running (a stale "running" of the last boot won't do)."""
        deadline = time.monotonic() + timeout
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = read_json(self.home / name / "status.json")
            if status.get("boot") == boot and status.get("state") == "running":
                return status
            time.sleep(0.05)
        raise AssertionError(f"{name}: boot {boot} not running within {timeout} s; status {status}")


def sim_boards(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimBoards]:
    """Body of a module-scoped fixture: a fresh NPU_HIL_SIM_HOME for the module, every board downed after."""
    home = tmp_path_factory.mktemp("simhome")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NPU_HIL_SIM_HOME", str(home))
        boards = SimBoards(home)
        try:
            yield boards
        finally:
            boards.stop_all()


# ------------------------------------------------------------------------------------------------ adb
class AdbCli:
    """The Debian ``adb`` CLI on our own server (own port, HOME, TMPDIR); every call has a deadline."""

    def __init__(self, port: int, home: Path) -> None:
        self.port = port
        self.server = AdbServer(port=port, home=home, usb=False)

    def start(self) -> AdbCli:
        self.server.start(timeout=15)
        return self

    def stop(self) -> None:
        """``adb kill-server``, then the server's PID is killed if it is still there."""
        try:
            self.run("kill-server", timeout=10)
        finally:
            self.server.stop()

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(["adb", "-P", str(self.port), *args], env=self.server.environment(),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def run(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
        """Run one adb command; on its deadline the client is killed and TimeoutExpired raised."""
        proc = self.popen(*args)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
        return subprocess.CompletedProcess(proc.args, proc.returncode, out.decode(errors="replace"),
                                           err.decode(errors="replace"))

    def shell(self, serial: str, command: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
        return self.run("-s", serial, "shell", command, timeout=timeout)

    def state(self, serial: str) -> str | None:
        """The serial's state in ``adb devices`` (device, offline, ...), None when it is not listed."""
        for line in self.run("devices", timeout=10).stdout.splitlines()[1:]:
            parts = line.split()
            if len(parts) >= 2 and parts[0] == serial:
                return parts[1]
        return None

    def connect(self, serial: str, timeout: float = BOOT_TIMEOUT) -> None:
        """Bring ``serial`` to ``device`` state: the server retries a lost device only every 10 s, so loop
        disconnect + connect ourselves (adb-notes.md)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.state(serial) == "device":
                return
            if time.monotonic() >= deadline:
                raise AssertionError(f"adb: {serial} not in device state within {timeout} s: "
                                     f"{self.run('devices', timeout=10).stdout!r}")
            self.run("disconnect", serial, timeout=10)
            try:
                self.run("connect", serial, timeout=min(5.0, max(0.5, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                pass
            time.sleep(0.2)


def adb_cli(tmp_path_factory: pytest.TempPathFactory, port: int) -> Iterator[AdbCli]:
    """Body of a module-scoped fixture: our own adb server on ``port``, killed (and its PID checked) after."""
    adb = AdbCli(port, tmp_path_factory.mktemp(f"adb{port}")).start()
    pid = adb.server.pid
    try:
        yield adb
    finally:
        adb.stop()
        assert pid is not None and not _alive(pid), f"adb server pid {pid} survived kill-server"


def open_console(endpoints: dict[str, Any], capture: Path) -> ConsoleLink:
    console = endpoints["console"]
    return ConsoleLink(console["path"], baud=console["baud"], capture=capture, login=console["login"],
                       password=console["password"]).open()


def ssh_client(endpoints: dict[str, Any]) -> paramiko.SSHClient:
    """paramiko with strict host-key checking against the key the board advertised in its endpoints."""
    ssh = endpoints["ssh"]
    client = paramiko.SSHClient()
    key_type, key_b64 = ssh["host_key"].split()[:2]
    host_key = paramiko.PKey.from_type_string(key_type, base64.b64decode(key_b64))
    client.get_host_keys().add(f"[{ssh['host']}]:{ssh['port']}", key_type, host_key)
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(ssh["host"], port=ssh["port"], username=ssh["user"], password=ssh["password"], timeout=10,
                   banner_timeout=10, auth_timeout=10, allow_agent=False, look_for_keys=False)
    return client


def ssh_exec(client: paramiko.SSHClient, command: str, timeout: float = 30.0) -> tuple[int, str, str]:
    _, stdout, stderr = client.exec_command(command, timeout=timeout)
    out, err = stdout.read().decode(), stderr.read().decode()
    return stdout.channel.recv_exit_status(), out, err


def refuses(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    yield from sim_boards(tmp_path_factory)


@pytest.fixture(scope="module")
def adb(tmp_path_factory):
    yield from adb_cli(tmp_path_factory, ADB_PORT)


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
