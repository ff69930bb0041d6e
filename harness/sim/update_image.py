"""The board side of an ``update.img``: what the simulated ``updateEngine`` reads before it flashes anything.

Why a reader of its own: the harness's RKFW parser (``npu-hil firmware inspect``) is what a lab uses to judge
an image; if the simulated board checked images with that same code, a bug in it would be mirrored on the
board and no test could see it. So this module reads the image as the board's updater does, from the format
(packed little-endian ``RKFW`` header, Rockchip's ``STRUCT_RKIMAGE_HEAD``), and nothing here is shared with
the harness:

* ``RKFW`` at 0; u16 header size at 0x04; u32 version at 0x06 (``major << 24 | minor << 16 | patch``); the
  chip field, a u32 at 0x15 holding the loader's four-character chip tag packed big-endian ("1126", "3588");
  u32 firmware offset/size at 0x21/0x25, with the size's high 32 bits at 0x39 when the reserved bytes at
  0x37 say ``HI`` (images over 4 GiB);
* the MD5: 32 lowercase hex digits, the last 32 bytes of the file, or (signed image: 160 bytes or more after
  the firmware area) right after the firmware area; it covers every byte before it;
* the firmware area: a real image holds afptool's ``RKAF`` package, which this board cannot flash; images
  made for the simulator start with one JSON object ``{"npu-hil-manifest": 1, "chip", "rk_version",
  "versions"}`` ended by a NUL, the release the "flash" installs.

Errors are :class:`ImageRefused` with the one line ``updateEngine`` prints.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The loader chip tag each simulated chip's image carries (rkbin RKBOOT ini ``NAME=``, minus "RK"/"RV").
BOARD_TAGS = {"rv1126": "1126", "rv1109": "1109", "rk1808": "180A", "rk1806": "180A", "rk3399pro": "330C",
              "rk3566": "3568", "rk3568": "3568", "rk3588": "3588", "rk3588s": "3588", "rk3562": "3562",
              "rk3576": "3576", "rv1106": "1106", "rv1103": "1106"}
#: Chips on one die: a board takes its twin's image (RV1109 images on an RV1126, and the other way round).
TWINS = {"rv1126": "rv1109", "rv1109": "rv1126", "rk1808": "rk1806", "rk1806": "rk1808", "rk3566": "rk3568",
         "rk3568": "rk3566", "rk3588": "rk3588s", "rk3588s": "rk3588", "rv1106": "rv1103", "rv1103": "rv1106"}
#: How a chip tag is shown (the names the board's updater logs).
TAG_NAMES = {"1126": "RV1126", "1109": "RV1109", "180A": "RK1808", "330C": "RK3399/RK3399Pro",
             "3568": "RK3566/RK3568", "3588": "RK3588", "3562": "RK3562", "3576": "RK3576", "1106": "RV1106"}
MANIFEST_KEY = "npu-hil-manifest"
_HEAD_LEN = 0x66
_MD5_LEN = 32
_SIGNED_TAIL = 160
_MANIFEST_READ = 64 * 1024
_BLOCK = 1 << 20
_HEX32 = re.compile(rb"[0-9a-fA-F]{32}")


class ImageRefused(Exception):
    """The image must not be flashed; the message is the updater's one-line reason.

    ``md5`` is the hash the updater computed when the refusal is a wrong MD5 (it logs ``new md5:...``).
    """

    def __init__(self, message: str, md5: str | None = None) -> None:
        super().__init__(message)
        self.md5 = md5


@dataclass(frozen=True)
class FlashImage:
    """What the updater needs of a checked image."""

    md5: str
    version: str
    chip_name: str
    area_magic: str  # "npu-hil-manifest", "RKAF", or the area's first bytes in hex
    manifest: dict[str, Any] | None


def _u16(raw: bytes, at: int) -> int:
    return int.from_bytes(raw[at:at + 2], "little")


def _u32(raw: bytes, at: int) -> int:
    return int.from_bytes(raw[at:at + 4], "little")


def _md5(handle: Any, length: int) -> str:
    digest = hashlib.md5()
    handle.seek(0)
    left = length
    while left > 0:
        block = handle.read(min(_BLOCK, left))
        if not block:
            break
        digest.update(block)
        left -= len(block)
    return digest.hexdigest()


def _chip_of(code: int) -> tuple[str, str]:
    """(tag, name to show) of the header's chip field."""
    tag = code.to_bytes(4, "big").decode("latin-1")
    if not re.fullmatch(r"[0-9A-Z]{4}", tag):
        return "", f"unknown chip code 0x{code:08x}"
    return tag, TAG_NAMES.get(tag, f"unknown chip tag {tag!r}")


