"""``npu-hil model inspect`` run as a real process, as a user would run it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RKNN_DIR = REPO / "tests" / "data" / "rknn"


def npu_hil(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m harness ARGS`` from the repo root; the child is killed by PID if it outlives the wait."""
    proc = subprocess.Popen([sys.executable, "-m", "harness", *args], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_inspect_prints_a_table_of_what_the_trailer_declares() -> None:
    result = npu_hil("model", "inspect", str(RKNN_DIR / "npu2_multi_rk3588_sdk1.4.rknn"))
    assert result.returncode == 0, result.stderr
    for expected in ("rknpu2-v1", "rk3566", "1.1.2", "flatbuffer"):
        assert expected in result.stdout
    assert "rk3588" not in result.stdout.replace("npu2_multi_rk3588_sdk1.4", "")  # the folder name is not a fact


def test_inspect_json_is_machine_readable() -> None:
    result = npu_hil("model", "inspect", "--json", str(RKNN_DIR / "npu1_mobilenet_uint8_rv1126.rknn"))
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["layout"] == "rknpu1-precompiled"
    assert doc["target_platforms"] == ["rv1126"] and doc["toolkit_version"] == "1.7.5b1"
    assert doc["pre_compile"] is True and doc["trailer"]["pre_compile"] == 1
    assert doc["file"].endswith("npu1_mobilenet_uint8_rv1126.rknn")


def test_corrupt_file_gives_one_line_and_exit_code_2(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.rknn"
    corrupt.write_bytes((RKNN_DIR / "npu2_multi_rk3576.rknn").read_bytes()[:3000])
    result = npu_hil("model", "inspect", str(corrupt))
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("npu-hil: error:")
    assert "corrupt.rknn" in lines[0] and "unknown layout" in lines[0]


def test_not_an_rknn_file_and_missing_file(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello, not a model\n")
    result = npu_hil("model", "inspect", str(text))
    assert result.returncode == 2 and "not an RKNN file" in result.stderr
    assert "Traceback" not in result.stderr
    missing = npu_hil("model", "inspect", str(tmp_path / "absent.rknn"))
    assert missing.returncode == 2 and "model file not found" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
