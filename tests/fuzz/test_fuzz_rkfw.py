"""update.img (RKFW): valid images built by the harness, then header fields set to striking values, the manifest
swapped for any JSON, signatures appended, the file cut short; the MD5 is rewritten so the damage reaches the
checks behind it. Every image reads as an UpdateImage or is refused with one ConfigError line naming the file."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import struct
from pathlib import Path

import pytest
from fuzzing import FUZZ_SLOW, json_values, mutated_bytes
from hypothesis import event, given
from hypothesis import strategies as st

from harness.errors import ConfigError
from harness.firmware.rkfw import HEADER_SIZE, MANIFEST_KEY, UpdateImage, build_update_image, read_update_image

VERSIONS = {"rknn_server": "2.3.2", "driver": "0.9.8", "runtime": "2.3.2"}
#: (offset, struct format) of every RKFW header field after the magic (rkfw.py's HEADER).
FIELDS = [(0x04, "<H"), (0x06, "<I"), (0x0A, "<I"), (0x0E, "<H"), (0x10, "<B"), (0x11, "<B"), (0x12, "<B"),
          (0x13, "<B"), (0x14, "<B"), (0x15, "<I"), (0x19, "<I"), (0x1D, "<I"), (0x21, "<I"), (0x25, "<I")]
CHIPS = [None, None, None, "rv1126", "rv1109", "rk3588", "rk3566", "rk1808", "rk9999"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("rkfw-fuzz")


@pytest.fixture(scope="module")
def bodies(workdir: Path) -> dict[str, bytes]:
    """Valid images without their MD5, per chip."""
    when = dt.datetime(2025, 3, 30, 9, 54, 34)
    return {chip: build_update_image(workdir / f"{chip}.img", chip=chip, rk_version="V1", versions=VERSIONS,
                                     build_time=when).read_bytes()[:-32] for chip in ("rv1126", "rk3588")}


def md5(body: bytes) -> bytes:
    return hashlib.md5(body).hexdigest().encode()


def check(path: Path, data: bytes, chip: str | None) -> UpdateImage | None:
    path.write_bytes(data)
    try:
        image = read_update_image(path, chip=chip)
    except ConfigError as exc:
        assert "\n" not in str(exc) and (str(path) in str(exc) or "chip" in str(exc)), str(exc)
        event("refused: " + str(exc).removeprefix(f"{path}: ").split(":")[0][:40])
        return None
    event("read")
    assert isinstance(image, UpdateImage) and image.size == len(data)
    assert isinstance(image.to_dict(), dict) and image.version_str
    return image


def with_payload(body: bytes, payload: bytes) -> bytes:
    """``body``'s firmware area replaced by ``payload`` (fw_size rewritten to match)."""
    fw_offset = struct.unpack_from("<I", body, 0x21)[0]
    out = bytearray(body[:fw_offset] + payload)
    out[0x25:0x29] = struct.pack("<I", len(payload))
    return bytes(out)


@FUZZ_SLOW
@given(st.sampled_from(["rv1126", "rk3588"]), st.sampled_from(CHIPS),
       st.lists(st.tuples(st.sampled_from(FIELDS), st.integers(0, 2**32 - 1)
                          | st.sampled_from([0, 1, HEADER_SIZE - 1, HEADER_SIZE, 0x7FFFFFFF, 2**32 - 1])),
                min_size=1, max_size=3),
       st.booleans(), st.sampled_from([b"", b"HI\x00\x00\x00\x00", b"HI\x01\x00\x00\x00", b"HI\xff\xff\xff\xff"]))
def test_header_fields_of_any_value(workdir, bodies, chip, board_chip, edits, fix_md5, high) -> None:
    body = bytearray(bodies[chip])
    for (offset, fmt), value in edits:
        body[offset:offset + struct.calcsize(fmt)] = struct.pack(fmt, value % (1 << (8 * struct.calcsize(fmt))))
    if high:
        body[0x29 + 14:0x29 + 14 + len(high)] = high
    check(workdir / "fields.img", bytes(body) + (md5(body) if fix_md5 else b"0" * 32), board_chip)


MANIFEST_BASE = {MANIFEST_KEY: 1, "chip": "rk3588", "rk_version": "V1", "versions": VERSIONS}
MANIFESTS = (json_values().map(lambda v: json.dumps(v).encode())
             | st.builds(lambda k, v: json.dumps({**MANIFEST_BASE, k: v}).encode(),
                         st.sampled_from(sorted(MANIFEST_BASE)), json_values())
             | st.integers(1, 3000).map(lambda n: b'{"npu-hil-manifest": ' + b"[" * n + b"]" * n + b"}")
             | st.just(b'{"npu-hil-manifest": 1, "chip": ' + b"1" * 5000 + b"}"))


@FUZZ_SLOW
@given(st.sampled_from(["rv1126", "rk3588"]), st.sampled_from(CHIPS), st.booleans(), MANIFESTS,
       st.sampled_from([b"\0", b"", b"\0RKAF"]), st.booleans())
def test_manifests_of_any_content(workdir, bodies, chip, board_chip, keep_prefix, manifest, end, signed) -> None:
    if keep_prefix and not manifest.startswith(b'{"' + MANIFEST_KEY.encode()):
        manifest = b'{"' + MANIFEST_KEY.encode() + b'": 1, "x": ' + manifest + b"}"
    body = with_payload(bodies[chip], manifest + end)
    data = body + md5(body) + (bytes(range(160)) if signed else b"")
    check(workdir / "manifest.img", data, board_chip)


@FUZZ_SLOW
@given(st.sampled_from(["rv1126", "rk3588"]), st.sampled_from(CHIPS), st.data())
def test_mutated_and_cut_images(workdir, bodies, chip, board_chip, data) -> None:
    base = bodies[chip] + md5(bodies[chip])
    image = data.draw(mutated_bytes(base, [o for o, _ in FIELDS] + [len(base) - 32]))
    if data.draw(st.booleans()) and len(image) > 32:  # keep the damage past the MD5 check
        image = image[:-32] + md5(image[:-32])
    check(workdir / "mutated.img", image, board_chip)
