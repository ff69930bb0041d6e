"""Flashing a simulated RV1126 through ``harness.firmware.flash``, opened the way a run opens it.

Real pieces: the simulator's processes (its updateEngine checks the image itself), our own adb server (port
15160, own HOME, stopped by PID), paramiko, the console on a pty. Bad input must be refused before the board
is touched: the proof is the board's command history, which must not grow. The USB half runs pyusb's real
``usb.core.find`` over a scripted backend and a stand-in rkdeveloptool/upgrade_tool script that logs its argv
(the subprocess boundary); the "no device in Loader mode" error comes from this host's real, empty USB.
"""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
from support.opened import opened_sim_board
from support.usb import ScriptedBus, descriptor

from harness.config.loader import Inventory
from harness.connect import open_board
from harness.errors import BoardError, ConfigError, LinkDown
from harness.firmware.boot import BootInRecovery, BootLoop
from harness.firmware.flash import (
    OtaStrategy,
    UsbLoaderStrategy,
    flash,
    parse_df_available_kib,
    read_rk_version,
    strategy_from_name,
    write_over_usb,
)
from harness.firmware.rkfw import build_update_image, read_update_image
from harness.links.adb_server import AdbServer
from harness.recovery import recover
from harness.sim import api

ADB_PORT = 15160
BOARD = "sim-rv1126"
NEW = {"rknn_server": "1.6.0", "driver": "6.4.3.5.293908", "runtime": "1.6.0"}


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory):
    with opened_sim_board(tmp_path_factory, BOARD, ADB_PORT) as opened:
        yield opened.board


@pytest.fixture
def good_image(tmp_path: Path) -> Path:
    return build_update_image(tmp_path / "update.img", chip="rv1126", rk_version="RV1126_TEST_V9.9.9_20260101",
                              versions=NEW, version=(9, 9, 9))


