"""The release gate on what real runs wrote: a healthy run of every suite on a simulated board gates GO, and a
board whose rknn_server belongs to another release gates NO-GO naming the component.

Each run is a real ``pytest`` process over the repo's suites/ (as a lab runs them), then the real
``npu-hil gate`` command reads its reports folder.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support.suite_lab import SUITES, TOOLKITS, run_suites, suite_lab

pytest_plugins = ["pytester"]

BOARDS = TOOLKITS + """
[boards.sim-rv1126]
chip = "rv1126"
sim = { profile = "rv1126" }

[boards.old-server]
chip = "rv1126"
sim = { profile = "rv1126", versions = { rknn_server = "1.6.0" } }
"""


@pytest.fixture
def lab(pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    with suite_lab(pytester, tmp_path_factory, monkeypatch, BOARDS) as lab:
        yield lab


def run(lab: pytest.Pytester, board: str, run_id: str, *targets: str) -> Path:
    """One run of the repo's suites; returns its reports folder."""
    result = run_suites(lab, board, "--run-id", run_id, *[str(SUITES / t) for t in targets])
    assert (lab.path / "reports" / run_id / "results.json").is_file(), result.stdout.str()[-3000:]
    return lab.path / "reports" / run_id


def gate(lab: pytest.Pytester, *args: Path | str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", "gate", *map(str, args), "--no-baseline", "--out",
                           str(lab.path / "gate")], capture_output=True, text=True, timeout=120, cwd=lab.path)


def test_a_healthy_run_of_every_suite_gates_go(lab: pytest.Pytester) -> None:
    healthy = run(lab, "sim-rv1126", "healthy", "")  # the whole suites/ folder, destructive suite included
    decision = gate(lab, healthy)
    assert decision.returncode == 0, decision.stdout + decision.stderr
    assert decision.stdout.startswith("GO"), decision.stdout
    assert "not run (not selected" in (lab.path / "gate" / "gate.md").read_text()  # the destructive suite


def test_a_version_mismatch_gates_no_go_naming_it(lab: pytest.Pytester) -> None:
    mismatched = run(lab, "old-server", "mismatch", "test_versions.py")
    decision = gate(lab, mismatched, "--json")
    assert decision.returncode == 1, decision.stdout + decision.stderr
    report = json.loads(decision.stdout)
    assert report["verdict"] == "NO-GO"
    texts = [r["text"] for r in report["reasons"] if r["kind"] == "versions"]
    assert any(t.startswith("old-server: version mismatch: rknn_server: expected 1.7.1, found 1.6.0") for t in texts)
    failed = next(r["text"] for r in report["reasons"] if r["kind"] == "product")
    assert "test_versions.py::test_versions_match_the_matrix" in failed and ".console.txt" in failed


ETC_VERSION = """
def test_etc_version(board):
    print("ETC", board.shell("cat /etc/version").stdout.strip())
"""


def test_firmware_from_sim_image_is_flashed_and_the_gate_shows_old_and_new(lab: pytest.Pytester) -> None:
    image = lab.path / "update.img"
    made = subprocess.run([sys.executable, "-m", "harness", "sim", "image", "sim-rv1126", "--rk-version",
                           "RV1126_NEXT_V9", "-o", str(image)], capture_output=True, text=True, timeout=60)
    assert made.returncode == 0 and made.stdout.strip() == str(image), made.stderr
    lab.makepyfile(test_etc=ETC_VERSION)
    result = run_suites(lab, "sim-rv1126", "-s", "--run-id", "flashed", "--firmware", str(image),
                        str(lab.path / "test_etc.py"), str(SUITES / "test_versions.py"))
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()[-3000:]
    assert "ETC RK_VERSION=RV1126_NEXT_V9" in result.stdout.str()  # the board runs the image now
    decision = gate(lab, lab.path / "reports" / "flashed", "--json")
    assert decision.returncode == 0, decision.stdout + decision.stderr
    [board] = json.loads(decision.stdout)["versions"]
    [line] = board["firmware"]
    old = line.removeprefix("update.img: RK_VERSION ").split(" -> ")[0]
    assert old not in ("unknown", "RV1126_NEXT_V9"), line  # the old RK_VERSION, read before the flash
    assert " -> RV1126_NEXT_V9 (flashed, flashed" in line, line
    assert "Firmware under test" in (lab.path / "gate" / "gate.md").read_text()
