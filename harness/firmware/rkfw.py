"""Rockchip ``update.img`` (RKFW): read its header, verify its MD5, find the simulator's manifest; build one.

Layout (rockchip-facts.md "Firmware update on a running Linux board"; the same packed little-endian struct is
``STRUCT_RKIMAGE_HEAD`` in rkdeveloptool's RKImage.h)::

    0x00 "RKFW"   0x04 u16 header size   0x06 u32 version   0x0A u32 merge version
    0x0E u16 year, u8 month, day, hour, minute, second      0x15 u32 chip
    0x19 u32 boot offset   0x1D u32 boot size   0x21 u32 firmware offset   0x25 u32 firmware size
    0x29 61 reserved bytes (header 0x66); reserved[14:16] == "HI" -> reserved[16:20] is the firmware size's
    high 32 bits (images over 4 GiB, as rkdeveloptool reads them)

Version: ``(major << 24) | (minor << 16) | patch`` (ROM_VERSION in the public rkrom.h); Rockchip's unpackers
print it as ``byte3.byte2.(u16 of bytes 0-1)`` in decimal (rkflashtool's rkunpack), and so do we.

MD5, what we implement and why: the last 32 bytes are the MD5 of every byte before them, written as 32
lowercase ASCII hex digits (img_maker's ``append_md5sum`` hashes the whole file, then appends ``%02x`` x16; the
facts file only says "an MD5", this is the form that fits 32 bytes). A signed image carries 160 bytes or more
after the firmware area: there the MD5 sits right after the firmware area, followed by the signature (this is
how rkdeveloptool's CRKImage finds it); we check the MD5 over the bytes before it and report ``signed``.
The hash is computed in 1 MiB chunks: real images are gigabytes.

Chip field: the loader's chip tag, four ASCII characters packed big-endian into the u32 (so a RK3588 image
holds the bytes "8853" at 0x15). Sources: rkbin's RKBOOT/*.ini ``[CHIP_NAME] NAME=`` gives each chip's tag
(boot_merger drops the first two letters: RV1126 -> "1126", RK330C -> "330C"); Rockchip's Yocto recipe packs
update.img with ``rkImageMaker -RK<tag read from loader.bin at offset 21>``; img_maker writes -rk3128 as
0x33313241 ("312A") and rkflashtool names first byte 0x38 ('8') rk3588. Verified per chip from the rkbin ini
files: see :data:`CHIP_TAGS`. Not verified against a byte dump of a real update.img for each chip.

The simulator's images (built by :func:`build_update_image`) carry a manifest: the firmware area starts with
one JSON object ``{"npu-hil-manifest": 1, "chip": ..., "rk_version": ..., "versions": {...}}`` in UTF-8,
ended by a NUL byte; anything after the NUL is opaque filler. A real image's firmware area starts with
"RKAF" (afptool's package) and has no manifest; :attr:`UpdateImage.payload_magic` says which.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from harness.chips import Chip
from harness.chips import chip as lookup_chip
from harness.errors import ConfigError

MAGIC = b"RKFW"
HEADER = struct.Struct("<4sHIIHBBBBBIIIII61s")
HEADER_SIZE = HEADER.size  # 0x66
MD5_SIZE = 32
#: At least this many bytes after the firmware area mean MD5 + signature (rkdeveloptool's rule).
SIGNED_TRAILER = 160
CHUNK = 1 << 20
MANIFEST_KEY = "npu-hil-manifest"
MANIFEST_PREFIX = b'{"' + MANIFEST_KEY.encode() + b'"'
#: How much of the firmware area is read to find the manifest: it is small, an image is not.
MANIFEST_MAX = 64 * 1024
VERSION_KEYS = ("rknn_server", "driver", "runtime")

#: Loader chip tags (rkbin RKBOOT/<file> [CHIP_NAME] NAME=, minus the first two letters) -> (name, our chips).
CHIP_TAGS: dict[str, tuple[str, tuple[str, ...]]] = {
    "1126": ("RV1126", ("rv1126",)),               # RV1126MINIALL.ini NAME=RV1126
    "1109": ("RV1109", ("rv1109",)),               # RV1109MINIALL.ini NAME=RV1109
    "180A": ("RK1808", ("rk1808",)),               # RK1808MINIALL.ini NAME=RK180A
    "330C": ("RK3399/RK3399Pro", ("rk3399pro",)),  # RK3399PROMINIALL.ini NAME=RK330C
    "3568": ("RK3566/RK3568", ("rk3566", "rk3568")),  # RK3566MINIALL.ini and RK3568MINIALL.ini NAME=RK3568
    "3588": ("RK3588", ("rk3588",)),               # RK3588MINIALL.ini NAME=RK3588
    "3562": ("RK3562", ("rk3562",)),               # RK3562MINIALL.ini NAME=RK3562
    "3576": ("RK3576", ("rk3576",)),               # RK3576MINIALL.ini NAME=RK3576
    "1106": ("RV1106", ("rv1106",)),               # RV1106MINIALL.ini NAME=RV1106
}
#: Old chips use small enum values instead of a tag (rkdeveloptool DefineHeader.h ENUM_RKDEVICE_TYPE).
LEGACY_CODES = {0x10: "RK27", 0x20: "RK28", 0x30: "RKNANO", 0x40: "RKCROWN", 0x50: "RK29", 0x60: "RK30",
                0x70: "RK31", 0x80: "RK32"}
_TAG = re.compile(r"^[0-9A-Z]{4}$")
_HEX = re.compile(rb"^[0-9a-fA-F]{32}$")


def chip_code(tag: str) -> int:
    """The RKFW chip field for a loader tag: "3588" -> 0x33353838."""
    return int.from_bytes(tag.encode("ascii"), "big")


def decode_chip(code: int) -> tuple[str | None, str, tuple[str, ...]]:
    """(tag or None, a name to show, our chips it means) for a raw chip field."""
    if code in LEGACY_CODES:
        return None, LEGACY_CODES[code], ()
    text = code.to_bytes(4, "big").decode("latin-1")
    if not _TAG.match(text):
        return None, f"unknown chip code 0x{code:08x}", ()
    name, chips = CHIP_TAGS.get(text, (f"unknown chip tag {text!r}", ()))
    return text, name, chips


def tag_for_chip(chip: Chip) -> str:
    """The tag an image for ``chip`` carries: its own, else its twin's (RK3588S images are RK3588's)."""
    for wanted in (chip.name, chip.twin):
        for tag, (_, chips) in CHIP_TAGS.items():
            if wanted in chips:
                return tag
    raise ConfigError(f"no known RKFW chip tag for {chip.name}; known: "
                      + ", ".join(sorted({c for _, cs in CHIP_TAGS.values() for c in cs})))


@dataclass(frozen=True)
class UpdateImage:
    """What an update.img says about itself, after its MD5 was checked."""

    path: Path
    size: int
    header_size: int
    version: tuple[int, int, int]
    merge_version: int
    build_time: str
    chip_code: int
    chip_tag: str | None
    chip_name: str
    chips: tuple[str, ...]
    boot_offset: int
    boot_size: int
    fw_offset: int
    fw_size: int
    md5: str
    signed: bool
    payload_magic: str
    manifest: dict[str, Any] | None = field(default=None)

    @property
    def version_str(self) -> str:
        return ".".join(str(p) for p in self.version)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(path=str(self.path), version=self.version_str, chip_code=f"0x{self.chip_code:08x}",
                   merge_version=f"0x{self.merge_version:08x}", chips=list(self.chips))
        return out


def _refuse(path: Path, message: str) -> ConfigError:
    return ConfigError(f"{path}: {message}")


def _build_time(year: int, month: int, day: int, hour: int, minute: int, second: int) -> str:
    try:
        return dt.datetime(year, month, day, hour, minute, second).isoformat(sep=" ")
    except ValueError:  # an odd date must not hide the rest of the header
        return f"invalid ({year}-{month}-{day} {hour}:{minute}:{second})"


def _md5_of(f: BinaryIO, length: int) -> str:
    digest = hashlib.md5()
    f.seek(0)
    remaining = length
    while remaining:
        block = f.read(min(CHUNK, remaining))
        if not block:
            break
        digest.update(block)
        remaining -= len(block)
    return digest.hexdigest()


def _manifest(path: Path, head: bytes) -> dict[str, Any] | None:
    """The simulator's manifest at the start of the firmware area, or None when the area has none."""
    if not head.startswith(MANIFEST_PREFIX):
        return None
    end = head.find(b"\0")
    if end < 0:
        raise _refuse(path, f"npu-hil manifest has no NUL terminator within {MANIFEST_MAX} bytes")
    try:
        data = json.loads(head[:end].decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise _refuse(path, f"npu-hil manifest is not valid JSON ({str(exc).splitlines()[0][:80]})") from None
    versions = data.get("versions") if isinstance(data, dict) else None
    if (not isinstance(data, dict) or data.get(MANIFEST_KEY) != 1 or not isinstance(data.get("chip"), str)
            or not isinstance(data.get("rk_version"), str) or not isinstance(versions, dict)
            or not all(isinstance(versions.get(k), str) for k in VERSION_KEYS)):
        raise _refuse(path, "npu-hil manifest lacks npu-hil-manifest=1, chip, rk_version or "
                            "versions.{rknn_server,driver,runtime} as strings")
    return data


def read_update_image(path: str | Path, *, chip: str | None = None, check_md5: bool = True) -> UpdateImage:
    """Parse and verify an update.img; ConfigError (one line) for anything that is not a sound image.

    ``chip`` (a board's chip name) refuses an image built for another chip; a twin's image is accepted, as
    the twins share loader and USB id (RK3566/RK3568 share the "3568" tag outright).
    """
    path = Path(path)
    expected = lookup_chip(chip) if chip is not None else None
    try:
        with open(path, "rb") as f:
            return _read(f, path, expected, check_md5)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None


def _read(f: BinaryIO, path: Path, expected: Chip | None, check_md5: bool) -> UpdateImage:
    """The body of :func:`read_update_image` on an open file (OSError is turned into one line there)."""
    size = os.fstat(f.fileno()).st_size
    raw = f.read(HEADER_SIZE)
    if raw[:4] != MAGIC:
        raise _refuse(path, "not a Rockchip update.img (no RKFW magic at offset 0)")
    if size < HEADER_SIZE + MD5_SIZE:
        raise _refuse(path, f"truncated: {size} bytes, an RKFW header and its MD5 need {HEADER_SIZE + MD5_SIZE}")
    (_, header_size, version, merge, year, month, day, hour, minute, second, code,
     boot_offset, boot_size, fw_offset, fw_size, reserved) = HEADER.unpack(raw)
    if header_size < HEADER_SIZE:
        raise _refuse(path, f"corrupt RKFW header: header size 0x{header_size:x} < 0x{HEADER_SIZE:x}")
    if reserved[14:16] == b"HI":
        fw_size += int.from_bytes(reserved[16:20], "little") << 32
    data_end = size - MD5_SIZE
    for name, offset, length in (("boot", boot_offset, boot_size), ("firmware", fw_offset, fw_size)):
        if offset < header_size:
            raise _refuse(path, f"corrupt RKFW header: {name} area at 0x{offset:x} overlaps the header")
        if offset + length > data_end:
            raise _refuse(path, f"truncated: {name} area 0x{offset:x}+0x{length:x} runs past the data "
                                f"({size} bytes, last {MD5_SIZE} are the MD5)")
    fw_end = fw_offset + fw_size
    signed = size - fw_end >= SIGNED_TRAILER
    md5_offset = fw_end if signed else data_end
    f.seek(md5_offset)
    stored = f.read(MD5_SIZE)
    if not _HEX.match(stored):
        raise _refuse(path, f"no MD5 at offset 0x{md5_offset:x} (expected 32 hex digits)")
    md5 = stored.decode("ascii").lower()
    if check_md5:
        actual = _md5_of(f, md5_offset)
        if actual != md5:
            raise _refuse(path, f"wrong MD5: the image says {md5}, its contents hash to {actual} "
                                "(corrupt or altered)")
    f.seek(fw_offset)
    head = f.read(min(fw_size, MANIFEST_MAX))
    tag, chip_name, chips = decode_chip(code)
    manifest = _manifest(path, head)
    magic = head[:4]
    image = UpdateImage(
        path=path, size=size, header_size=header_size,
        version=(version >> 24 & 0xFF, version >> 16 & 0xFF, version & 0xFFFF), merge_version=merge,
        build_time=_build_time(year, month, day, hour, minute, second), chip_code=code, chip_tag=tag,
        chip_name=chip_name, chips=chips, boot_offset=boot_offset, boot_size=boot_size, fw_offset=fw_offset,
        fw_size=fw_size, md5=md5, signed=signed,
        payload_magic=(MANIFEST_KEY if manifest is not None else magic.decode("ascii")
                       if magic.isascii() and magic.isalnum() else magic.hex()),
        manifest=manifest)
    if expected is not None:
        check_chip(image, expected)
    return image


def check_chip(image: UpdateImage, expected: Chip) -> None:
    """ConfigError unless the image is for ``expected`` (or its twin): flashing it would brick the board."""
    if not set(image.chips) & expected.family:
        raise _refuse(image.path, f"image is for {image.chip_name} (chip code 0x{image.chip_code:08x}), "
                                  f"not {expected.name}")
    if image.manifest is not None and image.manifest["chip"] not in expected.family:
        raise _refuse(image.path, f"image's manifest is for {image.manifest['chip']}, not {expected.name}")


def _check_version(version: tuple[int, int, int]) -> int:
    major, minor, patch = version
    if not (0 <= major <= 0xFF and 0 <= minor <= 0xFF and 0 <= patch <= 0xFFFF):
        raise ConfigError(f"image version {version} out of range (major, minor < 256; patch < 65536)")
    return major << 24 | minor << 16 | patch


def build_update_image(path: str | Path, *, chip: str, rk_version: str, versions: dict[str, str],
                       version: tuple[int, int, int] = (1, 0, 0), merge_version: int = 0,
                       build_time: dt.datetime | None = None, payload_padding: int = 0) -> Path:
    """Write a valid RKFW image for ``chip`` whose firmware area starts with the npu-hil manifest.

    The boot area is a bare RKBOOT-style header with no entries (the simulator has no DDR blob to carry).
    ``payload_padding`` zero bytes follow the manifest, to make images big enough to hash in many chunks.
    Written to a temporary name and renamed, so a reader never sees half an image.
    """
    target = lookup_chip(chip)
    missing = [k for k in VERSION_KEYS if not isinstance(versions.get(k), str)]
    if missing:
        raise ConfigError(f"versions for the image lack {', '.join(missing)}")
    code = chip_code(tag_for_chip(target))
    ver = _check_version(version)
    when = build_time or dt.datetime.now().replace(microsecond=0)
    stamp = (when.year, when.month, when.day, when.hour, when.minute, when.second)
    boot = struct.pack("<4sHII", b"BOOT", HEADER_SIZE, ver, merge_version) + struct.pack("<HBBBBBI", *stamp, code)
    boot = boot.ljust(HEADER_SIZE, b"\0")
    manifest = {MANIFEST_KEY: 1, "chip": target.name, "rk_version": rk_version,
                "versions": {k: versions[k] for k in VERSION_KEYS}}
    payload = json.dumps(manifest, separators=(",", ":")).encode() + b"\0"  # key order kept: prefix first
    fw_size = len(payload) + payload_padding
    header = HEADER.pack(MAGIC, HEADER_SIZE, ver, merge_version, *stamp, code, HEADER_SIZE, len(boot),
                         HEADER_SIZE + len(boot), fw_size, b"\0" * 61)
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    digest = hashlib.md5()
    with open(tmp, "wb") as out:
        for block in (header, boot, payload):
            out.write(block)
            digest.update(block)
        remaining = payload_padding
        zeros = bytes(min(CHUNK, remaining))
        while remaining:
            block = zeros[:min(CHUNK, remaining)]
            out.write(block)
            digest.update(block)
            remaining -= len(block)
        out.write(digest.hexdigest().encode("ascii"))
    os.replace(tmp, path)
    return path