def _bad_images(folder: Path, good: Path) -> dict[str, Path]:
    data = good.read_bytes()
    bad = {"not RKFW": folder / "zip.img", "truncated": folder / "short.img", "wrong MD5": folder / "md5.img",
           "another chip": folder / "rk3588.img"}
    bad["not RKFW"].write_bytes(b"PK\x03\x04" + data[4:])
    bad["truncated"].write_bytes(data[: len(data) // 2])
    flipped = bytearray(data)
    flipped[0x70] ^= 0xFF
    bad["wrong MD5"].write_bytes(bytes(flipped))
    build_update_image(bad["another chip"], chip="rk3588", rk_version="X", versions=NEW)
    return bad


WHY = {"not RKFW": "no RKFW magic", "truncated": "truncated", "wrong MD5": "wrong MD5",
       "another chip": "not rv1126"}


@pytest.mark.parametrize("kind", sorted(WHY))
@pytest.mark.parametrize("strategy", [OtaStrategy(), UsbLoaderStrategy(upgrade_tool="/nonexistent/upgrade_tool")],
                         ids=["ota", "usb"])
def test_bad_image_is_refused_before_the_board_is_touched(board, good_image, tmp_path, kind, strategy):
    image = _bad_images(tmp_path, good_image)[kind]
    before = len(board.history)
    with pytest.raises(ConfigError) as caught:
        flash(board, image, strategy)
    assert WHY[kind] in str(caught.value)
    assert "\n" not in str(caught.value)
    assert len(board.history) == before  # not one command reached the board


def test_not_enough_space_is_refused_before_the_push(board, good_image):
    board.shell("rm -f /userdata/update.img", check=True)
    free = parse_df_available_kib(board.shell("df -k /userdata", check=True).stdout)
    with pytest.raises(ConfigError, match=r"not enough space on /userdata .* KiB free"):
        flash(board, good_image, OtaStrategy(margin_kib=free + 1))  # this board's real free space, plus one
    assert board.shell("[ -e /userdata/update.img ]").exit_code != 0
    assert read_rk_version(board) != "RV1126_TEST_V9.9.9_20260101"


def test_df_output_is_read_even_when_busybox_wraps_the_line():
    wrapped = ("Filesystem           1K-blocks      Used Available Use% Mounted on\n"
               "/dev/mapper/very-long-userdata-volume-name\n"
               "                       1000000    250000    750000  25% /userdata\n")
    assert parse_df_available_kib(wrapped) == 750000
    with pytest.raises(BoardError, match="cannot read"):
        parse_df_available_kib("df: /userdata: No such file or directory\n")


def test_strategy_names_and_bad_ones():
    assert strategy_from_name("ota-ssh").link == "ssh"
    assert strategy_from_name("usb-upgrade_tool").upgrade_tool == "upgrade_tool"
    with pytest.raises(ConfigError, match="unknown flash strategy"):
        strategy_from_name("jtag")
    with pytest.raises(ConfigError, match="rkdeveloptool cannot write an update.img"):
        UsbLoaderStrategy().check()


@pytest.mark.parametrize("link", ["adb", "ssh"])
def test_ota_flash_to_a_new_image_and_back(board, tmp_path, link):
    before = read_rk_version(board)
    from harness.npu.board_versions import probe_board

    record = probe_board(board).to_dict()
    old = {k: record[k]["version"] for k in NEW}
    new_image = build_update_image(tmp_path / "new.img", chip="rv1126", rk_version=f"RV1126_NEW_{link}",
                                   versions=NEW, version=(2, 0, 0))
    back_image = build_update_image(tmp_path / "back.img", chip="rv1126", rk_version=before, versions=old)
    lines: list[str] = []
    result = flash(board, new_image, OtaStrategy(link=link), progress=lines.append)
    assert (result.rk_version, result.versions) == (f"RV1126_NEW_{link}", NEW)
    assert read_rk_version(board) == f"RV1126_NEW_{link}"  # read again, independently of flash()
    assert set(result.boot_stages) == {"uboot", "kernel", "login", "shell"}
    assert any(line.startswith("pushing") for line in lines)
    back = flash(board, back_image, OtaStrategy(link=link))
    assert (back.rk_version, back.versions) == (before, old)


def test_board_refusing_the_image_is_a_product_error(board, tmp_path):
    """An image our reader accepts but the board's updateEngine cannot install (no manifest: a 'real' one)."""
    image = build_update_image(tmp_path / "real.img", chip="rv1126", rk_version="R", versions=NEW)
    data = bytearray(image.read_bytes()[:-32])
    info = read_update_image(image)
    data[info.fw_offset:info.fw_offset + 4] = b"RKAF"  # afptool's package magic instead of our manifest
    import hashlib

    image.write_bytes(bytes(data) + hashlib.md5(bytes(data)).hexdigest().encode())
    before = read_rk_version(board)
    from harness.errors import ProductError

    with pytest.raises(ProductError, match="updateEngine refused"):
        flash(board, image, OtaStrategy())
    assert read_rk_version(board) == before


# ------------------------------------------------------------------------------------------------ USB
RV1126_LOADER = descriptor(0x2207, 0x110B, bus=3, address=4, ports=(1,), bcd_usb=0x0201)


def _stand_in(folder: Path, name: str, body: str) -> Path:
    """A tool stand-in: logs its argv to ``calls.log`` and prints what the real tool prints."""
    script = folder / name
    log = folder / "calls.log"
    script.write_text(f"#!/bin/sh\necho \"$*\" >> {shlex.quote(str(log))}\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


RKDEV = """case "$1" in
  ld) echo "DevNo=1	Vid=0x2207,Pid=0x110b,LocationID=301	Loader"; exit 0;;
  db) echo "Downloading bootloader succeeded."; exit 0;;
  wlx) echo "Write LBA from file (100%)"; exit 0;;
  rd) echo "Reset Device OK."; exit 0;;
esac
exit 1"""


def test_usb_loader_sequence_with_rkdeveloptool(tmp_path, good_image):
    boot, rootfs = tmp_path / "boot.img", tmp_path / "rootfs.img"
    boot.write_bytes(b"boot")
    rootfs.write_bytes(b"rootfs")
    tool = _stand_in(tmp_path, "rkdeveloptool", RKDEV)
    strategy = UsbLoaderStrategy(rkdeveloptool=str(tool), partitions={"boot": str(boot), "rootfs": str(rootfs)},
                                 usb_backend=ScriptedBus([], [RV1126_LOADER]), mode_timeout=5)
    strategy.check()
    done = write_over_usb(read_update_image(good_image), strategy, chip="rv1126", say=lambda _l: None)
    calls = (tmp_path / "calls.log").read_text().splitlines()
    assert calls == ["ld", f"wlx boot {boot}", f"wlx rootfs {rootfs}", "rd"]
    assert done == ["ld", f"wlx boot {boot}", f"wlx rootfs {rootfs}", "rd"]


def test_usb_maskrom_needs_db_first(tmp_path, good_image):
    loader = tmp_path / "loader.bin"
    loader.write_bytes(b"loader")
    part = tmp_path / "boot.img"
    part.write_bytes(b"boot")
    tool = _stand_in(tmp_path, "rkdeveloptool", RKDEV)
    maskrom = descriptor(0x2207, 0x110B, bus=3, address=4, ports=(1,), bcd_usb=0x0200)
    image = read_update_image(good_image)
    no_loader = UsbLoaderStrategy(rkdeveloptool=str(tool), partitions={"boot": str(part)},
                                  usb_backend=ScriptedBus([maskrom]), mode_timeout=1)
    with pytest.raises(BoardError, match="Maskrom mode"):
        write_over_usb(image, no_loader, chip="rv1126", say=lambda _l: None)
    with_loader = UsbLoaderStrategy(rkdeveloptool=str(tool), partitions={"boot": str(part)}, loader=str(loader),
                                    usb_backend=ScriptedBus([maskrom]), mode_timeout=1)
    write_over_usb(image, with_loader, chip="rv1126", say=lambda _l: None)
    assert (tmp_path / "calls.log").read_text().splitlines() == [f"db {loader}", "ld", f"wlx boot {part}", "rd"]


def test_usb_upgrade_tool_uf_and_its_failure(tmp_path, good_image):
    ok = _stand_in(tmp_path, "upgrade_tool", 'echo "Loading firmware..."; echo "Upgrade firmware ok."')
    image = read_update_image(good_image)
    strategy = UsbLoaderStrategy(upgrade_tool=str(ok), usb_backend=ScriptedBus([RV1126_LOADER]), mode_timeout=1)
    write_over_usb(image, strategy, chip="rv1126", say=lambda _l: None)
    assert (tmp_path / "calls.log").read_text().splitlines() == [f"uf {good_image}"]
    bad = _stand_in(tmp_path, "upgrade_tool_bad", 'echo "Download Firmware Fail"; exit 1')
    failing = UsbLoaderStrategy(upgrade_tool=str(bad), usb_backend=ScriptedBus([RV1126_LOADER]), mode_timeout=1)
    with pytest.raises(BoardError, match="upgrade_tool uf failed .*Download Firmware Fail"):
        write_over_usb(image, failing, chip="rv1126", say=lambda _l: None)


def test_no_device_in_loader_mode_on_this_hosts_real_usb(good_image, tmp_path):
    """No backend stand-in: pyusb looks at this host's USB, where no Rockchip board is in Loader mode."""
    tool = _stand_in(tmp_path, "upgrade_tool", 'echo "Upgrade firmware ok."')
    strategy = UsbLoaderStrategy(upgrade_tool=str(tool), mode_timeout=0.5)
    with pytest.raises(LinkDown, match=r"no Rockchip device \(rv1126\) in Loader/Maskrom mode"):
        write_over_usb(read_update_image(good_image), strategy, chip="rv1126", say=lambda _l: None)
    assert not (tmp_path / "calls.log").exists()  # the tool was never run


# ------------------------------------------------------------------------------------------------ CLI
def _cli(*args: str, home: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, NPU_HIL_SIM_HOME=str(home))
    return subprocess.run([sys.executable, "-m", "harness", "firmware", "flash", *args], env=env, text=True,
                          capture_output=True, timeout=120, stdin=subprocess.DEVNULL, check=False,
                          cwd=Path(__file__).resolve().parents[2])


def test_cli_refuses_a_bad_image_with_one_line_and_never_starts_the_board(tmp_path, good_image):
    home = tmp_path / "sim-home"
    image = _bad_images(tmp_path, good_image)["wrong MD5"]
    done = _cli("sim-rv1126", str(image), home=home)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "wrong MD5" in done.stderr
    assert not (home / "sim-rv1126").exists()  # no simulated board was started to be refused
    usb = _cli("sim-rv1126", str(good_image), "--strategy", "usb", home=home)
    assert usb.returncode == 2 and "rkdeveloptool cannot write an update.img" in usb.stderr



@contextmanager
def own_board(tmp_path: Path, port: int):
    """A board of this test alone (own simulator home, adb server on ``port``): faults here leave it unusable."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NPU_HIL_SIM_HOME", str(tmp_path / "sim-home"))
        server = AdbServer(port=port, home=tmp_path / ".adb").start()
        inventory = Inventory(path=None)
        try:
            opened = open_board(inventory.get(BOARD), inventory, run_dir=tmp_path / "run", adb_server=server)
            try:
                yield opened
            finally:
                opened.close()
        finally:
            api.down(BOARD)
            server.stop()


def test_power_lost_mid_flash_is_reported_as_recovery_mode(tmp_path, good_image):
    """Fault flash-power-loss: the board dies writing rootfs and boots recovery; no login prompt is waited for."""
    with own_board(tmp_path, ADB_PORT + 3) as fresh:
        before = read_rk_version(fresh)
        api.fault(BOARD, "flash-power-loss")
        with pytest.raises(BootInRecovery) as caught:
            flash(fresh, good_image, OtaStrategy())
        first, _, excerpt = str(caught.value).partition("\n")
        assert "booted into recovery" in first
        assert "power lost while writing rootfs" in excerpt and "U-Boot 20" in excerpt
        assert before != "RV1126_TEST_V9.9.9_20260101"


def test_boot_loop_after_a_flash_climbs_the_ladder_to_broken(tmp_path, good_image):
    with own_board(tmp_path, ADB_PORT + 4) as fresh:
        api.fault(BOARD, "boot-loop")
        with pytest.raises(BootLoop, match="U-Boot started again"):
            flash(fresh, good_image, OtaStrategy(), boot_deadlines={"login": 30})
        outcome = recover(fresh, "boot loop after flashing", timeout=5)
        assert outcome.outcome == "broken"
        with pytest.raises(BoardError, match="marked broken for the rest of this run: boot loop after flashing"):
            read_rk_version(fresh)


def test_a_missing_upgrade_tool_is_refused_before_loader_mode(tmp_path):
    with pytest.raises(ConfigError, match=r"upgrade_tool not found \(/nonexistent/upgrade_tool\)"):
        UsbLoaderStrategy(upgrade_tool="/nonexistent/upgrade_tool").check()
