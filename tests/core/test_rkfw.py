"""update.img (RKFW): an image we build reads back, and every kind of bad image is refused in one line.

The layout checks use facts from outside our code: the byte offsets of rockchip-facts.md, the ASCII hex MD5
computed here with hashlib over the file's own bytes, and the chip bytes a real RK3588 image carries ("8853").
"""

from __future__ import annotations

import datetime as dt
import hashlib
import struct
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.errors import ConfigError
from harness.firmware.rkfw import (
    CHUNK,
    UpdateImage,
    build_update_image,
    read_update_image,
)

VERSIONS = {"rknn_server": "2.3.2", "driver": "0.9.8", "runtime": "2.3.2"}
WHEN = dt.datetime(2025, 3, 30, 9, 54, 34)


def build(tmp_path: Path, chip: str = "rk3588", **kw) -> Path:
    kw.setdefault("versions", VERSIONS)
    return build_update_image(tmp_path / f"{chip}.img", chip=chip, rk_version="RK3588_LINUX_SDK_V1.1",
                              build_time=WHEN, **kw)


def u32(data: bytes, offset: int) -> int:
    return struct.unpack_from("<I", data, offset)[0]


def test_round_trip_reads_every_field_and_the_manifest(tmp_path) -> None:
    path = build(tmp_path, version=(2, 3, 258))
    image = read_update_image(path, chip="rk3588")
    assert image.version == (2, 3, 258) and image.version_str == "2.3.258"
    assert image.build_time == "2025-03-30 09:54:34"
    assert image.chips == ("rk3588",) and image.chip_tag == "3588"
    assert image.manifest == {"npu-hil-manifest": 1, "chip": "rk3588", "rk_version": "RK3588_LINUX_SDK_V1.1",
                              "versions": VERSIONS}
    assert not image.signed and image.payload_magic == "npu-hil-manifest"


def test_layout_matches_the_facts_file_offsets(tmp_path) -> None:
    data = build(tmp_path, version=(1, 2, 3)).read_bytes()
    assert data[:4] == b"RKFW" and struct.unpack_from("<H", data, 4)[0] == 0x66
    assert data[9] == 1 and data[8] == 2 and struct.unpack_from("<H", data, 6)[0] == 3  # rkunpack's reading
    assert struct.unpack_from("<HBBBBB", data, 0x0E) == (2025, 3, 30, 9, 54, 34)
    assert data[0x15:0x19] == b"8853"  # a vendor RK3588 image's chip bytes
    boot_off, boot_size, fw_off, fw_size = (u32(data, o) for o in (0x19, 0x1D, 0x21, 0x25))
    assert boot_off >= 0x66 and fw_off >= boot_off + boot_size and fw_off + fw_size == len(data) - 32
    assert data[-32:] == hashlib.md5(data[:-32]).hexdigest().encode()


def test_twin_and_rv1126_images(tmp_path) -> None:
    rv = read_update_image(build(tmp_path, "rv1126"), chip="rv1109")  # twins share the loader
    assert rv.chip_tag == "1126" and rv.chip_code == 0x31313236
    assert read_update_image(build(tmp_path, "rk3566")).chip_tag == "3568"  # rkbin: RK3566 loader NAME=RK3568


def test_md5_is_streamed_over_many_chunks(tmp_path) -> None:
    path = build(tmp_path, payload_padding=2 * CHUNK + 12345)
    assert read_update_image(path).size > 2 * CHUNK
    with open(path, "r+b") as f:  # one flipped byte deep in the second chunk
        f.seek(CHUNK + 777)
        byte = f.read(1)
        f.seek(CHUNK + 777)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ConfigError, match="wrong MD5"):
        read_update_image(path)


def test_signed_image_md5_sits_after_the_firmware(tmp_path) -> None:
    data = build(tmp_path).read_bytes()[:-32]
    signed = tmp_path / "signed.img"
    signed.write_bytes(data + hashlib.md5(data).hexdigest().encode() + bytes(range(256)))
    image = read_update_image(signed)
    assert image.signed and image.md5 == hashlib.md5(data).hexdigest()


def test_real_rkaf_payload_has_no_manifest(tmp_path) -> None:
    body = bytearray(build(tmp_path).read_bytes()[:-32])
    fw_off = u32(body, 0x21)
    body[fw_off:fw_off + 4] = b"RKAF"
    path = tmp_path / "rkaf.img"
    path.write_bytes(bytes(body) + hashlib.md5(body).hexdigest().encode())
    image = read_update_image(path)
    assert image.manifest is None and image.payload_magic == "RKAF"


