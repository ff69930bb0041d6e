"""The USB link: find Rockchip boards on the host's USB buses with pyusb and wait for the mode a flash needs.

Why pyusb and not ``rkdeveloptool ld``: the harness must tell apart several boards on one host, and only the
USB port path ("1-2.3", as sysfs names it) is stable across re-enumeration (the bus address changes on every
reset). rkdeveloptool identifies a device by ``LocationID`` = bus << 8 | last port number, which two boards
behind two hubs can share. :func:`parse_rkdeveloptool_ld` still reads its output, for the flash helpers that
drive it, and :attr:`UsbDevice.location_id` gives the same number so the two can be matched.

Mode rules (rockchip-facts.md, "USB (vendor 0x2207)"; rkdeveloptool's RKScan.cpp does the same): the chip's
own product id serves Maskrom and Loader, bcdUSB bit 0 is 0 in Maskrom and 1 in Loader; the adb gadget id
0x0006 means a running system with adb; any other Rockchip id is a running system (RK1808's 0x1005/0x0019,
the NTB gadget 0x1808, ...).

Only :func:`usb.core.find` touches the bus, with the ``backend`` passed through: tests hand in a pyusb backend
of their own and everything above it runs for real.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any, Literal

import usb.core

from harness.chips import chip as lookup_chip
from harness.chips import chips_by_usb_pid, usb_ids
from harness.errors import BoardError, ConfigError, LinkDown, LinkTimeout

Mode = Literal["maskrom", "loader", "adb", "running"]
MODES: tuple[str, ...] = ("maskrom", "loader", "adb", "running")
FLASH_MODES = frozenset({"maskrom", "loader"})

_LOCATION = re.compile(r"^\d+-\d+(\.\d+)*$")
_DEFAULT_POLL = 0.25


@dataclass(frozen=True)
class UsbDevice:
    """One Rockchip device as the bus shows it now."""

    bus: int
    address: int
    location: str | None
    vendor_id: int
    product_id: int
    bcd_usb: int
    mode: Mode
    chips: tuple[str, ...]

    @property
    def chip(self) -> str | None:
        """The chip name, or "rk3566/rk3568" for twins USB cannot tell apart; None for an unknown id."""
        return "/".join(self.chips) if self.chips else None

    @property
    def port_number(self) -> int | None:
        return int(self.location.rpartition(".")[2].rpartition("-")[2]) if self.location else None

    @property
    def location_id(self) -> int | None:
        """rkdeveloptool's LocationID for this device (bus << 8 | last port number)."""
        port = self.port_number
        return (self.bus << 8) | port if port is not None else None

    def describe(self) -> str:
        where = self.location or f"bus {self.bus} address {self.address}"
        return f"{where} {self.vendor_id:04x}:{self.product_id:04x} {self.chip or 'unknown chip'} {self.mode}"


def check_location(location: str) -> str:
    """A sysfs USB port path such as "1-2.3"; ConfigError for anything else."""
    if not _LOCATION.match(location or ""):
        raise ConfigError(f"USB location {location!r} is not a port path like '1-2.3' "
                          "(bus-port[.port...], as in /sys/bus/usb/devices)")
    return location


def device_mode(product_id: int, bcd_usb: int) -> Mode:
    """Maskrom/Loader for a chip's own id (bcdUSB bit 0), adb for the adb gadget, running for anything else."""
    if any(product_id == c.usb_pid for c in chips_by_usb_pid(product_id)):
        return "loader" if bcd_usb & 1 else "maskrom"
    if product_id == usb_ids().adb_pid:
        return "adb"
    return "running"


def _location(dev: Any) -> str | None:
    ports = getattr(dev, "port_numbers", None)
    if not ports or dev.bus is None:
        return None
    return f"{dev.bus}-{'.'.join(str(p) for p in ports)}"


def find_rockchip_devices(backend: Any = None) -> list[UsbDevice]:
    """Every device with Rockchip's vendor id on the host, in bus order; BoardError when USB cannot be read."""
    try:
        found = list(usb.core.find(find_all=True, idVendor=usb_ids().vendor, backend=backend))
    except usb.core.NoBackendError:
        raise BoardError("pyusb found no USB backend to list devices",
                         fix="install libusb: sudo apt-get install libusb-1.0-0") from None
    except usb.core.USBError as exc:
        raise BoardError(f"cannot list USB devices: {exc}") from None
    devices = []
    for dev in found:
        devices.append(UsbDevice(
            bus=int(dev.bus or 0), address=int(dev.address or 0), location=_location(dev),
            vendor_id=dev.idVendor, product_id=dev.idProduct, bcd_usb=dev.bcdUSB,
            mode=device_mode(dev.idProduct, dev.bcdUSB),
            chips=tuple(c.name for c in chips_by_usb_pid(dev.idProduct))))
    return sorted(devices, key=lambda d: (d.bus, d.location or "", d.address))


