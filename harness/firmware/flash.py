"""Flash a board with an update.img: over the air (adb or ssh + updateEngine) or over USB in Loader mode.

Order matters, and is the point of this module: everything that can refuse is checked *before* the board is
touched (the image's RKFW header, size, MD5 and chip; the strategy's tools; free space on /userdata before the
push), because a half-done flash is the one failure a lab cannot undo remotely. After the flash the reboot is
followed stage by stage on the console (:mod:`harness.firmware.boot`), the links are waited for, and the board
must report the image's RK_VERSION and NPU versions: a flash that "worked" but left the old system is a failure.

OTA (rockchip-facts.md "Firmware update on a running Linux board")::

    push update.img to /userdata (sha256 checked on the board)
    updateEngine --image_url=/userdata/update.img --misc=update --savepath=/userdata/update.img --reboot

USB loader: ``reboot loader`` (console, else adb/ssh), wait for vendor 0x2207 in Loader mode (pyusb), then either
``upgrade_tool uf update.img`` (Rockchip's closed tool, when configured) or rkdeveloptool ``ld`` / ``db`` (Maskrom)
/ ``wlx`` per partition file / ``rd``. rkdeveloptool cannot unpack an update.img, so that path needs the
partition images (name -> file) beside it.
"""

from __future__ import annotations

import logging
import posixpath
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from harness.errors import BoardError, ConfigError, LinkDown, LinkTimeout, ProductError
from harness.firmware.boot import BootWatcher
from harness.firmware.rkdeveloptool import RkDevelopTool, clean_output
from harness.firmware.rkfw import UpdateImage, read_update_image
from harness.links.usb import UsbLink

if TYPE_CHECKING:
    from harness.board import Board

log = logging.getLogger("npu-hil.flash")
USERDATA = "/userdata"
VERSION_FILE = "/etc/version"


@dataclass(frozen=True)
class OtaStrategy:
    """Push over ``link`` (adb or ssh) and run updateEngine on the board."""

    link: Literal["adb", "ssh"] = "adb"
    remote_dir: str = USERDATA
    margin_kib: int = 4096          # free space kept beyond the image itself
    push_timeout: float = 1800.0
    engine_timeout: float = 1800.0  # writing partitions takes minutes on real eMMC

    def __post_init__(self) -> None:
        if self.link not in ("adb", "ssh"):
            raise ConfigError(f"OTA flashing goes over adb or ssh, not {self.link!r}")
        if not posixpath.isabs(self.remote_dir):
            raise ConfigError(f"OTA remote folder must be an absolute board path, not {self.remote_dir!r}")

    @property
    def name(self) -> str:
        return f"ota-{self.link}"


@dataclass(frozen=True)
class UsbLoaderStrategy:
    """Loader mode over USB: ``upgrade_tool uf`` when configured, else rkdeveloptool with partition files."""

    rkdeveloptool: str = "rkdeveloptool"
    upgrade_tool: str | None = None
    partitions: dict[str, str] = field(default_factory=dict)  # GPT name -> image file, for rkdeveloptool wlx
    loader: str | None = None        # loader.bin for `db`, needed only when the board shows up in Maskrom
    location: str | None = None      # USB port path ("1-2.3") when several boards share the host
    usb_backend: Any = None          # pyusb backend (None: libusb); tests hand in a bus of their own
    mode_timeout: float = 60.0
    tool_timeout: float = 1800.0

    @property
    def name(self) -> str:
        return "usb-upgrade_tool" if self.upgrade_tool else "usb-rkdeveloptool"

    def check(self) -> None:
        """Refuse a strategy that cannot work, before the board is put in Loader mode."""
        if self.upgrade_tool is not None and shutil.which(self.upgrade_tool) is None:
            raise ConfigError(f"upgrade_tool not found ({self.upgrade_tool})",
                              fix="install Rockchip's Linux upgrade_tool, or give its path")
        if self.upgrade_tool is None:
            if not self.partitions:
                raise ConfigError("rkdeveloptool cannot write an update.img: give partition images "
                                  "(name=file) or configure upgrade_tool")
            for name, path in self.partitions.items():
                if not Path(path).is_file():
                    raise ConfigError(f"partition image for {name!r} not found: {path}")
            RkDevelopTool(self.rkdeveloptool)  # ConfigError when it is not installed


#: The names ``--firmware-strategy`` and ``npu-hil firmware flash --strategy`` accept.
STRATEGIES = ("ota-adb", "ota-ssh", "usb", "usb-upgrade_tool")
DEFAULT_STRATEGY = "ota-adb"


def strategy_from_name(name: str, **options: Any) -> OtaStrategy | UsbLoaderStrategy:
    """``ota-adb``, ``ota-ssh``, ``usb`` (rkdeveloptool) or ``usb-upgrade_tool`` (needs upgrade_tool=PATH)."""
    if name in ("ota-adb", "ota-ssh", "ota"):
        return OtaStrategy(link="ssh" if name == "ota-ssh" else "adb", **options)
    if name in ("usb", "usb-rkdeveloptool", "usb-upgrade_tool"):
        if name == "usb-upgrade_tool" and not options.get("upgrade_tool"):
            options["upgrade_tool"] = "upgrade_tool"
        return UsbLoaderStrategy(**options)
    raise ConfigError(f"unknown flash strategy {name!r}; one of ota-adb, ota-ssh, usb, usb-upgrade_tool")


