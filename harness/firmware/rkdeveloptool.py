"""Drive Debian's ``rkdeveloptool`` (Rockchip's open-source USB flasher) as a subprocess, with a deadline each.

Why a subprocess and not our own rockusb protocol: rkdeveloptool is what Rockchip maintains and what a lab
already trusts for Loader/Maskrom work; we read its output. Its messages (main.cpp of rockchip-linux/
rkdeveloptool) decide the error class, because it exits 1 for every failure alike:

* ``Did not find any rockusb device, please plug device in!`` -> :class:`LinkDown` (no board in Loader or
  Maskrom mode); ``ld`` says ``not found any devices!`` instead, which is an empty list, not an error.
* ``Found too many rockusb devices`` -> :class:`BoardError`: rkdeveloptool cannot pick a board, so a flash
  on a shared host must wait until only one is in Loader/Maskrom mode.
* ``The device does not support this operation!`` -> :class:`BoardError` naming the mode the command needs
  (``db`` runs only in Maskrom).
* anything else failing -> :class:`BoardError` carrying the tool's last lines.

Output goes through an ANSI filter first: the tool colours errors and rewrites its progress line in place.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from harness.errors import BoardError, ConfigError, LinkDown, LinkTimeout
from harness.links.usb import LdEntry, parse_rkdeveloptool_ld

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_PARTITION = re.compile(r"^[A-Za-z0-9_.-]{1,36}$")
NO_DEVICE = "did not find any rockusb device"
TOO_MANY = "found too many rockusb devices"
WRONG_MODE = "the device does not support this operation"
_FAILED = re.compile(r"fail|invalid|no found|not found|can't open|quit", re.IGNORECASE)


def clean_output(text: str) -> str:
    """The tool's text without colour/cursor escapes and carriage returns."""
    return _ANSI.sub("", text).replace("\r", "")


@dataclass(frozen=True)
class ToolResult:
    """One rkdeveloptool run: its argv, exit code and cleaned output."""

    argv: tuple[str, ...]
    exit_code: int
    output: str

    @property
    def last_lines(self) -> str:
        lines = [ln.strip() for ln in self.output.splitlines() if ln.strip()]
        return " | ".join(lines[-3:]) or "no output"


