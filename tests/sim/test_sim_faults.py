"""The manual's faults on whole simulated boards, each observed through a real client as a lab would see it.

Faults that can be set and cleared live share two boards (an rv1126 for galcore and adb, an rk3588 for the
NPU); faults that act at boot (panic-at-boot, boot-hang, reboot-after) get a board of their own. Commands are
the manual's own (``strings /usr/bin/rknn_server | grep build``, ``dmesg | grep -i galcore``, ...), run over the
Debian ``adb`` CLI on our own server (port 15121); consoles are read with pyserial.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import time
from typing import Any

import numpy as np
import pytest
from support.adb import adb_fixture
from support.models import classifier_onnx
from support.net import refuses
from support.sim import open_console, sim_cli, sim_fixture

from harness.errors import LinkTimeout
from harness.npu.rknn_file import pack_sim_model
from harness.sim import api

ADB_PORT = 15121
MIB = 1024 * 1024
AVG = re.compile(r"^Avg Time (\d+\.\d\d)ms", re.MULTILINE)
FIND_SERVER = "grep -l rknn_server /proc/*/comm"  # the manual's check that rknn_server runs
BENCH = "cd /userdata && rknn_benchmark m.rknn in.npy"
#: The components of the 1.6.0 row (manual 4.1.3), which the *-mismatch faults install on a 1.7.1 RV1126.
OTHER_RELEASE = {"rknn_server": "1.6.0", "driver": "6.4.3.5.293908", "runtime": "1.6.0"}


# ------------------------------------------------------------------------------------------------ helpers
def classifier_model() -> bytes:
    """A small conv classifier (input NCHW [1, 3, 16, 16], 10 scores) packed for both test chips."""
    return pack_sim_model(classifier_onnx(0), target_platforms=["rk3588", "rv1126"], toolkit_version="2.3.2")


def poll(check, timeout: float = 10.0, interval: float = 0.2):
    """The first truthy result of ``check()`` within ``timeout`` (faults reach the board within ~0.25 s)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() >= deadline:
            return result
        time.sleep(interval)


