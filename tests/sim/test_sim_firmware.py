"""Firmware updates on whole simulated boards, driven the way a lab drives a Rockchip Linux board.

The OTA path is the SDK's own: ``adb push update.img /userdata/`` and ``updateEngine --image_url=... --misc=update
--savepath=... --reboot`` over the Debian ``adb`` CLI on our own server (port 15150). Images are real RKFW files
made by ``build_update_image``; success is judged by the manual's commands after the reboot (``cat /etc/version``,
``strings /usr/bin/rknn_server | grep build``), failures by exit status and by nothing having changed. The
faults (flash-power-loss, boot-loop) and ``reboot loader`` are observed on the console pty and on the endpoints.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from support.adb import adb_fixture
from support.net import refuses
from support.sim import open_console, read_json, sim_fixture

from harness.errors import LinkTimeout
from harness.firmware.rkfw import build_update_image
from harness.sim import api

ADB_PORT = 15150
OLD_RELEASE = {"rknn_server": "1.7.1", "runtime": "1.7.1"}  # what the rv1126 profile ships
NEW = {"rk_version": "RV1126_RV1109_LINUX_SDK_V2.3.0_20240315",
       "versions": {"rknn_server": "1.6.0", "driver": "6.4.3.5.293908", "runtime": "1.6.0"}}
NEWER = {"rk_version": "RV1126_RV1109_LINUX_SDK_V2.4.0_20250101",
         "versions": {"rknn_server": "1.7.3", "driver": "6.4.6.5.351518", "runtime": "1.7.3"}}
SERVER_BUILD = "strings /usr/bin/rknn_server | grep build"
UPDATE = "updateEngine --image_url=/userdata/update.img --misc=update --savepath=/userdata/update.img"

sim = sim_fixture()
adb = adb_fixture(ADB_PORT)


class Board:
    """A running board as the tests see it: its name, endpoints and the adb CLI."""

    def __init__(self, sim, adb, endpoints) -> None:
        self.sim, self.adb, self.endpoints = sim, adb, endpoints
        self.name, self.serial = endpoints["name"], endpoints["adb"]["serial"]

    def sh(self, command: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
        return self.adb.shell(self.serial, command, timeout=timeout)

    def status(self) -> dict:
        return read_json(self.sim.home / self.name / "status.json")

    def push(self, local: Path, remote: str = "/userdata/update.img") -> None:
        result = self.adb.run("-s", self.serial, "push", str(local), remote, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr

    def reach(self, wanted: str, timeout: float = 30.0) -> None:
        """adb connect until ``adb devices`` lists the board as ``wanted`` (device, recovery)."""
        deadline = time.monotonic() + timeout
        while self.adb.state(self.serial) != wanted:
            assert time.monotonic() < deadline, self.adb.run("devices", timeout=10).stdout
            self.adb.run("disconnect", self.serial, timeout=10)
            try:
                self.adb.run("connect", self.serial, timeout=5)
            except subprocess.TimeoutExpired:
                pass
            time.sleep(0.2)

    def unchanged(self, rk_version: str, server: str) -> None:
        assert self.sh("cat /etc/version").stdout.strip() == f"RK_VERSION={rk_version}"
        assert f"{server} (" in self.sh(SERVER_BUILD).stdout


def image(folder: Path, release: dict, chip: str = "rv1126", name: str = "update.img") -> Path:
    return build_update_image(folder / name, chip=chip, rk_version=release["rk_version"],
                              versions=release["versions"], payload_padding=300_000)


@pytest.fixture(scope="module")
def board(sim, adb):
    """One rv1126 that goes through the whole story: refused images, an update, a power loss, loader mode."""
    found = Board(sim, adb, sim.up("rv1126", name="fw", fresh=True))
    found.reach("device")
    return found


# ------------------------------------------------------------------------------------------------ layout
@pytest.mark.timeout(60)
def test_proc_partitions_and_by_name_links_show_a_rockchip_gpt(board):
    table = board.sh("cat /proc/partitions").stdout
    names = [line.split()[-1] for line in table.splitlines()[2:] if line.strip()]
    assert names == ["mmcblk0"] + [f"mmcblk0p{i}" for i in range(1, 9)], table
    links = board.sh("ls /dev/block/by-name").stdout.split()
    assert sorted(links) == sorted(["uboot", "misc", "boot", "recovery", "backup", "oem", "rootfs", "userdata"])
    assert board.sh("readlink /dev/block/by-name/rootfs").stdout.strip() == "../../mmcblk0p7"  # the mounted root
    assert board.sh("test -e /dev/block/by-name/userdata").returncode == 0


# ------------------------------------------------------------------------------------------------ refused
@pytest.mark.timeout(90)
def test_an_image_with_a_bad_md5_is_refused_and_nothing_changes(board, tmp_path):
    bad = image(tmp_path, NEW)
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte of the firmware area's filler: the header still parses
    bad.write_bytes(bytes(data))
    board.push(bad)
    boot = board.status()["boot"]
    result = board.sh(UPDATE + " --reboot")
    assert result.returncode != 0, result.stdout
    assert "MD5Check is error of /userdata/update.img" in result.stderr, result.stderr
    assert "rk ota success" not in result.stdout
    time.sleep(2.0)  # a reboot would have started by now (a good image reboots 1 s after success)
    assert board.status()["boot"] == boot and board.status()["state"] == "running"
    board.unchanged("RV1126_RV1109_LINUX_SDK_V2.2.0_20211117", OLD_RELEASE["rknn_server"])


@pytest.mark.timeout(90)
def test_an_image_for_another_chip_and_a_missing_image_are_refused(board, tmp_path):
    board.push(image(tmp_path, NEW, chip="rk3588"), "/userdata/rk3588.img")
    other = board.sh(UPDATE.replace("update.img", "rk3588.img"))
    assert other.returncode != 0 and "image is for RK3588" in other.stderr, other.stderr
    missing = board.sh("updateEngine --image_url=/userdata/none.img --misc=update")
    assert missing.returncode != 0 and "/userdata/none.img" in missing.stderr, missing.stderr
    not_rkfw = board.sh("head -c 4096 /bin/busybox > /userdata/junk.img && "
                        "updateEngine --image_url=/userdata/junk.img --misc=update")
    assert not_rkfw.returncode != 0 and "no RKFW magic" in not_rkfw.stderr, not_rkfw.stderr
    board.unchanged("RV1126_RV1109_LINUX_SDK_V2.2.0_20211117", OLD_RELEASE["rknn_server"])


# ------------------------------------------------------------------------------------------------ update
@pytest.mark.timeout(120)
def test_update_reboots_the_board_into_the_new_release(board, tmp_path):
    board.push(image(tmp_path, NEW))
    boot = board.status()["boot"]
    with open_console(board.endpoints, tmp_path / "console.log") as console:
        result = board.sh(UPDATE + " --reboot")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "MD5Check is ok of /userdata/update.img" in result.stdout
        assert "rk ota success" in result.stdout
        console.expect(r"reboot: Restarting system", timeout=15, not_matching=[])
        console.expect(r"U-Boot 2017\.09 \(20240315", timeout=15, not_matching=[])  # the new U-Boot's date
        console.expect(r"Galcore version 6\.4\.3\.5\.293908", timeout=15, not_matching=[])
        console.expect(r"start rknn server, version:1\.6\.0", timeout=15, not_matching=[])
    board.sim.wait_boot(board.name, boot + 1)
    board.reach("device")
    board.unchanged(NEW["rk_version"], NEW["versions"]["rknn_server"])
    runtime = board.sh("strings /usr/lib/librknn_runtime.so | grep version").stdout
    assert "librknn_runtime version 1.6.0 (" in runtime, runtime


# ------------------------------------------------------------------------------------------------ faults
@pytest.mark.timeout(150)
def test_power_loss_while_flashing_leaves_the_board_in_recovery_with_the_old_release(board, tmp_path):
    firmware_before = (board.sim.home / board.name / "firmware.json").read_bytes()
    board.push(image(tmp_path, NEWER))
    api.fault(board.name, "flash-power-loss")
    with open_console(board.endpoints, tmp_path / "console.log") as console:
        try:
            cut = board.sh(UPDATE + " --reboot", timeout=30)
            # the board died under the command: its output stops mid-write (how much of it reached the host
            # before the power went is a race, so only its end is checked). adb's exit status says nothing here
            # (the client reports 0 for a shell whose connection closed without an exit packet)
            assert "rootfs: 50" not in cut.stdout and "rk ota success" not in cut.stdout, cut.stdout
        finally:
            api.fault(board.name, "flash-power-loss", clear=True)
        console.expect(r"U-Boot 2017\.09", timeout=20, not_matching=[])
        console.expect(r"starting recovery\.\.\.", timeout=20, not_matching=[])
        console.expect(r"Rockchip Linux recovery mode", timeout=20, not_matching=[])
    assert api.wait_state(board.name, {"recovery"}, 20) == "recovery"
    assert (board.sim.home / board.name / "firmware.json").read_bytes() == firmware_before
    board.reach("recovery")
    assert board.sh("cat /etc/version").stdout.strip() == f"RK_VERSION={NEW['rk_version']}"  # still the old one
    assert refuses(board.endpoints["ssh"]["host"], board.endpoints["ssh"]["port"])  # recovery runs no sshd
    # recovery stays until an update finishes: a reboot comes back to recovery, a good update gets out of it
    boot = board.status()["boot"]
    finish = board.sh(UPDATE + " --reboot")
    assert finish.returncode == 0, finish.stdout + finish.stderr
    board.sim.wait_boot(board.name, boot + 1)
    board.reach("device")
    board.unchanged(NEWER["rk_version"], NEWER["versions"]["rknn_server"])


@pytest.mark.timeout(120)
def test_reboot_loader_leaves_only_usb_and_a_power_cycle_brings_linux_back(board, tmp_path):
    ssh = board.endpoints["ssh"]
    host, port = board.endpoints["adb"]["host"], board.endpoints["adb"]["port"]
    boot = board.status()["boot"]
    with open_console(board.endpoints, tmp_path / "console.log") as console:
        board.adb.run("-s", board.serial, "reboot", "loader", timeout=30)
        console.expect(r"enter Rockusb!", timeout=20, not_matching=[])
    assert api.wait_state(board.name, {"loader"}, 20) == "loader"
    assert refuses(host, port) and refuses(ssh["host"], ssh["port"])
    assert board.adb.state(board.serial) != "device"
    api.power(board.name, "cycle")
    board.sim.wait_boot(board.name, boot + 1)
    board.reach("device")
    assert board.sh("cat /etc/version").stdout.strip() == f"RK_VERSION={NEWER['rk_version']}"  # kept on flash


@pytest.mark.timeout(120)
def test_boot_loop_boots_again_and_again_and_never_reaches_a_login(sim, tmp_path):
    endpoints = sim.up("rv1126", name="looper", faults=["boot-loop"], fresh=True)
    with open_console(endpoints, tmp_path / "console.log") as console:
        for _ in range(3):
            console.expect(r"DDR Version", timeout=20, not_matching=[])
            console.expect(r"Starting kernel \.\.\.", timeout=20, not_matching=[])
        text = console.excerpt()
        with pytest.raises(LinkTimeout):
            console.expect(r"login:", timeout=2, not_matching=[])
    assert "Welcome to" not in text and "login:" not in text
    status = read_json(sim.home / "looper" / "status.json")
    assert status["boot"] >= 3, status
    assert refuses(endpoints["adb"]["host"], endpoints["adb"]["port"])
    assert sim.down("looper") == []
