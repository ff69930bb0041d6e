"""The version probes: which commands run, in which order, with which quoting, and what they make of the output.

Most tests use ``FakeBoard`` (canned outputs, pure parser logic). ``test_probe_on_a_busybox_board`` runs the
same probes through a real busybox ``sh`` inside a board root folder (harness.sim.board_exec), so ``strings``,
``grep`` and the quoting are the real tools' behaviour, not our imitation of them.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from version_corpus import real_runtime, real_server, rknpu1_strings, rknpu2_board

from harness.errors import ConfigError, LinkTimeout
from harness.links.base import ShellResult
from harness.npu.probes import probe_versions

NPU2 = dict(runtime_lib="/usr/lib/librknnrt.so", server_bin="/usr/bin/rknn_server")


def test_rknpu2_probe_reads_every_component():
    board = rknpu2_board(runtime="2.3.2", server="2.3.2", driver="0.9.8", chip="rk3576")
    record = probe_versions(board, npu="rknpu2", **NPU2)
    assert (record.driver.version, record.rknn_server.version, record.runtime.version) == ("0.9.8", "2.3.2", "2.3.2")
    assert record.driver.component == "rknpu"
    assert record.server_running is True
    assert (record.chip.version, record.kernel.version, record.rk_version.version) == ("rk3576", "5.10.160",
                                                                                        "2.3.2_rk3576")
    data = json.loads(json.dumps(record.to_dict()))
    assert set(data) == {"npu", "driver", "rknn_server", "runtime", "server_running", "chip", "kernel",
                         "rk_version"}
    assert data["runtime"]["raw"].startswith("librknnrt version: 2.3.2")


@pytest.mark.parametrize("source, expected_commands", [
    ("debugfs", ["cat /sys/kernel/debug/rknpu/version"]),
    ("procfs", ["cat /sys/kernel/debug/rknpu/version", "cat /proc/rknpu/version"]),
    ("dmesg", ["cat /sys/kernel/debug/rknpu/version", "cat /proc/rknpu/version", "dmesg | grep -i rknpu"]),
])
def test_rknpu_driver_fallbacks_stop_at_the_first_answer(source, expected_commands):
    board = rknpu2_board(runtime="1.6.0", server="1.6.0", driver="0.9.6", driver_source=source)
    record = probe_versions(board, npu="rknpu2", **NPU2)
    assert record.driver.version == "0.9.6"
    assert [c for c in board.commands if "rknpu" in c] == expected_commands


def test_no_driver_anywhere_keeps_what_the_board_said():
    board = rknpu2_board(runtime="1.6.0", server="1.6.0", driver="0.9.6", driver_source="none")
    record = probe_versions(board, npu="rknpu2", **NPU2)
    assert record.driver.version is None
    assert "No such file or directory" in record.driver.raw


def test_old_server_needs_the_grep_build_fallback():
    """rknn_server <= 1.5.0 has no `rknn_server version:` string; the manual's `grep build` finds it."""
    board = rknpu2_board(runtime="1.4.0", server="1.4.0", driver="0.8.8")
    record = probe_versions(board, npu="rknpu2", **NPU2)
    assert record.rknn_server.version == "1.4.0"
    server_commands = [c for c in board.commands if "rknn_server" in c and c.startswith("strings")]
    assert server_commands == ["strings /usr/bin/rknn_server | grep -i 'rknn_server version'",
                               "strings /usr/bin/rknn_server | grep build"]


def test_paths_are_quoted():
    nasty_lib = "/oem/usr/lib/my libs/librknnmrt.so; reboot"
    nasty_bin = "/vendor/bin/$(reboot)/rknn_server"
    board = rknpu2_board(runtime="2.1.0", server="2.1.0", driver="0.9.8", runtime_lib=nasty_lib,
                         server_bin=nasty_bin)
    record = probe_versions(board, npu="rknpu2", runtime_lib=nasty_lib, server_bin=nasty_bin)
    assert (record.runtime.version, record.rknn_server.version) == ("2.1.0", "2.1.0")
    assert any(shlex.quote(nasty_lib) in c for c in board.commands)
    assert any(shlex.quote(nasty_bin) in c for c in board.commands)


def test_server_not_running():
    board = rknpu2_board(runtime="2.3.2", server="2.3.2", driver="0.9.8", server_running=False)
    assert probe_versions(board, npu="rknpu2", **NPU2).server_running is False


def test_unknown_generation_is_a_config_error():
    with pytest.raises(ConfigError, match="rknpu1, rknpu2"):
        probe_versions(lambda c: ShellResult(c, "", "", 0, 0.0, "x"), npu="rknpu3", **NPU2)


def test_link_failures_propagate():
    """A lost link is the link's fault: it must not turn into 'version unreadable' (a product failure)."""
    def dead(command: str) -> ShellResult:
        raise LinkTimeout(f"no answer to {command!r}")

    with pytest.raises(LinkTimeout):
        probe_versions(dead, npu="rknpu1", runtime_lib="/usr/lib/librknn_runtime.so",
                       server_bin="/usr/bin/rknn_server")


