"""``npu-hil firmware inspect`` as a user runs it: a real subprocess, on an image file and on a simulated board."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from support.processes import leftovers

from harness.firmware.rkfw import build_update_image

REPO = Path(__file__).resolve().parents[2]
VERSIONS = {"rknn_server": "1.7.5", "driver": "6.4.6.5.351518", "runtime": "1.7.5"}


def npu_hil(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 180):
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, check=False, env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})


def one_line_error(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


@pytest.fixture
def image(tmp_path) -> Path:
    return build_update_image(tmp_path / "update.img", chip="rv1126", rk_version="RV1126_SDK_V2.2.0",
                              versions=VERSIONS, version=(1, 0, 7))


def test_inspect_image_json(image, tmp_path) -> None:
    result = npu_hil("firmware", "inspect", str(image), "--json", "--chip", "rv1126", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    data = image.read_bytes()
    assert info["kind"] == "image" and info["version"] == "1.0.7"
    assert info["md5"] == hashlib.md5(data[:-32]).hexdigest()
    assert info["chips"] == ["rv1126"] and info["size"] == len(data)
    assert info["manifest"]["versions"] == VERSIONS and info["manifest"]["rk_version"] == "RV1126_SDK_V2.2.0"


def test_inspect_image_text(image, tmp_path) -> None:
    result = npu_hil("firmware", "inspect", str(image), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "version 1.0.7" in result.stdout and "RV1126" in result.stdout and "6.4.6.5.351518" in result.stdout


def test_bad_images_end_in_one_line(image, tmp_path) -> None:
    data = bytearray(image.read_bytes())
    data[0x70] ^= 0xFF
    corrupt = tmp_path / "corrupt.img"
    corrupt.write_bytes(bytes(data))
    assert "wrong MD5" in one_line_error(npu_hil("firmware", "inspect", str(corrupt), cwd=tmp_path))
    cut = tmp_path / "cut.img"
    cut.write_bytes(bytes(data[:150]))
    assert "truncated" in one_line_error(npu_hil("firmware", "inspect", str(cut), cwd=tmp_path))
    other = one_line_error(npu_hil("firmware", "inspect", str(image), "--chip", "rk3588", cwd=tmp_path))
    assert "image is for RV1126" in other and "not rk3588" in other
    assert "no RKFW magic" in one_line_error(npu_hil("firmware", "inspect", str(REPO / "pyproject.toml"),
                                                     cwd=tmp_path))
    assert "unknown board" in one_line_error(npu_hil("firmware", "inspect", "no-such-board", cwd=tmp_path)).lower()


def test_inspect_simulated_board_json(tmp_path) -> None:
    home = tmp_path / "simhome"
    home.mkdir()
    result = npu_hil("firmware", "inspect", "sim-rv1126", "--json", cwd=tmp_path,
                     env={"NPU_HIL_SIM_HOME": str(home)})
    try:
        assert result.returncode == 0, result.stderr
        info = json.loads(result.stdout)
        profile = tomllib.loads((REPO / "harness/sim/profiles/rv1126.toml").read_text())
        assert info["kind"] == "board" and info["chip"] == "rv1126"
        assert info["rk_version"] == profile["rk_version"]
        assert info["kernel"] and info["kernel"] in profile["kernel"]
        assert {k: info["npu"][k]["version"] for k in VERSIONS} == profile["versions"]
        assert set(info["partitions"]) == {"block_devices", "by_name"}
    finally:
        assert leftovers([], home) == []


def test_board_partitions_are_read_where_the_board_shows_them(tmp_path, monkeypatch) -> None:
    """The simulated board shows an eMMC partition table and by-name links, read over its real links."""
    import argparse

    from harness.cli._boards import opened_board
    from harness.firmware.inspect import inspect_board

    home = tmp_path / "simhome"
    home.mkdir()
    monkeypatch.setenv("NPU_HIL_SIM_HOME", str(home))
    try:
        with opened_board(argparse.Namespace(board="sim-rv1126", boards_file=None, toolkit=None)) as board:
            parts = inspect_board(board)["partitions"]
            listed = board.shell("ls /dev/block/by-name", check=True).stdout.split()
            userdata = board.shell("readlink /dev/block/by-name/userdata", check=True).stdout.strip()
    finally:
        assert leftovers([], home) == []
    assert parts["by_name"] == sorted(listed) and {"uboot", "boot", "rootfs", "userdata"} <= set(listed)
    devices = {d["name"]: d for d in parts["block_devices"]}
    assert "mmcblk0" in devices and userdata.rsplit("/", 1)[-1] in devices
    whole = devices.pop("mmcblk0")["size_kib"]
    assert sum(d["size_kib"] for d in devices.values()) <= whole  # partitions fit on the disk


def test_host_proc_partitions_parse_like_sysfs_lists_them() -> None:
    """The parser on a real kernel's /proc/partitions: the same devices as /sys/class/block, sizes in KiB."""
    from harness.firmware.inspect import parse_proc_partitions

    text = Path("/proc/partitions").read_text()
    rows = parse_proc_partitions(text)
    assert rows and len(rows) == len([ln for ln in text.splitlines() if ln.strip()]) - 1  # header, then devices
    for row in rows:
        sysfs = Path("/sys/class/block") / row["name"].replace("/", "!")
        assert (sysfs / "dev").read_text().strip() == f"{row['major']}:{row['minor']}"
        assert int((sysfs / "size").read_text()) * 512 // 1024 == row["size_kib"]
