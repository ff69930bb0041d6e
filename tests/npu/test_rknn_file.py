"""The .rknn reader against Rockchip's real files, the simulator's container, and fuzzed bytes."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from harness.errors import ConfigError
from harness.npu.rknn_file import (
    MAGIC,
    RknnFormatError,
    RknnInfo,
    pack_sim_model,
    read_rknn,
    read_rknn_file,
    unpack_sim_model,
)

RKNN_DIR = Path(__file__).resolve().parents[1] / "data" / "rknn"

# What each real file declares, read by hand with xxd (offsets in reference/rockchip-facts.md).
REAL_FILES = {
    "npu1_mobilenet_uint8_rv1126.rknn": dict(layout="rknpu1-precompiled", header_version=1, npu="rknpu1",
                                             target_platforms=["rv1126"], toolkit_version="1.7.5b1",
                                             pre_compile=True, payload_kind="nbg", payload_offset=0x18),
    "npu1_resize_area.rknn": dict(layout="rknpu1-v2", header_version=2, npu="rknpu1", target_platforms=[],
                                  toolkit_version="1.3.0", pre_compile=False, payload_kind="unknown"),
    "npu2_multi_rk3566.rknn": dict(layout="rknpu2-v6", header_version=6, npu="rknpu2", target_platforms=["rk3566"],
                                   toolkit_version="1.6.2-source_code", pre_compile=None, payload_kind="flatbuffer",
                                   payload_offset=0x40),
    "npu2_multi_rk3576.rknn": dict(layout="rknpu2-v6", header_version=6, npu="rknpu2", target_platforms=["rk3576"],
                                   toolkit_version="1.6.2-source_code", payload_kind="flatbuffer"),
    "npu2_multi_rk3588_old.rknn": dict(layout="rknpu2-v2", header_version=2, npu="rknpu2",
                                       target_platforms=["rk3588"], toolkit_version="1.3.4-source_code",
                                       payload_kind="flatbuffer", payload_offset=0x40),
    # Filed under RK3588 but built for RK3566: the trailer wins over the folder.
    "npu2_multi_rk3588_sdk1.4.rknn": dict(layout="rknpu2-v1", header_version=1, npu="rknpu2",
                                          target_platforms=["rk3566"], toolkit_version="1.1.2",
                                          payload_kind="flatbuffer", payload_offset=0x18),
}


def real(name: str) -> bytes:
    return (RKNN_DIR / name).read_bytes()


def test_every_shared_file_is_covered() -> None:
    assert sorted(p.name for p in RKNN_DIR.glob("*.rknn")) == sorted(REAL_FILES)


@pytest.mark.parametrize("name", sorted(REAL_FILES))
def test_real_file_parses_to_its_declared_facts(name: str) -> None:
    info = read_rknn_file(RKNN_DIR / name)
    for field, expected in REAL_FILES[name].items():
        assert getattr(info, field) == expected, field
    data = real(name)
    assert info.size == len(data)
    # The trailer's u64 length sits where the reader says, and the trailer parsed is the one stored there.
    (length,) = struct.unpack_from("<Q", data, info.trailer_offset)
    assert json.loads(data[info.trailer_offset + 8:info.trailer_offset + 8 + length]) == info.trailer
    assert info.payload_offset is not None and info.payload_length is not None
    assert info.payload_offset + info.payload_length <= len(data)
    json.dumps(info.to_dict())  # JSON-ready


def test_payload_markers_are_where_the_layout_says() -> None:
    v6 = read_rknn(real("npu2_multi_rk3566.rknn"))
    assert real("npu2_multi_rk3566.rknn")[v6.payload_offset + 4:v6.payload_offset + 8] == b"RKNN"  # FlatBuffer id
    nbg = read_rknn(real("npu1_mobilenet_uint8_rv1126.rknn"))
    assert real("npu1_mobilenet_uint8_rv1126.rknn")[nbg.payload_offset:nbg.payload_offset + 4] == b"VPMN"


def test_old_rknpu1_file_without_target_platform_warns_about_the_default() -> None:
    info = read_rknn(real("npu1_resize_area.rknn"))
    assert any("rk1806/rk1808/rk3399pro" in w for w in info.warnings)


def test_trailing_garbage_is_a_warning_not_a_failure() -> None:
    info = read_rknn(real("npu2_multi_rk3576.rknn") + b"\0" * 5)
    assert info.layout == "rknpu2-v6"
    assert any("5 unexpected bytes" in w for w in info.warnings)


def _onnx_add_model() -> bytes:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    graph = helper.make_graph([helper.make_node("Add", ["x", "one"], ["y"])], "add1", [x], [y], [one])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def test_sim_container_round_trip_runs_in_onnxruntime() -> None:
    onnx_bytes = _onnx_add_model()
    packed = pack_sim_model(onnx_bytes, target_platforms=["RK3588"], toolkit_version="2.3.2")
    info = read_rknn(packed)
    assert (info.layout, info.npu, info.payload_kind) == ("sim-onnx", "rknpu2", "onnx")
    assert info.target_platforms == ["rk3588"] and info.toolkit_version == "2.3.2"
    payload = packed[info.payload_offset:info.payload_offset + info.payload_length]
    unpacked, trailer = unpack_sim_model(packed)
    assert payload == unpacked == onnx_bytes and trailer == info.trailer
    session = ort.InferenceSession(payload, providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"x": np.arange(4, dtype=np.float32).reshape(1, 4)})
    assert out.tolist() == [[1.0, 2.0, 3.0, 4.0]]


def test_sim_container_for_an_rknpu1_chip_names_rknpu1() -> None:
    info = read_rknn(pack_sim_model(b"\x08\x07", target_platforms=["rv1126"], toolkit_version="1.7.5"))
    assert (info.layout, info.npu, info.header_version) == ("sim-onnx", "rknpu1", 6)


def test_unpack_sim_model_refuses_a_real_rockchip_file() -> None:
    with pytest.raises(ValueError, match="not a simulator package"):
        unpack_sim_model(real("npu2_multi_rk3566.rknn"))


def test_unknown_layout_still_yields_the_trailer() -> None:
    decoy = json.dumps({"unrelated": 1}).encode()
    trailer = json.dumps({"target_platform": ["RK3599"], "version": "9.9.9"}).encode()
    data = (MAGIC + struct.pack("<QQ", 9, 0) + b"\xaa" * 40 + struct.pack("<Q", len(decoy)) + decoy
            + b"\x7b\x00payload\x7b" * 10 + struct.pack("<Q", len(trailer)) + trailer)
    info = read_rknn(data)
    assert (info.layout, info.payload_kind, info.npu) == ("unknown", "unknown", "rknpu2")
    assert info.target_platforms == ["rk3599"] and info.toolkit_version == "9.9.9"
    assert info.trailer_offset == len(data) - len(trailer) - 8
    assert any("unknown layout" in w for w in info.warnings)
    assert any("newer than any" in w for w in info.warnings)


@pytest.mark.parametrize(("data", "message"), [
    (b"", "not an RKNN file"),
    (b"RKNN", "not an RKNN file"),
    (b"PK\x03\x04" + b"\0" * 100, "not an RKNN file"),
    (MAGIC + struct.pack("<QQ", 6, 10**12) + b"\0" * 64, "unknown layout"),
])
def test_unreadable_bytes_raise_a_format_error(data: bytes, message: str) -> None:
    with pytest.raises(RknnFormatError, match=message):
        read_rknn(data)


def test_an_onnx_model_is_not_an_rknn_file() -> None:
    with pytest.raises(RknnFormatError, match="not an RKNN file"):
        read_rknn(_onnx_add_model())


def test_truncated_real_file_is_a_format_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "cut.rknn"
    path.write_bytes(real("npu2_multi_rk3566.rknn")[:5000])
    with pytest.raises(ConfigError, match=r"cut\.rknn: unknown layout"):
        read_rknn_file(path)


def test_missing_file_and_directory_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="model file not found"):
        read_rknn_file(tmp_path / "absent.rknn")
    with pytest.raises(ConfigError, match="is a directory"):
        read_rknn_file(tmp_path)


# --------------------------------------------------------------------------- fuzzing: only two outcomes allowed

def _parse_or_format_error(data: bytes) -> RknnInfo | None:
    try:
        info = read_rknn(data)
    except RknnFormatError as exc:
        assert "unknown layout" in str(exc) or "not an RKNN file" in str(exc)
        assert "\n" not in str(exc)
        return None
    json.dumps(info.to_dict())
    assert all(isinstance(p, str) and p == p.lower() for p in info.target_platforms)
    assert info.npu in (None, "rknpu1", "rknpu2")
    return info


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=512), st.booleans())
def test_fuzz_random_bytes(tail: bytes, with_magic: bool) -> None:
    _parse_or_format_error((MAGIC if with_magic else b"") + tail)


@FUZZ
@given(st.sampled_from(sorted(REAL_FILES)), st.floats(min_value=0.0, max_value=1.0))
def test_fuzz_truncations_of_real_files(name: str, fraction: float) -> None:
    data = real(name)
    _parse_or_format_error(data[:int(len(data) * fraction)])


@FUZZ
@given(st.sampled_from(sorted(REAL_FILES)), st.lists(st.tuples(st.floats(0.0, 1.0, exclude_max=True),
                                                        st.integers(0, 7)), min_size=1, max_size=8))
def test_fuzz_bit_flips_of_real_files(name: str, flips: list[tuple[float, int]]) -> None:
    data = bytearray(real(name))
    for where, bit in flips:
        data[int(where * len(data))] ^= 1 << bit
    _parse_or_format_error(bytes(data))


@FUZZ
@given(st.sampled_from(sorted(REAL_FILES)), st.integers(0, 0x47), st.integers(0, 255))
def test_fuzz_header_bytes_of_real_files(name: str, offset: int, value: int) -> None:
    data = bytearray(real(name))
    data[offset] = value
    _parse_or_format_error(bytes(data))



def test_deeply_nested_trailer_is_a_format_error_not_a_recursion_crash() -> None:
    body = b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    data = MAGIC + struct.pack("<QQ", 6, 0) + b"\0" * 40 + struct.pack("<Q", len(body)) + body
    with pytest.raises(RknnFormatError, match="unknown layout"):
        read_rknn(data)