class Board:
    """One running board as the tests see it: its endpoints and the adb CLI."""

    def __init__(self, endpoints: dict[str, Any], adb) -> None:
        self.endpoints, self.adb = endpoints, adb
        self.name, self.serial = endpoints["name"], endpoints["adb"]["serial"]

    def sh(self, command: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
        return self.adb.shell(self.serial, command, timeout=timeout)

    def connect(self) -> None:
        self.adb.connect(self.serial)

    def fault(self, spec: str) -> None:
        api.fault(self.name, spec)

    def clear(self, name: str) -> None:
        api.fault(self.name, name, clear=True)

    def pull(self, board_path: str, local) -> np.ndarray:
        result = self.adb.run("-s", self.serial, "pull", board_path, str(local), timeout=30)
        assert result.returncode == 0, result.stderr
        return np.load(local)

    def benchmark(self, loops: int = 10, timeout: float = 60.0) -> subprocess.CompletedProcess:
        return self.sh(f"{BENCH} {loops}", timeout=timeout)

    def server_pid(self) -> str:
        found = self.sh(FIND_SERVER).stdout.split()  # nothing found: no output (exit 1, or 2 without any /proc/N)
        return found[0].split("/")[2] if found else ""


def avg_ms(result: subprocess.CompletedProcess) -> float:
    match = AVG.search(result.stdout)
    assert match, result.stdout + result.stderr
    return float(match.group(1))


# ------------------------------------------------------------------------------------------------ fixtures
sim = sim_fixture()
adb = adb_fixture(ADB_PORT)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    (folder / "m.rknn").write_bytes(classifier_model())
    np.save(folder / "in.npy", np.random.default_rng(7).standard_normal((1, 16, 16, 3)).astype(np.float32))
    return folder


def _with_model(board: Board, models) -> Board:
    board.connect()
    for name in ("m.rknn", "in.npy"):
        result = board.adb.run("-s", board.serial, "push", str(models / name), f"/userdata/{name}", timeout=30)
        assert result.returncode == 0, result.stderr
    return board


@pytest.fixture(scope="module")
def rv1126(sim, adb, models):
    return _with_model(Board(sim.up("rv1126"), adb), models)


@pytest.fixture(scope="module")
def rk3588(sim, adb, models, tmp_path_factory):
    """The NPU board, with a clean run's output and mean latency to compare faulty runs with."""
    board = _with_model(Board(sim.up("rk3588"), adb), models)
    result = board.benchmark(10)
    assert result.returncode == 0, result.stdout + result.stderr
    board.clean_avg = avg_ms(result)
    board.clean_output = board.pull("/userdata/rt_output0.npy", tmp_path_factory.mktemp("clean") / "out.npy")
    return board


@pytest.fixture
def live():
    """Clears, after the test, every fault the test set on a shared board, so tests stay independent."""
    boards: list[Board] = []
    yield boards.append
    for board in boards:
        api.fault(board.name, "", clear=True)


# ------------------------------------------------------------------------------------------------ versions
@pytest.mark.timeout(60)
@pytest.mark.parametrize("fault, command, clean, faulty", [
    ("server-mismatch", "strings /usr/bin/rknn_server | grep build", "1.7.1 (", OTHER_RELEASE["rknn_server"] + " ("),
    ("driver-mismatch", "dmesg | grep -i galcore | grep -i version | tail -n 1", "Galcore version 6.4.6.5.351518",
     "Galcore version " + OTHER_RELEASE["driver"]),
    ("runtime-mismatch", "strings /usr/lib/librknn_runtime.so | grep version", "librknn_runtime version 1.7.1 (",
     "librknn_runtime version " + OTHER_RELEASE["runtime"] + " ("),
])
def test_mismatch_faults_show_the_other_release_in_the_manuals_commands(rv1126, live, fault, command, clean, faulty):
    assert clean in rv1126.sh(command).stdout
    live(rv1126)
    rv1126.fault(fault)
    shown = poll(lambda: faulty in (out := rv1126.sh(command).stdout) and out)
    assert shown, rv1126.sh(command).stdout
    others = {"server-mismatch": "strings /usr/bin/rknn_server | grep build",
              "runtime-mismatch": "strings /usr/lib/librknn_runtime.so | grep version"}
    for other, other_command in others.items():
        if other != fault:  # one component from another release, the rest still from 1.7.1
            assert "1.7.1 (" in rv1126.sh(other_command).stdout, other


# ------------------------------------------------------------------------------------------------ rknn_server
@pytest.mark.timeout(60)
def test_server_stopped_leaves_no_rknn_server_and_restart_rknn_brings_it_back(rv1126, live):
    assert rv1126.server_pid()
    live(rv1126)
    rv1126.fault("server-stopped")
    try:
        assert poll(lambda: not rv1126.server_pid()), rv1126.sh(FIND_SERVER).stdout
        restart = rv1126.sh("restart_rknn.sh")
        assert restart.returncode == 0, restart.stderr
        time.sleep(1.0)  # the board applies faults every 0.25 s: a restarted server must survive that
        assert rv1126.server_pid(), "rknn_server died again after restart_rknn.sh"
    finally:
        rv1126.clear("server-stopped")
        rv1126.sh("restart_rknn.sh")  # leave the shared board with its server, whatever happened above


# ------------------------------------------------------------------------------------------------ NPU
@pytest.mark.timeout(60)
def test_wrong_output_differs_from_a_clean_boards_output(rk3588, rv1126, live, tmp_path):
    clean = rv1126.benchmark(2)  # the same model on the other (clean) board agrees with rk3588's clean run
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert np.allclose(rv1126.pull("/userdata/rt_output0.npy", tmp_path / "rv.npy"), rk3588.clean_output, atol=1e-5)
    live(rk3588)
    rk3588.fault("wrong-output")
    result = rk3588.benchmark(2)
    assert result.returncode == 0 and "E RKNN" not in result.stderr  # silent
    wrong = rk3588.pull("/userdata/rt_output0.npy", tmp_path / "wrong.npy")
    assert wrong.shape == rk3588.clean_output.shape
    assert not np.allclose(wrong, rk3588.clean_output, atol=1e-2)


@pytest.mark.timeout(60)
def test_slow_npu_multiplies_the_reported_latency(rk3588, live):
    live(rk3588)
    rk3588.fault("slow-npu=4")
    result = rk3588.benchmark(10)
    assert result.returncode == 0, result.stdout + result.stderr
    assert avg_ms(result) > 2.5 * rk3588.clean_avg


def _hang_one_run(board: Board) -> None:
    """Start a benchmark on the hung NPU and give up after a 3 s client timeout, as a lab script would."""
    board.sh("dmesg -c >/dev/null")
    board.fault("npu-hang")
    with pytest.raises(subprocess.TimeoutExpired):
        board.benchmark(1, timeout=3)


@pytest.mark.timeout(60)
def test_npu_hang_does_not_finish_within_a_client_timeout_and_dmesg_shows_it(rk3588, live):
    live(rk3588)
    _hang_one_run(rk3588)
    dmesg = rk3588.sh("dmesg | grep RKNPU").stdout
    assert "RKNPU: job timeout" in dmesg, dmesg
    rk3588.clear("npu-hang")
    assert rk3588.benchmark(1, timeout=30).returncode == 0  # cleared: the NPU answers again


@pytest.mark.timeout(60)
def test_a_killed_benchmark_stops_running_on_the_board(rk3588, live):
    """Killing the client kills rknn_benchmark on a real board: no further runs, so one hung job in dmesg."""
    live(rk3588)
    _hang_one_run(rk3588)
    time.sleep(1.5)  # time for runs that should not happen
    count = rk3588.sh("dmesg | grep -c 'job timeout'").stdout.strip()
    assert count == "1", f"{count} NPU job timeouts logged for one killed rknn_benchmark"


@pytest.mark.timeout(120)
def test_fd_leak_grows_rknn_servers_fds_per_run_until_too_many_open_files(rk3588, live):
    pid = rk3588.server_pid()
    count = lambda: int(rk3588.sh(f"ls /proc/{pid}/fd | wc -l").stdout)  # noqa: E731
    live(rk3588)
    rk3588.fault("fd-leak=4")
    counts, result = [count()], None
    for _ in range(10):
        result = rk3588.benchmark(1)  # 5 warm-ups + 1 run: 6 leaking runs
        counts.append(count())
        if result.returncode != 0:
            break
    assert result is not None and result.returncode != 0, counts
    assert "Too many open files" in result.stderr, result.stderr
    growth = np.diff(counts[:-1])
    assert len(growth) >= 3 and all(g > 0 for g in growth), counts
    rk3588.clear("fd-leak")
    rk3588.sh("restart_rknn.sh")  # the manual's remedy: a fresh server with its base descriptors
    assert rk3588.benchmark(1).returncode == 0


# ------------------------------------------------------------------------------------------------ adb, storage
@pytest.mark.timeout(90)
def test_adb_drop_fails_a_20_mib_push_and_leaves_no_file(rv1126, live, tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(20 * MIB))
    before = rv1126.sh("ls -a /userdata").stdout
    live(rv1126)
    rv1126.fault("adb-drop")
    push = rv1126.adb.run("-s", rv1126.serial, "push", str(big), "/userdata/dropped.bin", timeout=60)
    assert push.returncode != 0, push.stdout
    rv1126.clear("adb-drop")
    rv1126.connect()
    assert rv1126.sh("test -e /userdata/dropped.bin").returncode == 1
    assert rv1126.sh("ls -a /userdata").stdout == before  # no half-written temporary either


@pytest.mark.timeout(90)
def test_adb_offline_never_reaches_device_state(rv1126, live):
    live(rv1126)
    rv1126.fault("adb-offline")
    rv1126.adb.run("disconnect", rv1126.serial, timeout=10)
    try:
        connect = rv1126.adb.run("connect", rv1126.serial, timeout=5)
        assert not connect.stdout.startswith("connected"), connect.stdout
    except subprocess.TimeoutExpired:
        pass  # adb connect blocks on a device that never answers CNXN
    assert poll(lambda: rv1126.adb.state(rv1126.serial) != "device", timeout=3)
    assert rv1126.adb.state(rv1126.serial) in ("offline", None)
    assert rv1126.sh("true", timeout=10).returncode != 0
    rv1126.clear("adb-offline")
    rv1126.connect()
    assert rv1126.sh("true").returncode == 0


@pytest.mark.timeout(60)
def test_userdata_full_fails_a_push_with_no_space_left(rv1126, live, tmp_path):
    small = tmp_path / "small.bin"
    small.write_bytes(os.urandom(64 * 1024))
    live(rv1126)
    rv1126.fault("userdata-full")
    push = rv1126.adb.run("-s", rv1126.serial, "push", str(small), "/userdata/full.bin", timeout=30)
    assert push.returncode != 0 and "No space left" in push.stdout + push.stderr, push
    assert rv1126.sh("test -e /userdata/full.bin").returncode == 1
    elsewhere = rv1126.adb.run("-s", rv1126.serial, "push", str(small), "/tmp/ok.bin", timeout=30)
    assert elsewhere.returncode == 0, elsewhere.stderr  # only /userdata is full
    digest = hashlib.sha256(small.read_bytes()).hexdigest()
    assert rv1126.sh("sha256sum /tmp/ok.bin").stdout.split()[0] == digest


# ------------------------------------------------------------------------------------------------ boot faults
def _halted_via_cli(sim, name: str, fault: str) -> dict[str, Any]:
    """``sim up --fault FAULT`` must return (not wait out its timeout) with the board halted."""
    sim.names.append(name)
    result = sim_cli("up", "rv1126", "--name", name, "--fault", fault, "--compact", "--timeout", "20", home=sim.home)
    assert result.returncode == 0, result.stderr
    endpoints = json.loads(result.stdout)
    assert endpoints["status"]["state"] == "halted", endpoints["status"]
    return endpoints


@pytest.mark.timeout(90)
def test_panic_at_boot_halts_the_board_with_a_panic_on_the_console(sim, tmp_path):
    endpoints = _halted_via_cli(sim, "panicky", "panic-at-boot")
    assert refuses(endpoints["adb"]["host"], endpoints["adb"]["port"])  # no adbd on a panicked kernel
    with open_console(endpoints, tmp_path / "console.log") as console:
        api.power("panicky", "cycle")  # watch the boot from the start (pyserial flushes what came before)
        console.expect(r"U-Boot 2017\.09", timeout=15, not_matching=[])
        console.expect(r"Kernel panic - not syncing: VFS: Unable to mount root fs", timeout=15, not_matching=[])
        with pytest.raises(LinkTimeout):
            console.expect(r"login:", timeout=2, not_matching=[])
    assert api.wait_state("panicky", {"halted"}, 10) == "halted"
    assert sim.down("panicky") == []


@pytest.mark.timeout(90)
def test_boot_hang_never_reaches_the_login_prompt(sim, tmp_path):
    endpoints = _halted_via_cli(sim, "hung", "boot-hang")
    with open_console(endpoints, tmp_path / "console.log") as console:
        api.power("hung", "cycle")
        console.expect(r"Galcore version", timeout=15)
        console.send("\n")
        with pytest.raises(LinkTimeout):
            console.expect(r"login:", timeout=3)
    assert refuses(endpoints["ssh"]["host"], endpoints["ssh"]["port"])
    assert sim.down("hung") == []


@pytest.mark.timeout(90)
def test_reboot_after_reboots_by_itself_and_the_console_shows_a_second_boot(sim, tmp_path):
    endpoints = sim.up("rv1126", name="flaky", faults=["reboot-after=3"])
    assert endpoints["status"]["boot"] == 1
    with open_console(endpoints, tmp_path / "console.log") as console:
        console.expect(r"reboot: Restarting system", timeout=10)
        console.expect(r"U-Boot 2017\.09", timeout=5)
        console.expect(r"rv1126 login:", timeout=10)
    status = sim.wait_boot("flaky", 2)
    assert status["state"] == "running"
    assert sim.down("flaky") == []

