"""Build a simulated board's root filesystem: busybox, the board's files at their real paths, real version strings.

The manual's own commands must work unchanged on it (``strings /usr/bin/rknn_server | grep build``,
``cat /etc/version``, ``cat /proc/device-tree/compatible``), so the version strings are written where Rockchip's
binaries carry them: NUL-separated inside the file, for ``strings`` to find. Static scripts (reboot, dmesg,
restart_rknn.sh, the kernel gate) are data files under ``board_files/``; this module copies them and writes the
per-board facts. ``/proc`` and ``/sys`` are plain folders the simulated kernel keeps up to date.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from importlib import resources
from pathlib import Path

from harness.sim import foreign_exec, runtime_library
from harness.sim.board_exec import BOUND_DEVICES
from harness.sim.profile import Profile

BOARD_FILES = Path(str(resources.files("harness.sim").joinpath("board_files")))
#: Applets the board provides itself instead of busybox's (they would reach the host's kernel).
OWN_APPLETS = {"dmesg", "reboot", "poweroff", "halt"}
DIRS = ("bin", "sbin", "usr/bin", "usr/sbin", "usr/lib", "usr/libexec", "lib/modules", "etc/init.d", "root",
        "tmp", "userdata", "data", "oem/usr/lib", "oem/usr/bin", "var/log", "dev", "proc", "sys/kernel/debug")


def find_busybox() -> Path:
    """The host's static busybox (Debian ``busybox-static``), copied into every board as /bin/busybox."""
    for candidate in (os.environ.get("NPU_HIL_BUSYBOX"), shutil.which("busybox"), "/bin/busybox"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise FileNotFoundError("busybox not found: install Debian's busybox-static (apt-get install busybox-static)")


def _link(root: Path, board_path: str, target_rel_to_root: str) -> None:
    """A relative symlink at board_path to another board path (absolute links would point at the host)."""
    link = root / board_path
    link.parent.mkdir(parents=True, exist_ok=True)
    rel = os.path.relpath(root / target_rel_to_root, link.parent)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(rel)


def install_busybox(root: Path) -> None:
    busybox = find_busybox()
    dest = root / "bin" / "busybox"
    shutil.copy2(busybox, dest)
    dest.chmod(0o755)
    applets = subprocess.run([str(busybox), "--list-full"], capture_output=True, text=True, check=True).stdout
    for applet in applets.split():
        if Path(applet).name in OWN_APPLETS or Path(applet).name == "busybox":
            continue
        _link(root, applet, "bin/busybox")


def install_board_files(root: Path) -> None:
    for src in BOARD_FILES.rglob("*"):
        if src.is_dir():
            continue
        rel = src.relative_to(BOARD_FILES)
        dest = root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.is_symlink():
            dest.unlink()
        shutil.copyfile(src, dest)
        dest.chmod(0o755 if src.read_bytes()[:2] == b"#!" else 0o644)


#: The start of an ELF header: what a board file that only has to carry version strings begins with
FAKE_ELF = b"\x7fELF\x01\x01\x01"


def _binary_with_strings(script: str, *strings: str) -> bytes:
    """A board "binary": a script that runs, followed by a data section holding the strings the real one has."""
    data = b"\0\0\0\0" + b"\0".join(s.encode() for s in strings) + b"\0\0\0\0"
    return script.encode() + b"\n" + data


def write_versions(root: Path, profile: Profile) -> None:
    """(Re)write the component files for the profile's versions; called at build and on a mismatch fault."""
    v, s = profile.versions, profile.strings
    server = s.rknn_server.format(v=v.rknn_server)
    server_script = ("#!/bin/sh\n# rknn_server: the board's RKNN server (managed by the simulated kernel)\n"
                     'exec /usr/libexec/sim-gate rknn_server run "$@"\nexit 1')
    server_strings = [server, "start rknn server, version:%s", "Transfer version 2.1.0 (b5861e7@2020-11-23T11:50:51)"]
    if profile.npu == "rknpu2" and not server.startswith("rknn_server version"):
        server_strings.append("rknn_server version: " + server)
    _write(root, profile.paths.server_bin, _binary_with_strings(server_script, *server_strings), 0o755)
    runtime = s.runtime.format(v=v.runtime)
    library = runtime_library.build(profile.arch, profile.npu)  # cached: built once per source
    if profile.npu == "rknpu2":
        _write(root, profile.paths.runtime_lib, (library or FAKE_ELF) + _binary_with_strings("", runtime), 0o755)
    else:
        _write(root, profile.paths.runtime_lib, FAKE_ELF + _binary_with_strings("", runtime), 0o755)
        if library:
            _write(root, runtime_library.RKNPU1_API_LIB, library + _binary_with_strings("", runtime), 0o755)
    if profile.npu == "rknpu1":
        galcore = v.driver.split(".")
        tag = f"$VERSION${'.'.join(galcore[:3])}:{galcore[-1]}$"
        _write(root, "lib/modules/galcore.ko", FAKE_ELF + _binary_with_strings("", tag), 0o644)


#: RV1109/RV1126: the chips whose NPU driver comes as a full set or as the Mini Driver, and whose USB gadget list
#: (/etc/init.d/usb_config) decides whether NTB is on (manual 4.1.3 (9), 4.1.5)
PUMA_CHIPS = {"rv1109", "rv1126"}
#: What rockchip-linux/rknpu's full RKNPU1 driver set has beside the runtime and the Mini Driver leaves out
FULL_DRIVER_ONLY_LIBS = ("usr/lib/libneuralnetworks.so",)
USB_CONFIG = "etc/init.d/usb_config"


def write_driver_set(root: Path, profile: Profile, *, mini: bool = False, ntb: bool = True) -> None:
    """The NPU driver's flavour and the USB gadget list, after :func:`write_versions`.

    RKNPU1 boards get the full driver set's extra libraries; ``mini`` (RV1109/RV1126, the ``mini-driver`` fault)
    installs the Mini Driver instead: the runtime without rknn_server and those libraries. RV1109/RV1126 boards
    get ``/etc/init.d/usb_config`` listing adb, and NTB unless ``ntb`` is off (the ``ntb-disabled`` fault)."""
    if profile.npu != "rknpu1":
        return
    mini = mini and profile.chip in PUMA_CHIPS
    for lib in FULL_DRIVER_ONLY_LIBS:
        if mini:
            (root / lib).unlink(missing_ok=True)
        else:
            _write(root, lib, FAKE_ELF + _binary_with_strings("", "Vivante NN API"), 0o755)
    if mini:
        (root / profile.paths.server_bin.lstrip("/")).unlink(missing_ok=True)
    if profile.chip in PUMA_CHIPS:
        _write(root, USB_CONFIG, ("usb_adb_en\n" + ("usb_ntb_en\n" if ntb else "")).encode(), 0o644)


def _write(root: Path, board_path: str, data: bytes, mode: int) -> None:
    path = root / board_path.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".new")
    tmp.write_bytes(data)
    tmp.chmod(mode)
    os.replace(tmp, path)


def build(root: Path, profile: Profile) -> Path:
    """Create (or refresh, keeping /userdata) the board root at ``root`` for ``profile``."""
    root = Path(root)
    for d in DIRS:
        (root / d).mkdir(parents=True, exist_ok=True)
    for dev in BOUND_DEVICES:
        (root / "dev" / dev).touch()
    install_busybox(root)
    install_board_files(root)
    if not profile.python3:  # a stock image: no python3, so no Lite runner (programs in C only)
        (root / "usr" / "bin" / "python3").unlink(missing_ok=True)
    foreign_exec.install(root, profile.arch)
    (root / "etc" / "hostname").write_text(profile.hostname + "\n")
    (root / "etc" / "version").write_text(f"RK_VERSION={profile.rk_version}\n")
    write_versions(root, profile)
    write_driver_set(root, profile)
    return root


def clean_volatile(root: Path) -> None:
    """What a reboot loses: /tmp (tmpfs on a real board) and the kernel's /proc."""
    for volatile in ("tmp", "proc"):
        shutil.rmtree(root / volatile, ignore_errors=True)
        (root / volatile).mkdir()
