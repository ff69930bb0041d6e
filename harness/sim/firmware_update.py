"""Firmware updates on a simulated board: ``updateEngine`` (Rockchip's OTA tool) and the state it leaves.

Why: a lab updates a Rockchip Linux board with ``adb push update.img /userdata/`` and ``updateEngine
--image_url=/userdata/update.img --misc=update --savepath=/userdata/update.img --reboot`` (rockchip-facts.md,
"Firmware update"), and must see the board come back running the new release, or refuse a bad image, or end up
in recovery when power is lost mid-flash. The board script ``/usr/bin/updateEngine`` hands its arguments to the
gate operation served here. The image is checked by the board's own reader (:mod:`harness.sim.update_image`:
RKFW header, MD5, chip), never by the harness's parser, so a parser bug is not mirrored on the board; the
simulator's images carry a manifest of the new versions, and "flashing" writes it to ``STATE_DIR/firmware.json``,
which :func:`apply_installed` lays over the profile at every boot.

``STATE_DIR/misc.json`` plays the misc partition's bootloader message: while it says ``boot-recovery`` the
board boots into recovery (fault ``flash-power-loss`` leaves it there). Output lines follow the real tool's
(``LOG_INFO: *** update_engine: Version V1.1.4 ***.``, ``MD5Check is ok of ...``); errors exit with status 2,
the real tool's ``RK_UPGRADE_ERR``.
"""

from __future__ import annotations

import posixpath
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.sim import partitions, state
from harness.sim.context import BoardContext
from harness.sim.gate import Gate, GateReply, GateRequest
from harness.sim.profile import COMPONENTS, Profile
from harness.sim.rootpath import OutsideRoot
from harness.sim.update_image import FlashImage, ImageRefused, read_image

FIRMWARE_FILE = "firmware.json"
MISC_FILE = "misc.json"
VERSION = "V1.1.4"
EXIT_ERR = 2  # RK_Upgrade_Status_t RK_UPGRADE_ERR, what the real main() returns on failure
#: Partitions an OTA writes when --partition is not given (recovery-mode systems: uboot..oem).
OTA_PARTITIONS = ("uboot", "boot", "recovery", "rootfs", "oem")
#: With ``flash-power-loss`` the power goes while this partition is half written.
POWER_LOSS_IN = "rootfs"
#: The reboot after a successful --reboot waits this long so the caller still gets the exit status.
REBOOT_DELAY_S = 1.0
VALUE_OPTIONS = {"image_url", "version_url", "savepath", "misc", "partition", "check", "pipefd"}
FLAG_OPTIONS = {"reboot", "update", "help"}
Log = Callable[[str], None]


# -- persistent state ------------------------------------------------------------------------------------------
def installed(state_dir: Path) -> dict[str, Any] | None:
    """The firmware the last successful update installed ({"rk_version", "versions", ...}), or None."""
    data = state.read_json(Path(state_dir) / FIRMWARE_FILE)
    if not data or not isinstance(data.get("versions"), dict) or not isinstance(data.get("rk_version"), str):
        return None
    return data


def apply_installed(profile: Profile, overrides: dict[str, str], state_dir: Path) -> tuple[Profile, dict[str, str]]:
    """(profile with the installed RK_VERSION, version overrides with the installed versions over them)."""
    firmware = installed(state_dir)
    if firmware is None:
        return profile, dict(overrides)
    versions = {k: v for k, v in firmware["versions"].items() if k in COMPONENTS and isinstance(v, str)}
    return profile.model_copy(update={"rk_version": firmware["rk_version"]}), {**overrides, **versions}


def recovery_request(state_dir: Path) -> dict[str, Any] | None:
    """The misc partition's ``boot-recovery`` message, when the next boot must go to recovery."""
    data = state.read_json(Path(state_dir) / MISC_FILE)
    return data if data and data.get("command") == "boot-recovery" else None


def _set_misc(state_dir: Path, image: str, reason: str) -> None:
    state.write_json(Path(state_dir) / MISC_FILE, {"command": "boot-recovery", "reason": reason,
                                                   "recovery": f"recovery\n--update_package={image}"})


# -- the tool --------------------------------------------------------------------------------------------------
def parse_args(args: list[str]) -> tuple[dict[str, str], set[str], list[str]]:
    """getopt_long as the real tool uses it: (``--opt=value`` / ``--opt value`` values, flags, rejected)."""
    values: dict[str, str] = {}
    flags: set[str] = set()
    bad: list[str] = []
    i = 0
    while i < len(args):
        name, sep, value = args[i].removeprefix("--").partition("=")
        if not args[i].startswith("--"):
            bad.append(args[i])
        elif name in VALUE_OPTIONS:
            if not sep:
                i += 1
                value = args[i] if i < len(args) else ""
            values[name] = value
        elif name in FLAG_OPTIONS:
            flags.add(name)
        else:
            bad.append(args[i])
        i += 1
    return values, flags, bad