def _manifest(area: bytes) -> dict[str, Any] | None:
    if not area.startswith(b'{"' + MANIFEST_KEY.encode()):
        return None
    end = area.find(b"\0")
    try:
        data = json.loads(area[:end].decode("utf-8")) if end >= 0 else None
    except (ValueError, RecursionError):
        data = None
    versions = data.get("versions") if isinstance(data, dict) else None
    if not (isinstance(data, dict) and data.get(MANIFEST_KEY) == 1 and isinstance(data.get("chip"), str)
            and isinstance(data.get("rk_version"), str) and isinstance(versions, dict)
            and all(isinstance(versions.get(k), str) for k in ("rknn_server", "driver", "runtime"))):
        raise ImageRefused("the npu-hil manifest of the firmware area is damaged (chip, rk_version, versions)")
    return data


def read_image(path: Path, board_chip: str) -> FlashImage:
    """Check the image at host ``path`` for a board whose chip is ``board_chip``; ImageRefused says why not."""
    try:
        with open(path, "rb") as handle:
            return _read(handle, os.fstat(handle.fileno()).st_size, board_chip)
    except OSError as exc:
        raise ImageRefused(f"open failed: {exc.strerror or exc}") from None


def _read(handle: Any, size: int, board_chip: str) -> FlashImage:
    head = handle.read(_HEAD_LEN)
    if head[:4] != b"RKFW":
        raise ImageRefused("not a Rockchip update.img (no RKFW magic at offset 0)")
    if size < _HEAD_LEN + _MD5_LEN:
        raise ImageRefused(f"image is truncated: {size} bytes")
    header_len, version, code = _u16(head, 0x04), _u32(head, 0x06), _u32(head, 0x15)
    fw_at, fw_len = _u32(head, 0x21), _u32(head, 0x25)
    if head[0x37:0x39] == b"HI":  # reserved[14:16] of the 61 reserved bytes from 0x29
        fw_len |= _u32(head, 0x39) << 32
    if header_len < _HEAD_LEN or fw_at < header_len or fw_at + fw_len > size - _MD5_LEN:
        raise ImageRefused(f"corrupt RKFW header (firmware area 0x{fw_at:x}+0x{fw_len:x} in {size} bytes)")
    md5_at = fw_at + fw_len if size - (fw_at + fw_len) >= _SIGNED_TAIL else size - _MD5_LEN
    handle.seek(md5_at)
    stored = handle.read(_MD5_LEN)
    if not _HEX32.fullmatch(stored):
        raise ImageRefused(f"no MD5 at offset 0x{md5_at:x}")
    want, got = stored.decode("ascii").lower(), _md5(handle, md5_at)
    if got != want:
        raise ImageRefused(f"wrong MD5: the image says {want}, its contents hash to {got}", md5=got)
    tag, name = _chip_of(code)
    mine = {board_chip, TWINS.get(board_chip, board_chip)}
    if tag not in {BOARD_TAGS.get(c) for c in mine}:
        raise ImageRefused(f"image is for {name} (chip code 0x{code:08x}), not {board_chip.upper()}")
    handle.seek(fw_at)
    area = handle.read(min(fw_len, _MANIFEST_READ))
    manifest = _manifest(area)
    if manifest is not None and manifest["chip"] not in mine:
        raise ImageRefused(f"image's manifest is for {manifest['chip']}, not {board_chip}")
    magic = MANIFEST_KEY if manifest is not None else (
        area[:4].decode("ascii") if area[:4].isascii() and area[:4].isalnum() else area[:4].hex())
    return FlashImage(md5=got, version=f"{version >> 24 & 0xFF}.{version >> 16 & 0xFF}.{version & 0xFFFF}",
                      chip_name=name, area_magic=magic, manifest=manifest)