@dataclass
class FlashResult:
    board: str
    strategy: str
    image: UpdateImage
    rk_version: str | None
    versions: dict[str, str | None]
    boot_stages: dict[str, float] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------ checks
def check_image(board: Board, image_path: str | Path) -> UpdateImage:
    """The image, verified (RKFW, complete, MD5, this board's chip); ConfigError saying why not."""
    return read_update_image(image_path, chip=board.chip.name)


def parse_df_available_kib(text: str, path: str = USERDATA) -> int:
    """Available KiB from ``df -k PATH`` (the line may wrap after a long device name, as busybox does)."""
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    if len(lines) < 2 or "vail" not in lines[0]:
        raise BoardError(f"cannot read `df -k {path}` output: {text.strip()[:200]!r}")
    fields = " ".join(lines[1:]).split()
    try:
        return int(fields[-3])  # ... Used Available Use% Mounted-on
    except (IndexError, ValueError):
        raise BoardError(f"cannot read the free space from `df -k {path}`: {text.strip()[:200]!r}") from None


def check_free_space(board: Board, image: UpdateImage, strategy: OtaStrategy) -> int:
    """Free KiB in the remote folder; ConfigError when the image (plus margin) does not fit."""
    result = board.shell(f"df -k {shlex.quote(strategy.remote_dir)}", timeout=30, link=strategy.link)
    if result.exit_code != 0:
        raise BoardError(f"{board.name}: `df -k {strategy.remote_dir}` failed: {result.output.strip()[-200:]}")
    free = parse_df_available_kib(result.stdout, strategy.remote_dir)
    need = -(-image.size // 1024) + strategy.margin_kib
    if free < need:
        raise ConfigError(f"{board.name}: not enough space on {strategy.remote_dir} for {image.path.name}: "
                          f"{free} KiB free, {need} KiB needed (image + {strategy.margin_kib} KiB margin)",
                          fix=f"free space in {strategy.remote_dir} on the board")
    return free


# ------------------------------------------------------------------------------------------------ flash
def flash(board: Board, image_path: str | Path, strategy: OtaStrategy | UsbLoaderStrategy, *,
          boot_deadlines: dict[str, float] | None = None, progress: Any = None) -> FlashResult:
    """Flash ``image_path`` onto ``board`` and prove it runs the image's versions afterwards.

    ConfigError before anything touches the board (bad image, other chip, no space, missing tool);
    BootPanic/BootLoop/BootStageTimeout when it does not come back; ProductError when it runs other versions.
    ``progress`` is called with one line per step (the CLI prints it).
    """
    say = progress or (lambda line: log.info("%s: %s", board.name, line))
    image = check_image(board, image_path)
    say(f"image {image.path.name}: RKFW {image.version_str} for {image.chip_name}, MD5 ok")
    if isinstance(strategy, OtaStrategy):
        stages = _flash_ota(board, image, strategy, boot_deadlines, say)
    else:
        strategy.check()
        stages = _flash_usb(board, image, strategy, boot_deadlines, say)
    rk_version, versions = verify_versions(board, image)
    say(f"board runs RK_VERSION {rk_version}")
    return FlashResult(board.name, strategy.name, image, rk_version, versions, stages)


def _watcher(board: Board, deadlines: dict[str, float] | None) -> BootWatcher | None:
    if not board.has_link("console"):
        return None
    watcher = BootWatcher(board.console, deadlines=deadlines, board=board.name)
    watcher.arm()
    return watcher


def _follow_boot(board: Board, watcher: BootWatcher | None, say: Any) -> dict[str, float]:
    stages: dict[str, float] = {}
    if watcher is not None:
        stages = watcher.wait().stages
        say("boot: " + ", ".join(f"{k} {v:.1f} s" for k, v in stages.items()))
    board.wait_ready()
    return stages


def _flash_ota(board: Board, image: UpdateImage, strategy: OtaStrategy, deadlines: dict[str, float] | None,
               say: Any) -> dict[str, float]:
    link = board.link(strategy.link)
    free = check_free_space(board, image, strategy)
    remote = posixpath.join(strategy.remote_dir, "update.img")
    say(f"pushing {image.size} bytes to {remote} over {strategy.link} ({free} KiB free)")
    link.push(image.path, remote, timeout=strategy.push_timeout)
    q = shlex.quote
    command = (f"updateEngine --image_url={q(remote)} --misc=update --savepath={q(remote)} --reboot")
    watcher = _watcher(board, deadlines)
    say(f"running {command}")
    try:
        result = board.shell(command, timeout=strategy.engine_timeout, link=strategy.link)
    except (LinkDown, LinkTimeout) as exc:
        say(f"link dropped under the reboot ({str(exc).splitlines()[0][:120]})")
    else:
        if result.exit_code != 0:
            raise ProductError(f"{board.name}: updateEngine refused {image.path.name} (exit {result.exit_code}): "
                               f"{' | '.join(result.output.strip().splitlines()[-3:])}")
    return _follow_boot(board, watcher, say)


def _enter_loader(board: Board) -> None:
    """``reboot loader`` over the console if there is one (it survives the USB gadget going away), else shell."""
    try:
        if board.has_link("console"):
            board.console.send("reboot loader\n")
        else:
            board.shell("reboot loader", timeout=15)
    except (LinkDown, LinkTimeout):
        pass  # the link dropping under the reboot is the expected outcome


def _flash_usb(board: Board, image: UpdateImage, strategy: UsbLoaderStrategy,
               deadlines: dict[str, float] | None, say: Any) -> dict[str, float]:
    say("rebooting into Loader mode")
    _enter_loader(board)
    watcher = _watcher(board, deadlines)  # armed once the board left its system: the next boot is the new one
    write_over_usb(image, strategy, chip=board.chip.name, say=say)
    return _follow_boot(board, watcher, say)


def write_over_usb(image: UpdateImage, strategy: UsbLoaderStrategy, *, chip: str, say: Any = print) -> list[str]:
    """The USB half of a loader flash, once ``reboot loader`` was sent: wait for the device, write, reset.

    Returns the tool command lines run (for the log). LinkDown when no device of ``chip`` shows up in
    Loader/Maskrom mode within ``strategy.mode_timeout``.
    """
    usb = UsbLink(strategy.location, chip, strategy.usb_backend)
    device = usb.find(timeout=strategy.mode_timeout)  # LinkDown naming what the bus showed instead
    say(f"USB: {device.describe()}")
    if strategy.upgrade_tool:
        run_upgrade_tool(strategy.upgrade_tool, image.path, strategy.tool_timeout)
        return [f"{strategy.upgrade_tool} uf {image.path}"]
    tool = RkDevelopTool(strategy.rkdeveloptool, write_timeout=strategy.tool_timeout)
    done = []
    if device.mode == "maskrom":
        if not strategy.loader:
            raise BoardError(f"the {chip} is in Maskrom mode; rkdeveloptool needs a loader (db) first: "
                             "configure the loader file")
        tool.download_boot(strategy.loader)
        done.append(f"db {strategy.loader}")
    entry = tool.loader_device()
    say(f"rkdeveloptool ld: LocationID {entry.location_id:x} in {entry.mode}")
    done.append("ld")
    for name, path in strategy.partitions.items():
        say(f"rkdeveloptool wlx {name} {path}")
        tool.write_partition(name, path)
        done.append(f"wlx {name} {path}")
    tool.reset()
    done.append("rd")
    return done


def run_upgrade_tool(executable: str, image: Path, timeout: float) -> str:
    """``upgrade_tool uf IMAGE`` (Rockchip's Linux tool); BoardError unless it reports success."""
    argv = [executable, "uf", str(image)]
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise LinkTimeout(f"upgrade_tool uf did not finish within {timeout:g} s") from None
    except OSError as exc:
        raise ConfigError(f"cannot run upgrade_tool ({executable}): {exc.strerror or exc}") from None
    output = clean_output(done.stdout.decode("utf-8", "replace"))
    if done.returncode != 0 or "fail" in output.lower() or "upgrade firmware ok" not in output.lower():
        lines = " | ".join(ln.strip() for ln in output.strip().splitlines()[-3:]) or "no output"
        raise BoardError(f"upgrade_tool uf failed (exit {done.returncode}): {lines}")
    return output


# ------------------------------------------------------------------------------------------------ verify
def read_rk_version(board: Board) -> str | None:
    """RK_VERSION from /etc/version (None when the board has no such line)."""
    result = board.shell(f"cat {shlex.quote(VERSION_FILE)}", timeout=30)
    for line in result.stdout.splitlines():
        key, _, value = line.strip().partition("=")
        if key.strip() == "RK_VERSION":
            return value.strip().strip('"') or None
    return None


def verify_versions(board: Board, image: UpdateImage) -> tuple[str | None, dict[str, str | None]]:
    """ProductError unless the board now reports the image's RK_VERSION (and, with a manifest, NPU versions)."""
    from harness.npu.board_versions import probe_board

    rk_version = read_rk_version(board)
    record = probe_board(board).to_dict()
    versions = {k: (record.get(k) or {}).get("version") for k in ("rknn_server", "driver", "runtime")}
    manifest = image.manifest
    if manifest is None:
        return rk_version, versions  # a real image does not say its versions: RK_VERSION is shown, not judged
    wrong = []
    if rk_version != manifest["rk_version"]:
        wrong.append(f"RK_VERSION {rk_version} (image: {manifest['rk_version']})")
    for key, want in manifest["versions"].items():
        if versions.get(key) != want:
            wrong.append(f"{key} {versions.get(key)} (image: {want})")
    if wrong:
        raise ProductError(f"{board.name} does not run {image.path.name} after the flash: " + "; ".join(wrong))
    return rk_version, versions