class UpdateEngine:
    """The gate operation ``updateEngine`` for one boot of one board."""

    def __init__(self, ctx: BoardContext) -> None:
        self.ctx = ctx

    def register(self, gate: Gate) -> None:
        gate.register("updateEngine", self.run)

    def run(self, request: GateRequest, reply: GateReply) -> int:
        def info(text: str) -> None:
            reply.out(f"LOG_INFO: {text}")

        def error(text: str) -> None:  # the real tool's LOGE; it reaches the caller's stderr
            reply.err(f"LOG_ERROR: {text}")

        info(f"*** update_engine: Version {VERSION} ***.")
        values, flags, bad = parse_args(request.args[1:])
        for arg in bad:
            error(f"Invalid command argument: {arg}")
        if "help" in flags:
            reply.out("--misc=update        Recovery mode: Setting the partition to be upgraded.\n"
                      "--update             Upgrade mode.\n--partition=0x3FFC00 Set the partition to be upgraded.\n"
                      "--reboot             Restart the machine at the end of the program.\n"
                      "--version_url=url    The path to the file of version.\n"
                      "--image_url=url      Path to upgrade firmware.\n"
                      "--savepath=url       save the update.img to url.")
            return 0
        misc = values.get("misc")
        if misc is not None and misc != "update":
            error(f"unknow misc cmdline : {misc}. (the simulator supports --misc=update)")
            return EXIT_ERR
        if misc is None and "update" not in flags:
            error("nothing to do: give --misc=update (or --update) and --image_url")
            return EXIT_ERR
        url = values.get("image_url")
        if not url:
            error("MiscUpdate URL must be set.")
            return EXIT_ERR
        url = posixpath.normpath(posixpath.join(request.cwd or "/", url))
        savepath = posixpath.normpath(posixpath.join(request.cwd or "/", values.get("savepath") or url))
        info(f"url = {url}.")
        info(f"[MiscUpdate:90] save path: {savepath}")
        if "version_url" in values:
            info(f"version_url = {values['version_url']}.")
        if "partition" in values:
            info(f"partition = {values['partition']}.")
        image = self._check(url, info, error)
        if image is None:
            error("ota file is error.")
            return EXIT_ERR
        if savepath != url and not self._save(url, savepath, info, error):
            return EXIT_ERR
        return self._flash(image, savepath, "reboot" in flags, reply, info)

    def _check(self, url: str, info: Log, error: Log) -> FlashImage | None:
        """The verified image at board path ``url``, or None after printing why it is refused."""
        try:
            host = self.ctx.host_path(url)
        except OutsideRoot:
            error(f"open {url} failed: No such file or directory")
            return None
        info("where the file is local.")
        try:
            image = read_image(host, self.ctx.profile.chip)
        except ImageRefused as exc:
            if exc.md5 is not None:
                info(f"new md5:{exc.md5}")
                error(f"MD5Check is error of {url}")
            error(f"{url}: {exc}")
            return None
        info(f"new md5:{image.md5}")
        info(f"MD5Check is ok of {url}")
        if image.manifest is None:
            error(f"{url}: firmware area is {image.area_magic!r}, not an npu-hil image: the simulated board "
                  "installs only images whose firmware area carries the npu-hil manifest")
            return None
        info(f"machine_model = {image.chip_name}, version = {image.version}")
        info("analyticImage ok.")
        return image

    def _save(self, url: str, savepath: str, info: Log, error: Log) -> bool:
        try:
            shutil.copyfile(self.ctx.host_path(url), self.ctx.host_path(savepath))
        except (OSError, OutsideRoot) as exc:
            error(f"save image to {savepath} failed: {getattr(exc, 'strerror', None) or exc}")
            return False
        info(f"save image to {savepath}.")
        return True

    def _flash(self, image: FlashImage, savepath: str, reboot: bool, reply: GateReply, info: Log) -> int:
        """Write the partitions (progress lines), then install the manifest's release; or lose power midway."""
        power_loss = "flash-power-loss" in self.ctx.faults
        info("start RK_ota_start.")
        for name in OTA_PARTITIONS:
            info(f"now write {name} to /dev/block/by-name/{name} ({partitions.device_of(name)}).")
            for percent in (25, 50, 75, 100):
                if power_loss and name == POWER_LOSS_IN and percent == 50:
                    return self._lose_power(savepath, name, reply)
                reply.out(f"Writing {name}: {percent} % complete")
            info(f"check /dev/block/by-name/{name} ok.")
        manifest = image.manifest or {}
        state.write_json(self.ctx.state_dir / FIRMWARE_FILE, {
            "rk_version": manifest["rk_version"], "versions": dict(manifest["versions"]), "image": savepath,
            "md5": image.md5, "image_version": image.version, "installed_at": time.time()})
        (self.ctx.state_dir / MISC_FILE).unlink(missing_ok=True)  # a finished update clears recovery's command
        info("RK_ota_start is ok!")
        info("rk ota success.")
        info("rk m_status = 0.")
        if reboot:
            # the real tool syncs and triggers sysrq 'b' at once; the short delay lets the caller see exit 0
            timer = threading.Timer(REBOOT_DELAY_S, self.ctx.request_reboot, args=("",))
            timer.daemon = True
            timer.start()
        return 0

    def _lose_power(self, savepath: str, partition: str, reply: GateReply) -> int:
        """Fault ``flash-power-loss``: misc says boot-recovery, the power goes; firmware.json is untouched."""
        _set_misc(self.ctx.state_dir, savepath, f"power lost while writing {partition}")
        if self.ctx.kernel is not None:
            self.ctx.kernel.log(f"mmcblk0: power lost while writing {partitions.device_of(partition)}")
        self.ctx.request_reboot("power-loss")
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline and not reply.peer_gone():  # the board dies under the caller
            time.sleep(0.2)
        return 1
