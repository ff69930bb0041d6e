"""Failure diagnoses: the manual's own error blocks and real board logs give the manual's causes, most precise
first; a broken signature file is refused; any text is safe to diagnose."""

from __future__ import annotations

import tomllib
from importlib.resources import files

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from version_corpus import manual_log

from harness.errors import BoardError, ConfigError, ProductError
from harness.npu.diagnose import LINE_LIMIT, diagnose, format_diagnoses, load_signatures, parse_signatures

SIGNATURES = load_signatures()
SHIPPED = files("harness.data").joinpath("signatures.toml").read_text(encoding="utf-8")


def ids(text: str) -> list[str]:
    return [d.id for d in diagnose(text)]


# ------------------------------------------------------------------- the manual's own examples


def test_manual_4_1_2_model_invalid_block():
    found = diagnose(manual_log("4.1.2"))
    assert [d.id for d in found][:2] == ["msg-load-ack", "model-invalid"]
    assert found[0].section == "4.1.2" and found[0].kind == "product"
    assert "msg_load_ack fail" in found[0].line


def test_manual_4_1_3_device_unavailable_block():
    found = ids(manual_log("4.1.3"))
    assert found[0] == "driver-open-fail"
    assert found.index("device-unavailable") < found.index("rknn-init-fail")


def test_manual_4_1_1_adb_permissions_block():
    found = diagnose(manual_log("4.1.1"))
    assert found[0].id == "adb-no-permissions" and found[0].kind == "infrastructure"
    assert found[0].section == "4.1.1"


def test_manual_4_2_1_file_descriptor_block():
    found = diagnose(manual_log("4.2.1"))
    assert found[0].id == "too-many-open-files" and found[0].section == "4.2.1"


# ------------------------------------------------------------------- real logs from boards


RUNTIME_LOG_OLD_DRIVER = """\
I RKNN: [07:47:42.798] RKNN Runtime Information, librknnrt version: 1.6.0 (9a7b5d24c@2023-12-13T17:31:11)
I RKNN: [07:47:42.798] RKNN Driver Information, version: 0.8.2
W RKNN: [07:47:42.798] Current driver version: 0.8.2, recommend to upgrade the driver to the new version: >= 0.8.8
E RKNN: Invalid RKNN model version 6
rknn_init fail! ret=-6
"""

NPU_HANG = """\
YOLO inference target fps=12, interval=83ms
E RKNN: failed to submit!, op id: 21, op name: Conv:/model.6/cv2/conv/Conv
rknn_run fail! ret=-1
"""

DMESG_HANG = """\
[  812.100000] RKNPU: wait time: 6150513us
[  812.100010] RKNPU: job timeout
[  812.100020] RKNPU: soft reset
"""


def test_runtime_log_with_old_runtime_and_driver():
    found = ids(RUNTIME_LOG_OLD_DRIVER)
    assert found[:2] == ["model-header-v6", "driver-too-old"]
    assert found[-1] == "rknn-init-fail"
    assert "model-invalid" in found


def test_hang_in_output_and_dmesg_together():
    found = diagnose(NPU_HANG, DMESG_HANG)
    assert [d.id for d in found] == ["failed-to-submit", "rknpu-timeout", "rknn-run-fail"]
    assert found[1].line == "[  812.100010] RKNPU: job timeout"


