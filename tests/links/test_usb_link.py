"""The USB link through pyusb's real ``usb.core.find``, with a bus of our own at the lowest layer.

No USB bus exists on the test host, so the stand-in is a pyusb *backend* (``usb.backend.IBackend``): it
answers enumerate_devices/get_device_descriptor the way libusb would, and everything above it (pyusb's
Device objects and matching, our discovery, mode rules, polling) runs for real.
"""

from __future__ import annotations

import pytest
import usb.backend
import usb.core
from hypothesis import given
from hypothesis import strategies as st
from support.usb import ScriptedBus, descriptor

from harness.chips import load_chips
from harness.errors import BoardError, ConfigError, LinkDown, LinkTimeout
from harness.links.usb import UsbLink, device_mode, find_rockchip_devices, parse_rkdeveloptool_ld

HUB = descriptor(0x1D6B, 0x0002, bus=1, address=1, ports=None)
RK3588_MASKROM = descriptor(0x2207, 0x350B, bus=1, address=7, ports=(2, 3), bcd_usb=0x0200)
RV1126_LOADER = descriptor(0x2207, 0x110B, bus=3, address=4, ports=(1,), bcd_usb=0x0201)
ADB_GADGET = descriptor(0x2207, 0x0006, bus=1, address=9, ports=(4,))
RK1808_RUNNING = descriptor(0x2207, 0x1005, bus=2, address=3, ports=(1, 1, 2))
UNKNOWN_RK = descriptor(0x2207, 0x7777, bus=2, address=5, ports=(3,))
FTDI = descriptor(0x0403, 0x6001, bus=1, address=2, ports=(1,))


def test_discovery_names_location_mode_and_chip():
    bus = ScriptedBus([HUB, FTDI, RK3588_MASKROM, RV1126_LOADER, ADB_GADGET, RK1808_RUNNING, UNKNOWN_RK])
    found = {d.location: d for d in find_rockchip_devices(bus)}
    assert set(found) == {"1-2.3", "3-1", "1-4", "2-1.1.2", "2-3"}  # the hub and the FTDI cable are not Rockchip
    assert (found["1-2.3"].mode, found["1-2.3"].chip) == ("maskrom", "rk3588/rk3588s")
    assert (found["3-1"].mode, found["3-1"].chips) == ("loader", ("rv1126", "rv1109"))
    assert (found["1-4"].mode, found["1-4"].chip) == ("adb", None)
    assert (found["2-1.1.2"].mode, found["2-1.1.2"].chip) == ("running", "rk1808")  # RK1806: unknown
    assert (found["2-3"].mode, found["2-3"].chip) == ("running", None)
    assert (found["1-2.3"].bus, found["1-2.3"].address, found["1-2.3"].product_id) == (1, 7, 0x350B)
    assert found["3-1"].location_id == 0x301  # rkdeveloptool's bus << 8 | port


def test_device_without_port_numbers_has_no_location():
    old_libusb = descriptor(0x2207, 0x350A, bus=5, address=2, ports=None, bcd_usb=0x0201)
    (dev,) = find_rockchip_devices(ScriptedBus([old_libusb]))
    assert dev.location is None and dev.location_id is None
    assert "bus 5 address 2" in dev.describe()


@given(pid=st.sampled_from(sorted({c.usb_pid for c in load_chips().values()})), bcd=st.integers(0, 0xFFFF))
def test_bcdusb_bit0_alone_tells_loader_from_maskrom(pid, bcd):
    assert device_mode(pid, bcd) == ("loader" if bcd & 1 else "maskrom")


def test_find_picks_the_board_at_its_location():
    bus = ScriptedBus([RK3588_MASKROM, RV1126_LOADER, ADB_GADGET])
    assert UsbLink("3-1", backend=bus).find().product_id == 0x110B
    assert UsbLink("1-2.3", chip="rk3588s", backend=bus).find().mode == "maskrom"


def test_find_reports_what_it_saw_instead():
    bus = ScriptedBus([RK3588_MASKROM, ADB_GADGET])
    with pytest.raises(LinkDown) as info:
        UsbLink("1-4", backend=bus).find()
    message = str(info.value)
    assert "no Rockchip device in Loader/Maskrom mode at 1-4" in message
    assert "1-2.3 2207:350b rk3588/rk3588s maskrom" in message and "1-4 2207:0006 unknown chip adb" in message


def test_find_on_an_empty_bus_says_so():
    with pytest.raises(LinkDown, match="no Rockchip device .vendor 0x2207. on any bus"):
        UsbLink(backend=ScriptedBus([HUB, FTDI])).find()


