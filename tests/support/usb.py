"""The lowest-layer USB stand-in: a pyusb backend with scripted enumerations.

Why: no USB bus exists on the test hosts, and the standards allow a stand-in only at the lowest layer. The code
under test still calls the real ``usb.core.find(backend=...)``; both the USB link tests and the flashing tests
use this one bus.
"""

from __future__ import annotations

from types import SimpleNamespace

import usb.backend


def descriptor(vid: int, pid: int, *, bus: int, address: int, ports: tuple[int, ...] | None,
               bcd_usb: int = 0x0200) -> SimpleNamespace:
    """A device descriptor with the fields libusb1's backend fills (pyusb copies each one onto Device)."""
    return SimpleNamespace(
        bLength=18, bDescriptorType=1, bcdUSB=bcd_usb, bDeviceClass=0, bDeviceSubClass=0, bDeviceProtocol=0,
        bMaxPacketSize0=64, idVendor=vid, idProduct=pid, bcdDevice=0x0100, iManufacturer=1, iProduct=2,
        iSerialNumber=0, bNumConfigurations=1, bus=bus, address=address,
        port_number=ports[-1] if ports else None, port_numbers=ports, speed=3)


class ScriptedBus(usb.backend.IBackend):
    """A pyusb backend whose bus shows ``snapshots[i]`` on the i-th enumeration (the last one stays)."""

    def __init__(self, *snapshots: list[SimpleNamespace]) -> None:
        super().__init__()
        self.snapshots = [list(s) for s in snapshots] or [[]]
        self.enumerations = 0

    def enumerate_devices(self):
        shown = self.snapshots[min(self.enumerations, len(self.snapshots) - 1)]
        self.enumerations += 1
        return iter(shown)

    def get_device_descriptor(self, dev):
        return dev