# ------------------------------------------------------------------- real busybox on a board root


def _binary(*lines: str) -> bytes:
    """An ELF-ish blob: the version strings between NULs and non-printable bytes, as in a real binary."""
    blob = b"\x7fELF\x02\x01\x01\x00" + bytes(range(0, 32)) * 4
    for line in lines:
        blob += b"\x00\x01\x02" + line.encode() + b"\x00" + bytes(range(128, 160))
    return blob


def _make_board_root(root: Path, files: dict[str, bytes | str], dmesg: list[str], processes: list[str]) -> None:
    busybox = shutil.which("busybox")
    for folder in ("bin", "dev", "root", "tmp", "var/log"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    shutil.copy2(busybox, root / "bin" / "busybox")
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, timeout=10).stdout.split()
    for applet in applets:
        if applet not in ("busybox", "dmesg"):
            (root / "bin" / applet).symlink_to("busybox")
    for device in ("null", "zero", "random", "urandom", "tty"):
        (root / "dev" / device).touch()
    # busybox's dmesg reads the host's kernel log: the board gets its own
    (root / "var/log/dmesg.log").write_text("".join(f"{line}\n" for line in dmesg))
    (root / "bin" / "dmesg").write_text("#!/bin/sh\ncat /var/log/dmesg.log\n")
    (root / "bin" / "dmesg").chmod(0o755)
    for number, name in enumerate(processes, start=1):
        (root / f"proc/{number}").mkdir(parents=True)
        (root / f"proc/{number}/comm").write_text(name + "\n")
    for path, content in files.items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content if isinstance(content, bytes) else content.encode())


def _board_shell(root: Path):
    from harness.sim import board_exec

    def shell(command: str) -> ShellResult:
        done = board_exec.run(root, command, timeout=30)
        return ShellResult(command, done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace"),
                           done.returncode, 0.0, "board_exec")
    return shell


@pytest.fixture
def board_root(tmp_path: Path) -> Path:
    if shutil.which("busybox") is None or shutil.which("unshare") is None:
        pytest.skip("needs busybox and unshare")
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "true"], capture_output=True, timeout=10)
    if probe.returncode != 0:
        pytest.skip(f"unprivileged user namespaces unavailable: {probe.stderr.decode().strip()}")
    return tmp_path / "board"


def test_probe_on_a_busybox_board_rknpu2(board_root: Path):
    lib = "/usr/lib/npu libs/librknnrt.so"
    _make_board_root(board_root, {
        "/usr/bin/rknn_server": _binary("build_graph", *real_server("1.5.2")),
        lib: _binary("GLIBC_2.17", *real_runtime("1.5.2")),
        "/sys/kernel/debug/rknpu/version": "RKNPU driver: v0.9.2\n",
        "/proc/version": "Linux version 5.10.110 (root@build) (gcc 10.3.1) #1 SMP\n",
        "/proc/device-tree/compatible": b"rockchip,rk3566-evb2-lp4x-v10\x00rockchip,rk3566\x00",
        "/etc/version": "RK_VERSION=V1.3.0\n",
    }, dmesg=["[    0.0] Booting Linux"], processes=["init", "rknn_server", "sh"])
    record = probe_versions(_board_shell(board_root), npu="rknpu2", runtime_lib=lib,
                            server_bin="/usr/bin/rknn_server")
    assert (record.driver.version, record.rknn_server.version, record.runtime.version) == ("0.9.2", "1.5.2", "1.5.2")
    assert record.runtime.detail == "c6b7b351a@2023-08-23T15:29:04"
    assert record.server_running is True
    assert (record.chip.version, record.kernel.version, record.rk_version.version) == ("rk3566", "5.10.110",
                                                                                        "V1.3.0")


def test_probe_on_a_busybox_board_rknpu1(board_root: Path):
    real = rknpu1_strings()
    _make_board_root(board_root, {
        "/usr/bin/rknn_server": _binary("rknn_server build_graph", real["server_armhf"]),
        "/usr/lib/librknn_runtime.so": _binary("rknn model version is not supported", real["runtime"]),
        "/proc/version": "Linux version 4.19.111 (root@build) (gcc 8.3.0) #1 SMP PREEMPT\n",
        "/proc/device-tree/compatible": b"rockchip,rv1126-evb-ddr3-v13\x00rockchip,rv1126\x00",
    }, dmesg=["[    3.1] galcore options:", f"[    3.2] {real['galcore_dmesg']}"], processes=["init"])
    record = probe_versions(_board_shell(board_root), npu="rknpu1", runtime_lib="/usr/lib/librknn_runtime.so",
                            server_bin="/usr/bin/rknn_server")
    assert (record.driver.version, record.rknn_server.version, record.runtime.version) == (
        "6.4.6.5.351518", "1.7.5", "1.7.5")
    assert record.server_running is False
    assert record.rk_version.version is None and "No such file" in record.rk_version.raw
    assert record.chip.version == "rv1126"