class RkDevelopTool:
    """rkdeveloptool at ``executable`` (default: found on PATH), one deadline per command."""

    def __init__(self, executable: str | Path = "rkdeveloptool", *, timeout: float = 60.0,
                 write_timeout: float = 1800.0) -> None:
        found = shutil.which(str(executable))
        if found is None:
            raise ConfigError(f"rkdeveloptool not found ({executable})",
                              fix="sudo apt-get install rkdeveloptool, or pass its path")
        self.executable = found
        self.timeout = timeout
        self.write_timeout = write_timeout

    def run(self, *args: str, timeout: float | None = None) -> ToolResult:
        """Run one command; LinkTimeout when it misses the deadline (the child is killed by its PID)."""
        argv = (self.executable, *args)
        deadline = self.timeout if timeout is None else timeout
        try:
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, timeout=deadline, check=False)
        except subprocess.TimeoutExpired as exc:
            partial = clean_output((exc.output or b"").decode("utf-8", "replace")).strip().splitlines()
            raise LinkTimeout(f"rkdeveloptool {' '.join(args)} did not finish within {deadline:g} s"
                              + (f"; last output: {partial[-1]}" if partial else "")) from None
        except OSError as exc:
            raise BoardError(f"cannot run {self.executable}: {exc.strerror or exc}") from None
        return ToolResult(argv=argv, exit_code=done.returncode,
                          output=clean_output(done.stdout.decode("utf-8", "replace")))

    def _checked(self, what: str, needs: str, *args: str, timeout: float | None = None,
                 success: str | None = None) -> ToolResult:
        result = self.run(*args, timeout=timeout)
        low = result.output.lower()
        if NO_DEVICE in low:
            raise LinkDown(f"rkdeveloptool {what}: no device in {needs} mode on USB",
                           fix="hold the board's RECOVERY (Loader) or MASKROM key while powering it, "
                               "or run `reboot loader` on it")
        if TOO_MANY in low:
            raise BoardError(f"rkdeveloptool {what}: more than one device in Loader/Maskrom mode; it cannot "
                             "choose, so leave only this board in that mode")
        if WRONG_MODE in low:
            raise BoardError(f"rkdeveloptool {what}: the device is not in {needs} mode ({result.last_lines})")
        failed = result.exit_code != 0 or any(_FAILED.search(ln) for ln in low.splitlines())
        if failed or (success is not None and success.lower() not in low):
            raise BoardError(f"rkdeveloptool {what} failed (exit {result.exit_code}): {result.last_lines}")
        return result

    # -- commands ------------------------------------------------------------------------------------
    def list_devices(self, timeout: float | None = None) -> list[LdEntry]:
        """``ld``: devices in Loader/Maskrom mode; [] when there are none (the tool then exits 1)."""
        result = self.run("ld", timeout=timeout)
        entries = parse_rkdeveloptool_ld(result.output)
        if result.exit_code != 0 and entries:
            raise BoardError(f"rkdeveloptool ld failed (exit {result.exit_code}): {result.last_lines}")
        if result.exit_code != 0 and "not found any devices" not in result.output.lower():
            raise BoardError(f"rkdeveloptool ld failed (exit {result.exit_code}): {result.last_lines}")
        return entries

    def loader_device(self, timeout: float | None = None) -> LdEntry:
        """The one device in Loader mode; LinkDown naming what ``ld`` showed when there is none."""
        entries = self.list_devices(timeout=timeout)
        loaders = [e for e in entries if e.mode == "loader"]
        if len(loaders) == 1:
            return loaders[0]
        if len(loaders) > 1:
            raise BoardError(f"{len(loaders)} devices in Loader mode; rkdeveloptool cannot choose between them")
        seen = "; ".join(f"{e.vendor_id:04x}:{e.product_id:04x} at LocationID {e.location_id:x} in {e.mode}"
                         for e in entries) or "no Rockchip device in Loader or Maskrom mode"
        raise LinkDown(f"no device in Loader mode ({seen})",
                       fix="hold RECOVERY while powering the board, or run `reboot loader` on it")

    def download_boot(self, loader: str | Path, timeout: float | None = None) -> ToolResult:
        """``db LOADER``: load the USB loader into RAM (Maskrom only)."""
        path = _existing(loader, "loader")
        return self._checked("db", "Maskrom", "db", str(path), timeout=timeout,
                             success="Downloading bootloader succeeded")

    def write_lba(self, sector: int, image: str | Path, timeout: float | None = None) -> ToolResult:
        """``wl SECTOR FILE``: write a file at a 512-byte sector (Loader, or Maskrom after ``db``)."""
        if isinstance(sector, bool) or not isinstance(sector, int) or sector < 0:
            raise ConfigError(f"sector must be a non-negative integer, not {sector!r}")
        path = _existing(image, "image")
        return self._checked("wl", "Loader", "wl", str(sector), str(path),
                             timeout=self.write_timeout if timeout is None else timeout)

    def write_partition(self, partition: str, image: str | Path, timeout: float | None = None) -> ToolResult:
        """``wlx PARTITION FILE``: write a file to a partition named in the board's GPT or parameter."""
        if not _PARTITION.match(partition or ""):
            raise ConfigError(f"partition name {partition!r} is not a GPT name (letters, digits, _ . -)")
        path = _existing(image, "image")
        return self._checked("wlx", "Loader", "wlx", partition, str(path),
                             timeout=self.write_timeout if timeout is None else timeout)

    def reset(self, subcode: int | None = None, timeout: float | None = None) -> ToolResult:
        """``rd [SUBCODE]``: reset the device (0-5, as rkdeveloptool accepts)."""
        args = ["rd"]
        if subcode is not None:
            if isinstance(subcode, bool) or not isinstance(subcode, int) or not 0 <= subcode <= 5:
                raise ConfigError(f"reset subcode must be 0-5, not {subcode!r}")
            args.append(str(subcode))
        return self._checked("rd", "Loader/Maskrom", *args, timeout=timeout, success="Reset Device OK")


def _existing(path: str | Path, what: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{what} file {p} does not exist or is not a file")
    return p.resolve()
