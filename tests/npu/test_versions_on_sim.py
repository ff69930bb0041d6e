"""The version check end to end: simulated boards probed over their real links, each mismatch fault diagnosed."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.config.loader import parse_inventory
from harness.connect import open_board
from harness.doctor import doctor_ok, run_doctor
from harness.links.adb_server import AdbServer
from harness.links.ports import free_port
from harness.npu.board_versions import check_board, probe_board
from harness.sim import api

REPO = Path(__file__).resolve().parents[2]
INVENTORY = parse_inventory('[defaults]\ntoolkit = { rknpu1 = "1.7.1", rknpu2 = "2.3.2" }\n')


@pytest.fixture(scope="module")
def sim_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("sim")
    with pytest.MonkeyPatch.context() as patch:  # module scope: the function-scoped monkeypatch cannot serve
        patch.setenv("NPU_HIL_SIM_HOME", str(home))
        yield home


@pytest.fixture(scope="module")
def adb_server(tmp_path_factory):
    server = AdbServer(port=free_port(), home=tmp_path_factory.mktemp("adb")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module", params=["sim-rv1126", "sim-rk3588"])
def board(request, sim_home, adb_server, tmp_path_factory):
    spec = INVENTORY.get(request.param)
    board = open_board(spec, INVENTORY, run_dir=tmp_path_factory.mktemp("run"), adb_server=adb_server)
    yield board
    board.close()
    api.down(spec.name)


def _wait_for(predicate, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def test_clean_board_matches_its_release(board) -> None:
    record, verdict = check_board(board)
    assert verdict.ok, verdict.explain()
    assert record.server_running
    assert record.chip.version == board.chip.name


@pytest.mark.parametrize("fault, component", [("server-mismatch", "rknn_server"), ("driver-mismatch", "driver"),
                                              ("runtime-mismatch", "runtime")])
def test_each_mismatch_is_named_with_symptom_and_fix(board, fault: str, component: str) -> None:
    api.fault(board.name, fault)
    try:
        verdict = _wait_for(lambda: (lambda v: None if v.ok else v)(check_board(board)[1]))
        assert verdict, f"{fault} never showed on the board"
        assert [m.component for m in verdict.mismatches] == [component]
        mismatch = verdict.mismatches[0]
        assert mismatch.found != mismatch.expected and mismatch.found
        assert mismatch.symptom and mismatch.fix and mismatch.section
        assert component in verdict.explain()
    finally:
        api.fault(board.name, fault, clear=True)
    assert _wait_for(lambda: check_board(board)[1].ok), "the board did not return to its release"


def test_stopped_server_is_seen_and_restart_script_brings_it_back(board) -> None:
    api.fault(board.name, "server-stopped")
    try:
        assert _wait_for(lambda: not probe_board(board).server_running)
        checks = {c.name: c for c in run_doctor(board)}
        assert not checks["rknn_server running"].passed
        assert "restart_rknn.sh" in checks["rknn_server running"].fix
    finally:
        api.fault(board.name, "server-stopped", clear=True)
    board.shell("restart_rknn.sh", check=True)
    assert probe_board(board).server_running


def test_doctor_passes_on_a_clean_board_in_the_manuals_order(board) -> None:
    checks = run_doctor(board)
    assert all(c.passed for c in checks), [c for c in checks if not c.passed]
    assert [c.section for c in checks] == ["4.1.1", "4.1.3 (1)", "4.1.3", "4.1.3 (5)", "4.1.3 (9)", "4.1.5",
                                           "4.2.13", ""]


def test_doctor_finds_a_stray_transfer_proxy_by_its_full_name(board, tmp_path) -> None:
    """/proc/PID/comm says "npu_transfer_pr" (15 characters): the check must read the command line."""
    proxy = tmp_path / "npu_transfer_proxy"
    proxy.write_text("#!/bin/sh\nwhile :; do sleep 1; done\n")  # a stand-in: a script of that name that stays
    proxy.chmod(0o755)
    process = subprocess.Popen([str(proxy)], start_new_session=True)
    try:
        assert _wait_for(lambda: Path(f"/proc/{process.pid}/comm").read_text().strip() == "npu_transfer_pr")
        [check] = [c for c in run_doctor(board) if c.section == "4.1.3 (5)"]
        assert not check.passed and str(process.pid) in check.detail, check
        assert "ADB devices" in check.fix and f"kill {process.pid}" in check.fix
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # its process group: the script and its sleep, by PID
        process.wait(timeout=10)
    [check] = [c for c in run_doctor(board) if c.section == "4.1.3 (5)"]
    assert check.passed, check


def test_doctor_sees_the_mini_driver_on_rv1126(board) -> None:
    api.fault(board.name, "mini-driver")
    try:
        _wait_for(lambda: board.chip.name != "rv1126" or not board.shell("test -e /usr/bin/rknn_server").ok)
        [check] = [c for c in run_doctor(board) if c.section == "4.1.3 (9)"]
        if board.chip.name != "rv1126":
            assert check.passed and "not applicable" in check.detail
            return
        assert "Mini Driver installed" in check.detail and "connected debugging" in check.fix, check
    finally:
        api.fault(board.name, "mini-driver", clear=True)
        _wait_for(lambda: board.shell("test -e /usr/bin/rknn_server").ok)
        board.shell("restart_rknn.sh", timeout=30)
    assert _wait_for(lambda: doctor_ok(run_doctor(board)))


def test_ntb_disabled_is_advice_with_the_manuals_fix(board) -> None:
    api.fault(board.name, "ntb-disabled")
    try:
        _wait_for(lambda: board.chip.name != "rv1126" or "usb_ntb_en" not in board.shell(
            "cat /etc/init.d/usb_config").stdout)
        checks = run_doctor(board)
        [ntb] = [c for c in checks if c.section == "4.1.5"]
        assert ntb.section == "4.1.5" and ntb.level == "advice"
        if board.chip.name == "rv1126":
            assert not ntb.passed and "usb_ntb_en" in ntb.fix and "/etc/init.d/usb_config" in ntb.fix
        assert doctor_ok(checks)  # advice: the doctor still passes
    finally:
        api.fault(board.name, "ntb-disabled", clear=True)


def test_doctor_cli_json_fails_on_a_mismatched_board(sim_home, tmp_path) -> None:
    (tmp_path / "boards.toml").write_text(
        '[defaults]\ntoolkit = { rknpu1 = "1.7.1", rknpu2 = "2.3.2" }\n'
        '[boards.doc-rv1126]\nchip = "rv1126"\nsim = { profile = "rv1126", faults = ["driver-mismatch"] }\n')
    env = dict(os.environ, NPU_HIL_SIM_HOME=str(sim_home))
    result = subprocess.run([sys.executable, "-m", "harness", "doctor", "doc-rv1126", "--json"], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    failed = [c for c in report["checks"] if not c["passed"]]
    assert [c["name"] for c in failed] == ["versions match toolkit 1.7.1"]
    assert "driver: expected 6.4.6.5.351518, found 6.4.3.5.293908" in failed[0]["detail"]
    assert not api.list_boards() or all(not b["running"] for b in api.list_boards() if b["name"] == "doc-rv1126")


def test_doctor_verbose_log_by_hand(sim_home, tmp_path) -> None:
    """``--verbose-log PACKAGE``: what a failed NPU test does by itself, by hand; a bad package is one line."""
    (tmp_path / "boards.toml").write_text(
        '[defaults]\ntoolkit = { rknpu1 = "1.7.1", rknpu2 = "2.3.2" }\n'
        '[boards.doc-rv1126]\nchip = "rv1126"\nsim = { profile = "rv1126" }\n')
    env = dict(os.environ, NPU_HIL_SIM_HOME=str(sim_home))
    doctor = [sys.executable, "-m", "harness", "doctor", "doc-rv1126", "--json", "--verbose-log"]
    result = subprocess.run([*doctor, str(REPO / "suites" / "models" / "classifier"), "--log-out", "v.log"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    report = json.loads(result.stdout)
    assert result.returncode == 0 and report["ok"], result.stdout + result.stderr
    assert report["verbose_log"]["exit_code"] == 0 and report["verbose_log"]["path"] == str(tmp_path / "v.log")
    assert "I RKNNAPI: " in (tmp_path / "v.log").read_text()  # the runtime's info lines: only at level 5
    bad = subprocess.run([*doctor, str(tmp_path / "nothing-here")], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 1 and "no model package here" in json.loads(bad.stdout)["error"]


def test_verbose_runtime_log_is_collected_and_level_restored(board, tmp_path) -> None:
    import onnx
    from onnx import TensorProto, helper

    from harness.npu.rknn_file import pack_sim_model
    from harness.npu.verbose_log import collect_verbose_log, quoted_step

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    model = onnx.helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    # built for the other chip, so the step fails the way -13 does on a real board
    other = "rk3588" if board.chip.name == "rv1126" else "rv1126"
    package = tmp_path / "wrong target.rknn"
    package.write_bytes(pack_sim_model(model.SerializeToString(), target_platforms=[other], toolkit_version="2.3.2"))
    board.push(package, "/userdata/wrong target.rknn")
    step = quoted_step("rknn_benchmark", "/userdata/wrong target.rknn")
    log = collect_verbose_log(board, step, timeout=60)
    assert log.exit_code not in (None, 0)
    assert log.path.exists() and log.path.read_text() == log.text
    assert "target platform" in log.text.lower() or "-13" in log.text
    # the runtime's info lines (RKNPU2 "I RKNN:", RKNPU1 "I RKNNAPI:") appear only at a raised log level
    assert re.search(r"^I RKNN(API)?: ", log.text, re.M)
    assert "log level 5" in log.text  # the restarted server's own verbose start-up, from the console
    assert probe_board(board).server_running  # restarted at the normal level afterwards
