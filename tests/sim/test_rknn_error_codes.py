"""rknn_api.h error codes are named right everywhere: the simulated runtime, fault help, failure signatures.

Why: -3 is RKNN_ERR_DEVICE_UNAVAILABLE and -9 RKNN_ERR_OUTPUT_INVALID; the ``-9`` of RKNPU1's ``driver open
fail! ret = -9`` log line is the library's internal code, not the C API's. A table that maps -9 to
DEVICE_UNAVAILABLE makes the simulator print, and the harness diagnose, a code no real runtime returns. The
reference table below is rknn_api.h's (RKNPU1 and RKNPU2 share these values), written out here on purpose:
it must not come from any table it checks.
"""

from __future__ import annotations

import re
from importlib.resources import files
from pathlib import Path

import pytest
from support.boards import board_context
from support.models import classifier_onnx

import harness.sim
from harness.npu.diagnose import diagnose
from harness.npu.latency import RKNN_ERRORS
from harness.npu.rknn_file import pack_sim_model
from harness.sim.faults import KINDS
from harness.sim.npu_runtime import SimRuntime
from harness.sim.runtime_log import ERROR_NAMES, RknnError, RuntimeLog

RKNN_API_H = {-1: "RKNN_ERR_FAIL", -2: "RKNN_ERR_TIMEOUT", -3: "RKNN_ERR_DEVICE_UNAVAILABLE",
              -4: "RKNN_ERR_MALLOC_FAIL", -5: "RKNN_ERR_PARAM_INVALID", -6: "RKNN_ERR_MODEL_INVALID",
              -7: "RKNN_ERR_CTX_INVALID", -8: "RKNN_ERR_INPUT_INVALID", -9: "RKNN_ERR_OUTPUT_INVALID",
              -10: "RKNN_ERR_DEVICE_UNMATCH", -11: "RKNN_ERR_INCOMPATILE_PRE_COMPILE_MODEL",
              -12: "RKNN_ERR_INCOMPATILE_OPTIMIZATION_LEVEL_VERSION", -13: "RKNN_ERR_TARGET_PLATFORM_UNMATCH"}
NAME_CODES = {name: code for code, name in RKNN_API_H.items()}
#: "RKNN_ERR_X, -N", "RKNN_ERR_X (-N)", "-N RKNN_ERR_X", "RKNN_ERR_X (-N in the C API)": a name and its code.
PAIRS = [re.compile(r"(?P<name>RKNN_ERR_[A-Z_]+)[\s,(]{1,3}(?P<code>-\d+)\b"),
         re.compile(r"(?<![\w=])(?P<code>-\d+)\s+(?P<name>RKNN_ERR_[A-Z_]+)")]


def named_codes(text: str) -> list[tuple[str, int]]:
    return [(m.group("name"), int(m.group("code"))) for pattern in PAIRS for m in pattern.finditer(text)]


@pytest.mark.parametrize("table", [ERROR_NAMES, RKNN_ERRORS], ids=["sim-runtime", "harness-latency"])
def test_code_tables_agree_with_rknn_api_h(table):
    wrong = {code: name for code, name in table.items() if RKNN_API_H.get(code) != name}
    assert not wrong, f"codes named unlike rknn_api.h: {wrong}"


def test_texts_name_each_code_as_rknn_api_h_does():
    texts = {"harness/data/signatures.toml": files("harness.data").joinpath("signatures.toml").read_text()}
    texts.update({f"fault {k.name}": k.help for k in KINDS.values()})
    sim = Path(harness.sim.__file__).parent
    texts.update({str(p.relative_to(sim.parent.parent)): p.read_text() for p in sorted(sim.rglob("*.py"))})
    wrong = [f"{where}: {name} {code}" for where, text in texts.items() for name, code in named_codes(text)
             if name in NAME_CODES and NAME_CODES[name] != code]
    assert not wrong, "\n".join(wrong)
    assert ("RKNN_ERR_DEVICE_UNAVAILABLE", -3) in named_codes(KINDS["server-stopped"].help)


def test_the_pair_finder_sees_a_wrong_pairing():
    assert named_codes("rknn_server is not running (RKNN_ERR_DEVICE_UNAVAILABLE, -9)") == [
        ("RKNN_ERR_DEVICE_UNAVAILABLE", -9)]
    assert named_codes("-3 RKNN_ERR_DEVICE_UNAVAILABLE; ret=-9 RKNN_ERR_FAIL") == [("RKNN_ERR_DEVICE_UNAVAILABLE", -3)]


def test_rknpu1_driver_open_failure_returns_minus_3(tmp_path):
    """RKNPU1 runtime 1.7.1 on the 1.6.0 galcore: the internal -9 is logged, rknn_init returns -3."""
    ctx = board_context(tmp_path)
    ctx.extra["versions"] = ctx.profile.versions.model_copy(update={"driver": "6.4.3.5.293908"})
    lines: list[str] = []
    model = pack_sim_model(classifier_onnx(), target_platforms=["rv1126"], toolkit_version="1.7.1")
    with pytest.raises(RknnError) as failed:
        SimRuntime(ctx).init(model, RuntimeLog("rknpu1", lines.append))
    assert failed.value.code == -3 and "RKNN_ERR_DEVICE_UNAVAILABLE" in str(failed.value)
    assert "E RKNNAPI: rknn_init,  driver open fail!  ret = -9!" in lines
    found = [d.id for d in diagnose(*lines, f"rknn_init fail! ret={failed.value.code}")]
    assert "device-unavailable" in found and "driver-open-fail" in found
