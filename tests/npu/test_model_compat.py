"""The pre-push compatibility check, on Rockchip's real model files and boards described by their versions."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest

from harness.errors import ConfigError
from harness.npu.model_compat import check_model_for_board
from harness.npu.rknn_file import RknnInfo, pack_sim_model, read_rknn, read_rknn_file

RKNN_DIR = Path(__file__).resolve().parents[1] / "data" / "rknn"


def model(name: str) -> RknnInfo:
    return read_rknn_file(RKNN_DIR / name)


def rules(info: RknnInfo, chip: str, npu: str, runtime: str | None = None, driver: str | None = None) -> list[str]:
    return [i.rule for i in check_model_for_board(info, chip=chip, npu=npu, runtime_version=runtime,
                                                  driver_version=driver)]


def retrailered(name: str, **changes: Any) -> RknnInfo:
    """A real file re-written with trailer fields changed, so a rule sees the bytes a toolkit would write."""
    data = (RKNN_DIR / name).read_bytes()
    info = read_rknn(data)
    trailer = {**info.trailer, **changes}
    body = json.dumps(trailer).encode()
    return read_rknn(data[:info.trailer_offset] + struct.pack("<Q", len(body)) + body)


@pytest.mark.parametrize(("name", "chip", "runtime"), [
    ("npu2_multi_rk3566.rknn", "rk3566", "1.6.0"),
    ("npu2_multi_rk3566.rknn", "RK3568", "2.3.2 (1842325 build@2025-03-30T09:54:34)"),  # same NPU as rk3566
    ("npu2_multi_rk3576.rknn", "rk3576", "1.5.2"),
    ("npu2_multi_rk3588_old.rknn", "rk3588", "1.4.0"),  # header v2 loads on old runtimes
    ("npu2_multi_rk3588_sdk1.4.rknn", "rk3566", "1.4.0"),
    ("npu2_multi_rk3566.rknn", "rk3566", None),  # runtime unknown: the header rule cannot be judged
])
def test_rknpu2_models_that_load(name: str, chip: str, runtime: str | None) -> None:
    assert rules(model(name), chip, "rknpu2", runtime) == []


def test_model_filed_under_rk3588_is_refused_by_rk3588_with_minus_13() -> None:
    (problem,) = check_model_for_board(model("npu2_multi_rk3588_sdk1.4.rknn"), chip="rk3588", npu="rknpu2",
                                       runtime_version="1.6.0", driver_version="0.9.8")
    assert (problem.rule, problem.error_code, problem.manual) == ("target-platform", -13, "4.1.2")
    assert "rk3566" in problem.reason and "TARGET_PLATFORM_UNMATCH" in problem.board_error
    assert "rk3588" in str(problem)


@pytest.mark.parametrize(("runtime", "code"), [("1.5.0", -6), ("1.4.0", -1), ("1.3.0", -1), ("v1.5.0", -6)])
def test_header_v6_on_runtimes_before_1_5_2(runtime: str, code: int) -> None:
    (problem,) = check_model_for_board(model("npu2_multi_rk3566.rknn"), chip="rk3566", npu="rknpu2",
                                       runtime_version=runtime, driver_version=None)
    assert problem.rule == "header-version" and problem.error_code == code
    assert "Invalid RKNN model version 6" in problem.board_error


def test_wrong_chip_and_old_runtime_are_both_reported() -> None:
    assert rules(model("npu2_multi_rk3576.rknn"), "rk3588", "rknpu2", "1.4.0") == ["target-platform",
                                                                                  "header-version"]


@pytest.mark.parametrize(("name", "npu", "chip"), [
    ("npu2_multi_rk3566.rknn", "rknpu1", "rv1126"),
    ("npu1_mobilenet_uint8_rv1126.rknn", "rknpu2", "rk3588"),
    ("npu1_resize_area.rknn", "rknpu2", "rk3566"),
])
def test_npu_generation_mismatch_is_reported_alone(name: str, npu: str, chip: str) -> None:
    (problem,) = check_model_for_board(model(name), chip=chip, npu=npu, runtime_version="1.0.0",
                                       driver_version="0.9.8")
    assert problem.rule == "npu-generation" and problem.error_code == -6
    assert npu.upper() in problem.reason


@pytest.mark.parametrize(("chip", "expected"), [("rv1126", []), ("rv1109", []), ("rk1808", ["target-platform"])])
def test_rknpu1_pre_compiled_model_target(chip: str, expected: list[str]) -> None:
    info = model("npu1_mobilenet_uint8_rv1126.rknn")
    assert rules(info, chip, "rknpu1", "1.7.5", "6.4.6.5.351518") == expected


@pytest.mark.parametrize(("chip", "expected"), [("rk1808", []), ("rk3399pro", []), ("rv1126", ["target-platform"])])
def test_rknpu1_model_without_target_platform_gets_the_toolkit_default(chip: str, expected: list[str]) -> None:
    assert rules(model("npu1_resize_area.rknn"), chip, "rknpu1", "1.3.0", "1.3.0") == expected


@pytest.mark.parametrize(("toolkit", "driver", "broken"), [
    ("1.7.5b1", "6.4.6.5.351518", False),  # galcore of the 1.7 row
    ("1.7.5b1", "1.7.5", False),           # the same board, driver given as DRV (rknn_server)
    ("1.0.0", "0.9.6", False),             # 4.3.2: 1.0.0 needs driver >= 0.9.6
    ("1.0.0", "0.9.5", True),
    ("0.9.9", "0.9.6", True),              # 4.3.2: 0.9.9 models fail on the 0.9.6 driver
    ("0.9.9", "6.3.3.3718", True),         # galcore of the 1.0.0 row (server 0.9.6)
    ("0.9.9", "0.9.5", False),
    ("0.9.8", "6.2.0.1234", False),        # a galcore from before the 1.0.0 row
])
def test_pre_compiled_model_against_driver_generation(toolkit: str, driver: str, broken: bool) -> None:
    info = retrailered("npu1_mobilenet_uint8_rv1126.rknn", version=toolkit)
    found = check_model_for_board(info, chip="rv1126", npu="rknpu1", runtime_version=None, driver_version=driver)
    assert [p.rule for p in found] == (["pre-compile-driver"] if broken else [])
    if broken:
        assert found[0].manual == "4.3.2" and found[0].error_code == -6 and toolkit in found[0].reason


def test_the_driver_rule_ignores_models_that_are_not_pre_compiled() -> None:
    info = retrailered("npu1_mobilenet_uint8_rv1126.rknn", version="0.9.9", pre_compile=0)
    assert info.pre_compile is False
    assert rules(info, "rv1126", "rknpu1", None, "0.9.6") == []


def test_sim_packages_follow_the_chip_they_declare() -> None:
    rv1126 = read_rknn(pack_sim_model(b"onnx", target_platforms=["rv1126"], toolkit_version="1.7.5"))
    assert rules(rv1126, "rv1126", "rknpu1", "1.7.5", "6.4.6.5.351518") == []
    rk3588 = read_rknn(pack_sim_model(b"onnx", target_platforms=["rk3588"], toolkit_version="2.3.2"))
    assert rules(rk3588, "rk3588", "rknpu2", "1.4.0") == ["header-version"]
    assert rules(rk3588, "rk3588", "rknpu1") == ["npu-generation"]


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(chip="rk3588", npu="rknpu3", runtime_version=None, driver_version=None), "unknown NPU generation"),
    (dict(chip="  ", npu="rknpu2", runtime_version=None, driver_version=None), "chip is empty"),
    (dict(chip="rk3588", npu="rknpu2", runtime_version="not-a-version", driver_version=None), "runtime version"),
    (dict(chip="rk3588", npu="rknpu2", runtime_version=None, driver_version="?"), "driver version"),
])
def test_bad_board_description_is_a_config_error(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_model_for_board(model("npu2_multi_rk3566.rknn"), **kwargs)


def test_incompatibility_is_json_ready() -> None:
    (problem,) = check_model_for_board(model("npu2_multi_rk3566.rknn"), chip="rk3562", npu="rknpu2",
                                       runtime_version="2.0.0b0", driver_version=None)
    assert json.loads(json.dumps(problem.to_dict()))["error_code"] == -13
