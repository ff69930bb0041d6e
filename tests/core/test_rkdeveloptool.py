"""The rkdeveloptool driver against a stand-in executable at the subprocess boundary (no USB bus here).

The stand-in is a real program run as a real subprocess: it records its argv and prints what rkdeveloptool
1.32 prints in each case (strings, colours, cursor escapes and exit status from its main.cpp), so the driver's
parsing, error classes and deadline are exercised for real.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from support.processes import alive

from harness.errors import BoardError, ConfigError, LinkDown, LinkTimeout
from harness.firmware.rkdeveloptool import RkDevelopTool

RED, NORMAL, UP, DEL = "\x1b[30;41m", "\x1b[0m", "\x1b[1A", "\x1b[2K"
NO_DEVICE = f"{RED}Did not find any rockusb device, please plug device in!{NORMAL}\r\n"
LD_LOADER = "DevNo=1\tVid=0x2207,Pid=0x350b,LocationID=303\tLoader\r\n"
LD_MASKROM = "DevNo=1\tVid=0x2207,Pid=0x110b,LocationID=10a\tMaskrom\r\n"

STAND_IN = """#!{python}
import json, os, sys, time
from pathlib import Path
here = Path(__file__).resolve().parent
(here / "pid").write_text(str(os.getpid()))
with open(here / "calls.jsonl", "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
invalid = {{"out": "command is invalid!\\r\\n", "rc": 1}}
reply = json.loads((here / "scenario.json").read_text()).get(sys.argv[1].lower(), invalid)
sys.stdout.write(reply["out"])
sys.stdout.flush()
time.sleep(reply.get("sleep", 0))
sys.exit(reply["rc"])
"""


class StandIn:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.exe = folder / "rkdeveloptool"
        self.exe.write_text(STAND_IN.format(python=sys.executable))
        self.exe.chmod(0o755)
        self.scenario({})

    def scenario(self, replies: dict[str, dict]) -> None:
        (self.folder / "scenario.json").write_text(json.dumps(replies))

    def calls(self) -> list[list[str]]:
        log = self.folder / "calls.jsonl"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.fixture
def tool(tmp_path):
    stand_in = StandIn(tmp_path)
    yield stand_in, RkDevelopTool(stand_in.exe, timeout=20, write_timeout=20)


@pytest.fixture
def image(tmp_path) -> Path:
    path = tmp_path / "odd name; rm -rf x.img"
    path.write_bytes(b"\0" * 4096)
    return path


def test_ld_lists_devices_and_none_is_empty(tool) -> None:
    stand_in, rk = tool
    stand_in.scenario({"ld": {"out": LD_LOADER, "rc": 0}})
    [entry] = rk.list_devices()
    assert (entry.product_id, entry.location_id, entry.mode) == (0x350B, 0x303, "loader")
    assert rk.loader_device() == entry
    stand_in.scenario({"ld": {"out": "not found any devices!\r\n", "rc": 1}})
    assert rk.list_devices() == []
    with pytest.raises(LinkDown, match="no device in Loader mode"):
        rk.loader_device()
    assert stand_in.calls() == [["ld"]] * 4


def test_loader_device_names_a_maskrom_device_it_saw(tool) -> None:
    stand_in, rk = tool
    stand_in.scenario({"ld": {"out": LD_MASKROM, "rc": 0}})
    with pytest.raises(LinkDown, match=r"2207:110b at LocationID 10a in maskrom"):
        rk.loader_device()


def test_changed_ld_output_is_not_read_as_no_device(tool) -> None:
    stand_in, rk = tool
    stand_in.scenario({"ld": {"out": "Device 1: something new\r\n", "rc": 0}})
    with pytest.raises(BoardError, match="cannot read this line"):
        rk.list_devices()


def test_db_succeeds_and_passes_the_loader_path_untouched(tool, tmp_path) -> None:
    stand_in, rk = tool
    loader = tmp_path / "rk3588_spl_loader_v1.05.108.bin"
    loader.write_bytes(b"BOOT")
    stand_in.scenario({"db": {"out": f"Downloading bootloader...\r\n{UP}{DEL}Downloading bootloader succeeded.\r\n",
                              "rc": 0}})
    result = rk.download_boot(loader)
    assert result.output.strip().endswith("Downloading bootloader succeeded.")
    assert stand_in.calls() == [["db", str(loader)]]


def test_db_in_loader_mode_names_the_mode_it_needs(tool, tmp_path) -> None:
    stand_in, rk = tool
    loader = tmp_path / "loader.bin"
    loader.write_bytes(b"BOOT")
    stand_in.scenario({"db": {"out": f"{RED}The device does not support this operation!{NORMAL}\r\n", "rc": 1}})
    with pytest.raises(BoardError, match="not in Maskrom mode") as caught:
        rk.download_boot(loader)
    assert "\x1b" not in str(caught.value)


def test_no_device_is_link_down(tool, image) -> None:
    stand_in, rk = tool
    stand_in.scenario({"wl": {"out": NO_DEVICE, "rc": 1}, "rd": {"out": NO_DEVICE, "rc": 1}})
    with pytest.raises(LinkDown, match="no device in Loader mode"):
        rk.write_lba(0x4000, image)
    with pytest.raises(LinkDown):
        rk.reset()


def test_too_many_devices_is_a_board_error(tool) -> None:
    stand_in, rk = tool
    stand_in.scenario({"rd": {"out": f"{RED}Found too many rockusb devices, please plug devices out!{NORMAL}\r\n",
                              "rc": 1}})
    with pytest.raises(BoardError, match="more than one device"):
        rk.reset()


def test_wl_and_wlx_write_with_odd_file_names_as_one_argument(tool, image) -> None:
    stand_in, rk = tool
    progress = f"Write LBA from file (50%)\r\n{UP}{DEL}Write LBA from file (100%)\r\n"
    stand_in.scenario({"wl": {"out": progress, "rc": 0}, "wlx": {"out": progress, "rc": 0}})
    rk.write_lba(0x4000, image)
    rk.write_partition("boot_a", image)
    assert stand_in.calls() == [["wl", str(0x4000), str(image)], ["wlx", "boot_a", str(image)]]


def test_wlx_unknown_partition_carries_the_tool_output(tool, image) -> None:
    stand_in, rk = tool
    stand_in.scenario({"wlx": {"out": "No found vendor partition\r\n", "rc": 1}})
    with pytest.raises(BoardError, match="No found vendor partition"):
        rk.write_partition("vendor", image)


def test_failure_text_with_exit_zero_is_still_a_failure(tool) -> None:
    stand_in, rk = tool
    stand_in.scenario({"rd": {"out": "Reset Device failed!\r\n", "rc": 0}})
    with pytest.raises(BoardError, match="Reset Device failed"):
        rk.reset(3)
    assert stand_in.calls() == [["rd", "3"]]


def test_bad_arguments_never_reach_the_tool(tool, image, tmp_path) -> None:
    stand_in, rk = tool
    with pytest.raises(ConfigError, match="sector"):
        rk.write_lba(-1, image)
    with pytest.raises(ConfigError, match="partition name"):
        rk.write_partition("boot; reboot", image)
    with pytest.raises(ConfigError, match="does not exist"):
        rk.write_partition("boot", tmp_path / "missing.img")
    with pytest.raises(ConfigError, match="subcode"):
        rk.reset(9)
    assert stand_in.calls() == []
    with pytest.raises(ConfigError, match="rkdeveloptool not found"):
        RkDevelopTool(tmp_path / "no-such-tool")


def test_a_hung_tool_misses_its_deadline_and_is_stopped(tool) -> None:
    stand_in, rk = tool
    stand_in.scenario({"rd": {"out": "Reset Device...\r\n", "rc": 0, "sleep": 120}})
    with pytest.raises(LinkTimeout, match="did not finish within 1 s"):
        rk.reset(timeout=1)
    pid = int((stand_in.folder / "pid").read_text())
    assert not alive(pid)