class UsbLink:
    """One board's USB port: find it, wait until it shows the mode a flash needs.

    ``location`` pins the board to a port path (needed when several boards share the host); ``chip``
    ignores devices of other chips (twins, which share an id, both match).
    """

    def __init__(self, location: str | None = None, chip: str | None = None, backend: Any = None, *,
                 poll_interval: float = _DEFAULT_POLL) -> None:
        self.location = check_location(location) if location is not None else None
        self.chip = lookup_chip(chip) if chip is not None else None
        self.backend = backend
        self.poll_interval = poll_interval
        self.last_seen: list[UsbDevice] = []

    @property
    def name(self) -> str:
        return f"usb:{self.location or 'any'}"

    def _where(self) -> str:
        return f"at {self.location}" if self.location else "on any USB port"

    def _matches(self, device: UsbDevice) -> bool:
        if self.location is not None and device.location != self.location:
            return False
        return self.chip is None or not device.chips or bool(self.chip.family & set(device.chips))

    def devices(self) -> list[UsbDevice]:
        """This board's candidates now: Rockchip devices at the location, of the chip (if set)."""
        self.last_seen = find_rockchip_devices(self.backend)
        return [d for d in self.last_seen if self._matches(d)]

    def _seen(self) -> str:
        if not self.last_seen:
            return "no Rockchip device (vendor 0x2207) on any bus"
        return "seen: " + "; ".join(d.describe() for d in self.last_seen)

    def _poll(self, wanted: frozenset[str], timeout: float) -> UsbDevice | None:
        """The first matching device in one of ``wanted`` modes, polling until the deadline."""
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            hits = [d for d in self.devices() if d.mode in wanted]
            if len(hits) > 1 and self.location is None:
                raise ConfigError(f"{len(hits)} Rockchip devices {'/'.join(sorted(wanted))} on this host "
                                  f"({'; '.join(d.describe() for d in hits)}): set usb.location for the board")
            if hits:
                return hits[0]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            time.sleep(min(self.poll_interval, remaining))

    def find(self, timeout: float = 0.0) -> UsbDevice:
        """The board in Loader or Maskrom mode; LinkDown naming what the bus showed instead."""
        found = self._poll(FLASH_MODES, timeout)
        if found is None:
            chip = f" ({self.chip.name})" if self.chip else ""
            raise LinkDown(f"no Rockchip device{chip} in Loader/Maskrom mode {self._where()}; {self._seen()}",
                           fix="hold the board's RECOVERY (Loader) or MASKROM key while powering it, "
                               "or run `reboot loader` on it")
        return found

    def wait_for_mode(self, mode: str, timeout: float) -> UsbDevice:
        """Poll until the board shows ``mode`` (maskrom, loader, adb, running); LinkTimeout at the deadline."""
        if mode not in MODES:
            raise ConfigError(f"unknown USB mode {mode!r}; one of {', '.join(MODES)}")
        found = self._poll(frozenset({mode}), timeout)
        if found is None:
            raise LinkTimeout(f"no Rockchip device in {mode} mode {self._where()} within {timeout:g} s; "
                              f"{self._seen()}")
        return found


@dataclass(frozen=True)
class LdEntry:
    """One line of ``rkdeveloptool ld``."""

    devno: int
    vendor_id: int
    product_id: int
    location_id: int
    mode: str

    @property
    def bus(self) -> int:
        return self.location_id >> 8

    @property
    def port_number(self) -> int:
        return self.location_id & 0xFF


_LD_LINE = re.compile(r"DevNo=(?P<devno>\d+)\s+Vid=0x(?P<vid>[0-9a-fA-F]+),\s*Pid=0x(?P<pid>[0-9a-fA-F]+),"
                      r"\s*LocationID=(?P<loc>[0-9a-fA-F]+)\s+(?:Mode=)?(?P<mode>\w+)")
_LD_NOTHING = ("not found any devices", "no found any rockusb device")
_LD_HEADER = re.compile(r"^List of rockusb connected", re.IGNORECASE)


def parse_rkdeveloptool_ld(text: str) -> list[LdEntry]:
    """The devices ``rkdeveloptool ld`` lists (LocationID is hex); [] for "not found any devices!".

    A line in neither form raises BoardError: a changed tool output must not read as "no device".
    """
    entries = []
    for line in text.splitlines():
        line = line.strip()
        if not line or _LD_HEADER.match(line) or any(n in line.lower() for n in _LD_NOTHING):
            continue
        m = _LD_LINE.search(line)
        if not m:
            raise BoardError(f"cannot read this line of `rkdeveloptool ld`: {line!r}")
        entries.append(LdEntry(devno=int(m["devno"]), vendor_id=int(m["vid"], 16), product_id=int(m["pid"], 16),
                               location_id=int(m["loc"], 16), mode=m["mode"].lower()))
    return entries