def test_chip_filter_ignores_other_chips():
    bus = ScriptedBus([RK3588_MASKROM, RV1126_LOADER])
    assert UsbLink(chip="rv1109", backend=bus).find().location == "3-1"  # rv1109 and rv1126 share 0x110b
    with pytest.raises(LinkDown, match=r"\(rk3568\)"):
        UsbLink(chip="rk3568", backend=bus).find()


def test_two_boards_without_a_location_is_a_config_error():
    with pytest.raises(ConfigError, match="set usb.location"):
        UsbLink(backend=ScriptedBus([RK3588_MASKROM, RV1126_LOADER])).find()


def test_wait_for_mode_follows_a_board_through_reboot_into_loader():
    running = descriptor(0x2207, 0x0006, bus=1, address=9, ports=(2, 3))
    loader = descriptor(0x2207, 0x350B, bus=1, address=10, ports=(2, 3), bcd_usb=0x0201)
    bus = ScriptedBus([running, HUB], [HUB], [HUB], [loader, HUB])  # adb, gone while it resets, then Loader
    link = UsbLink("1-2.3", chip="rk3588", backend=bus, poll_interval=0.01)
    found = link.wait_for_mode("loader", timeout=30)
    assert (found.mode, found.address, found.location) == ("loader", 10, "1-2.3")
    assert bus.enumerations == 4  # it polled through the two empty snapshots


def test_wait_for_mode_times_out_naming_the_mode():
    bus = ScriptedBus([ADB_GADGET])
    with pytest.raises(LinkTimeout, match="no Rockchip device in maskrom mode at 1-4 within 0.05 s"):
        UsbLink("1-4", backend=bus, poll_interval=0.01).wait_for_mode("maskrom", timeout=0.05)
    assert bus.enumerations >= 2  # it polled, not looked once


@pytest.mark.parametrize("kwargs, error", [
    (dict(location="usb1"), "not a port path"),
    (dict(location="1-2.x"), "not a port path"),
    (dict(chip="rk9999"), "known chips: .*rk3588"),
])
def test_bad_settings_are_config_errors(kwargs, error):
    with pytest.raises(ConfigError, match=error):
        UsbLink(backend=ScriptedBus([]), **kwargs)


def test_unknown_mode_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown USB mode 'fastboot'"):
        UsbLink(backend=ScriptedBus([])).wait_for_mode("fastboot", timeout=0)


class BrokenBackend(ScriptedBus):
    def enumerate_devices(self):
        raise usb.core.USBError("Access denied (insufficient permissions)")


def test_unreadable_bus_is_a_board_error():
    with pytest.raises(BoardError, match="cannot list USB devices: .*Access denied"):
        find_rockchip_devices(BrokenBackend())


def test_host_libusb_backend_answers():
    """The real libusb backend on this host: a list of Rockchip devices (usually none) or a clear error."""
    try:
        devices = find_rockchip_devices()
    except BoardError as exc:
        assert "libusb" in str(exc) or "USB" in str(exc)
    else:
        assert all(d.vendor_id == 0x2207 for d in devices)


def test_parse_rkdeveloptool_ld_both_formats():
    text = ("DevNo=1\tVid=0x2207,Pid=0x350b,LocationID=303\tMaskrom\n"
            "DevNo=2\tVid=0x2207,Pid=0x110b,LocationID=10a\tMode=Loader\tSerialNo=\r\n")
    first, second = parse_rkdeveloptool_ld(text)
    assert (first.devno, first.vendor_id, first.product_id, first.mode) == (1, 0x2207, 0x350B, "maskrom")
    assert (first.bus, first.port_number) == (3, 3)
    assert (second.product_id, second.location_id, second.mode) == (0x110B, 0x10A, "loader")
    assert (second.bus, second.port_number) == (1, 10)


def test_parse_rkdeveloptool_ld_matches_a_pyusb_device():
    (dev,) = find_rockchip_devices(ScriptedBus([descriptor(0x2207, 0x350B, bus=3, address=5, ports=(1, 3))]))
    (entry,) = parse_rkdeveloptool_ld("DevNo=1\tVid=0x2207,Pid=0x350b,LocationID=303\tMaskrom\n")
    assert entry.location_id == dev.location_id


@pytest.mark.parametrize("text", ["not found any devices!\n", "", "List of rockusb connected(0)\n"
                                  "No found any rockusb device, please plug device in!\n"])
def test_parse_rkdeveloptool_ld_nothing(text):
    assert parse_rkdeveloptool_ld(text) == []


def test_parse_rkdeveloptool_ld_refuses_what_it_cannot_read():
    with pytest.raises(BoardError, match="cannot read this line"):
        parse_rkdeveloptool_ld("error: libusb_init failed\n")