@pytest.mark.parametrize("text, expected, kind", [
    ("rknn model target platform[0] is RK1806, while current platform is RK3399", "target-platform", "config"),
    ("[ 4312.551234] [galcore]: GPU[0] hang, automatic recovery.", "galcore-gpu-hang", "product"),
    ("* daemon not running\nadb server version (41) doesn't match this client (40); killing...",
     "adb-version-mismatch", "infrastructure"),
    ("List of devices attached\n1126\toffline\n", "adb-offline", "infrastructure"),
    ("adb: error: device offline", "adb-offline", "infrastructure"),
    ("[galcore]: HAL user version 6.4.6.5.351518\n[galcore]: HAL kernel version 6.4.3.5.293908",
     "hal-version-mismatch", "product"),
    ("E RKNNAPI: rknn_init,  msg_ioctl_ack fail, ack = 0, expect 1!", "msg-ioctl-ack", "product"),
    ("ps: 4242 npu_transfer_proxy", "npu-transfer-proxy", "infrastructure"),
    ("E RKNN: [10:21:03.412] server connect fail!", "server-connect-fail", "infrastructure"),
    ("[  100.1] Kernel panic - not syncing: Fatal exception in interrupt", "kernel-panic", "product"),
])
def test_each_failure_kind(text, expected, kind):
    found = diagnose(text)
    assert found and found[0].id == expected and found[0].kind == kind, found


def test_clean_output_has_no_diagnosis():
    clean = "librknnrt version: 2.3.2 (abc@2025)\nAvg Time 3.21ms, Avg FPS = 311.5\nadb devices\n1126\tdevice\n"
    assert diagnose(clean) == []
    assert format_diagnoses([]) == "no known failure signature matched"


def test_format_names_cause_fix_section_and_evidence():
    text = format_diagnoses(diagnose(RUNTIME_LOG_OLD_DRIVER), limit=2)
    assert text.startswith("1. likely cause [product]")
    assert "manual 4.1.2" in text and "fix:" in text and "seen: E RKNN: Invalid RKNN model version 6" in text
    assert "less specific" in text and "rknn-init-fail" in text


def test_long_lines_are_cut_and_bytes_accepted():
    line = "E RKNN: failed to submit! " + "x" * 5000
    found = diagnose(line.encode())
    assert found[0].id == "failed-to-submit" and len(found[0].line) == LINE_LIMIT


# ------------------------------------------------------------------- the data file


def test_required_signatures_are_shipped():
    required = {"model-invalid", "device-unavailable", "driver-open-fail", "server-connect-fail",
                "target-platform", "model-header-v6", "msg-ioctl-ack", "msg-load-ack", "driver-too-old",
                "too-many-open-files", "galcore-gpu-hang", "failed-to-submit", "rknpu-timeout", "adb-offline",
                "adb-no-permissions", "adb-version-mismatch", "hal-version-mismatch", "npu-transfer-proxy",
                "kernel-panic"}
    assert required <= {s.id for s in SIGNATURES}


def test_signature_classes_are_the_harness_error_kinds():
    kinds = {ConfigError.kind, BoardError.kind, ProductError.kind}
    assert {s.kind for s in SIGNATURES} <= kinds


@pytest.mark.parametrize("mutation, message", [
    (lambda t: t.replace("regex = 'msg_load_ack fail'", "regex = 'msg_load_ack (fail'"), "bad regex"),
    (lambda t: t.replace('id = "msg-ioctl-ack"', 'id = "msg-load-ack"'), "duplicate id"),
    (lambda t: t.replace('class = "config"', 'class = "user"', 1), "class"),
    (lambda t: t.replace("regex = 'msg_load_ack fail'", "regex = 'msg_laod_ack fail'"), "own example"),
    (lambda t: t.replace('specificity = 95', 'specifity = 95', 1), "specifity"),
    (lambda t: t.replace('section = "4.2.1"', 'section = ""'), "section"),
])
def test_a_broken_signature_is_refused(mutation, message):
    text = mutation(SHIPPED)
    assert text != SHIPPED
    with pytest.raises(ConfigError, match=message):
        parse_signatures(tomllib.loads(text), source="signatures.toml")


# ------------------------------------------------------------------- fuzz


@settings(max_examples=200, deadline=None)
@given(texts=st.lists(st.one_of(st.text(), st.binary()), max_size=3))
def test_any_text_is_safe(texts):
    found = diagnose(*texts)
    assert all(d.id in {s.id for s in SIGNATURES} for d in found)
    specificities = [d.specificity for d in found]
    assert specificities == sorted(specificities, reverse=True)
    assert isinstance(format_diagnoses(found), str)
