""".rknn headers and trailers: the repo's model files and one file of each layout Rockchip shipped, with bytes
flipped, lengths rewritten, cut short or padded, read as RknnInfo or refused with RknnFormatError (one line)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from fuzzing import FUZZ, FUZZ_SLOW, json_values, mutated_bytes, written
from hypothesis import event, given
from hypothesis import strategies as st

from harness.errors import ConfigError
from harness.npu.rknn_file import MAGIC, RknnFormatError, RknnInfo, read_rknn, read_rknn_file, unpack_sim_model
from harness.npu.rknn_trailer import read_trailer_at, scan_for_trailer

REPO = Path(__file__).resolve().parents[2]
MODELS = sorted((REPO / "suites" / "models").glob("*/*.rknn"))
TRAILER = {"target_platform": ["rk3566"], "version": "1.6.2-source_code", "ori_network_platform": "onnx"}


def _trailer(obj: object) -> bytes:
    body = json.dumps(obj).encode()
    return struct.pack("<Q", len(body)) + body


def layout(name: str, trailer: object = TRAILER) -> bytes:
    """A minimal file of each layout rknn_file.py reads (offsets as in its _known_layout)."""
    if name == "rknpu1-precompiled":
        payload = b"VPMN" + bytes(28)
        return MAGIC + struct.pack("<QQ", 1, len(payload)) + payload + _trailer(trailer)
    if name == "rknpu2-v1":
        payload = b"\0\0\0\0RKNN" + bytes(24)
        return MAGIC + struct.pack("<QQ", 1, len(payload)) + payload + _trailer(trailer)
    if name == "rknpu1-v2":
        return MAGIC + struct.pack("<QQ", 2, 0) + _trailer(trailer) + b'[{"op": "lib"}]' + bytes(16)
    payload = b"\0\0\0\0RKNN" + bytes(40)
    return MAGIC + struct.pack("<QQ", 6, len(payload)) + bytes(0x40 - 24) + payload + _trailer(trailer)


LAYOUTS = ["rknpu1-precompiled", "rknpu2-v1", "rknpu1-v2", "rknpu2-v6"]
BASES = [p.read_bytes() for p in MODELS] + [layout(n) for n in LAYOUTS]
HEADER_OFFSETS = [0, 8, 0x10, 0x18, 0x1C, 0x20, 0x40, 0x44]


def hot(data: bytes) -> list[int]:
    """Where the fields are: the header, and the trailer's length and braces (found the parser's own way)."""
    found = scan_for_trailer(data, start=0x10)
    tail = [found[0], found[0] + 8, len(data) - 1] if found else []
    return HEADER_OFFSETS + tail


MUTANTS = st.sampled_from(BASES).flatmap(lambda base: mutated_bytes(base, hot(base)))


def check(data: bytes) -> None:
    try:
        info = read_rknn(data)
    except RknnFormatError as exc:
        assert "\n" not in str(exc) and str(exc)
        event("refused: " + str(exc)[:30])
        return
    event(f"read: {info.layout}" + (" with warnings" if info.warnings else ""))
    assert isinstance(info, RknnInfo) and info.size == len(data)
    assert all(isinstance(p, str) for p in info.target_platforms)
    assert info.toolkit_version is None or isinstance(info.toolkit_version, str)
    assert isinstance(info.to_dict(), dict)


def test_the_bases_parse() -> None:  # the mutations below start from files that read cleanly
    assert MODELS, "suites/models holds no .rknn file"
    assert [read_rknn(layout(n)).layout for n in LAYOUTS] == ["rknpu1-precompiled", "rknpu2-v1", "rknpu1-v2",
                                                              "rknpu2-v6"]
    assert {read_rknn(p.read_bytes()).layout for p in MODELS} == {"sim-onnx"}


@FUZZ
@given(st.binary(max_size=300) | st.binary(max_size=80).map(lambda b: MAGIC + b))
def test_random_bytes(data: bytes) -> None:
    check(data)


@FUZZ_SLOW
@given(MUTANTS)
def test_mutated_models(data: bytes) -> None:
    check(data)


@FUZZ
@given(st.sampled_from(LAYOUTS), json_values() | st.dictionaries(st.sampled_from(sorted(TRAILER) + ["pre_compile"]),
                                                                 json_values(), max_size=4))
def test_trailers_of_every_shape(name: str, trailer: object) -> None:
    check(layout(name, trailer))


@FUZZ
@given(st.sampled_from(LAYOUTS), st.integers(1, 3000))
def test_deeply_nested_trailers(name: str, depth: int) -> None:
    nested = b'{"version": ' + b"[" * depth + b"]" * depth + b"}"
    check(layout(name)[:0x18] + struct.pack("<Q", len(nested)) + nested)
    check(layout(name).replace(json.dumps(TRAILER).encode()[-1:], b", \"x\": " + b"[" * depth + b"]" * depth + b"}"))


@FUZZ_SLOW
@given(MUTANTS | st.sampled_from(BASES))
def test_unpack_sim_model(data: bytes) -> None:
    try:
        payload, trailer = unpack_sim_model(data)
    except RknnFormatError as exc:
        assert "\n" not in str(exc)
    else:
        assert isinstance(payload, bytes) and isinstance(trailer, dict)


@FUZZ
@given(st.integers(1, 200_000))
def test_unpack_sim_model_with_a_deep_trailer(depth: int) -> None:
    body = b"[" * depth
    check(MAGIC + struct.pack("<QQ", 6, 0) + bytes(0x40 - 24) + struct.pack("<Q", len(body)) + body)
    try:
        unpack_sim_model(MAGIC + struct.pack("<QQ", 6, 0) + bytes(0x40 - 24) + struct.pack("<Q", len(body)) + body)
    except RknnFormatError as exc:
        assert "\n" not in str(exc)


@FUZZ
@given(st.binary(max_size=64), st.integers(-10, 80))
def test_trailer_readers_never_raise(data: bytes, offset: int) -> None:
    found = read_trailer_at(data, offset)
    assert found is None or isinstance(found[0], dict)
    scanned = scan_for_trailer(data, offset)
    assert scanned is None or isinstance(scanned[1], dict)


@FUZZ_SLOW
@given(MUTANTS)
def test_read_rknn_file_names_the_file(data: bytes) -> None:
    with written("model.rknn", data) as path:
        try:
            read_rknn_file(path)
        except ConfigError as exc:
            assert str(exc).startswith(f"{path}: ") and "\n" not in str(exc)