def _rewrite(path: Path, offset: int, value: bytes, *, fix_md5: bool = True) -> Path:
    body = bytearray(path.read_bytes()[:-32])
    body[offset:offset + len(value)] = value
    path.write_bytes(bytes(body) + (hashlib.md5(body).hexdigest().encode() if fix_md5 else path.read_bytes()[-32:]))
    return path


@pytest.mark.parametrize("mutate, message", [
    (lambda p: p.write_bytes(b"ANDROID!" + p.read_bytes()[8:]), "no RKFW magic"),
    (lambda p: p.write_bytes(p.read_bytes()[:100]), "truncated"),
    (lambda p: p.write_bytes(p.read_bytes()[:-40]), "truncated"),
    (lambda p: _rewrite(p, 0x25, struct.pack("<I", 0x7FFFFFFF)), "truncated: firmware area"),
    (lambda p: _rewrite(p, 0x1D, struct.pack("<I", 0x7FFFFFFF)), "truncated: boot area"),
    (lambda p: _rewrite(p, 0x29 + 14, b"HI\x01\0\0\0"), "truncated: firmware area"),
    (lambda p: _rewrite(p, 0x19, struct.pack("<I", 4)), "overlaps the header"),
    (lambda p: _rewrite(p, 0x15, b"8853"[::-1], fix_md5=False), "wrong MD5"),
    (lambda p: p.write_bytes(p.read_bytes()[:-32] + b"z" * 32), "no MD5"),
    (lambda p: _rewrite(p, 0xCC + 30, b"\xff"), "manifest is not valid JSON"),
])
def test_bad_images_are_refused_in_one_line(tmp_path, mutate, message) -> None:
    path = build(tmp_path)
    mutate(path)
    with pytest.raises(ConfigError, match=message) as caught:
        read_update_image(path)
    assert "\n" not in str(caught.value) and str(path) in str(caught.value)


def test_image_for_another_chip_is_refused(tmp_path) -> None:
    path = build(tmp_path, "rk3588")
    with pytest.raises(ConfigError, match="image is for RK3588 .*not rv1126"):
        read_update_image(path, chip="rv1126")
    # a header that claims rv1126 while the manifest says rk3588 is still refused on an rv1126
    _rewrite(path, 0x15, (0x31313236).to_bytes(4, "little"))
    with pytest.raises(ConfigError, match="manifest is for rk3588"):
        read_update_image(path, chip="rv1126")


def test_unknown_chip_code_is_reported_raw(tmp_path) -> None:
    path = _rewrite(build(tmp_path), 0x15, b"ZZZZ")
    image = read_update_image(path)
    assert image.chips == () and image.chip_name == "unknown chip tag 'ZZZZ'"
    with pytest.raises(ConfigError, match="0x5a5a5a5a"):
        read_update_image(path, chip="rk3588")


def test_missing_file_and_bad_arguments(tmp_path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        read_update_image(tmp_path / "absent.img")
    with pytest.raises(ConfigError, match="unknown chip"):
        build(tmp_path, "rk9999")
    with pytest.raises(ConfigError, match="lack driver"):
        build(tmp_path, versions={"rknn_server": "1", "runtime": "1"})
    with pytest.raises(ConfigError, match="out of range"):
        build(tmp_path, version=(256, 0, 0))


def _fuzz_one(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.img"
        path.write_bytes(data)
        try:
            assert isinstance(read_update_image(path), UpdateImage)
        except ConfigError as exc:
            assert "\n" not in str(exc)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_fuzz_any_bytes_parse_or_refuse(data: bytes) -> None:
    _fuzz_one(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 420), st.binary(min_size=1, max_size=8)), max_size=6), st.booleans())
def test_fuzz_mutated_valid_images_parse_or_refuse(edits, fix_md5: bool) -> None:
    with tempfile.TemporaryDirectory() as folder:
        body = bytearray(build_update_image(Path(folder) / "v.img", chip="rv1126", rk_version="x",
                                            versions=VERSIONS).read_bytes()[:-32])
        for offset, value in edits:
            body[offset:offset + len(value)] = value
        tail = hashlib.md5(body).hexdigest().encode() if fix_md5 else b"0" * 32
    _fuzz_one(bytes(body) + tail)
