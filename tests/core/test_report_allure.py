"""`npu-hil report allure`: renders real allure-pytest results with the real Allure 3 command line, and says how
to install it when it is missing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ALLURE = REPO / ".tools" / "node_modules" / ".bin" / "allure"


def _npu_hil(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})


def _allure_results(tmp_path: Path) -> Path:
    (tmp_path / "test_sample.py").write_text(
        "def test_ok():\n    pass\n\ndef test_bad():  # fails on purpose: the report must show it\n"
        "    assert sorted([2, 1]) == [2, 1]\n")
    results = tmp_path / "allure-results"
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
                    "-c", "/dev/null", f"--alluredir={results}", "test_sample.py"], cwd=tmp_path,
                   capture_output=True, text=True, timeout=120)
    statuses = {json.loads(p.read_text())["name"]: json.loads(p.read_text())["status"]
                for p in results.glob("*-result.json")}
    assert statuses == {"test_ok": "passed", "test_bad": "failed"}
    return results


def test_renders_html_with_the_real_allure(tmp_path: Path) -> None:
    assert ALLURE.exists(), "Allure 3 is not installed in .tools/: run `bash scripts/setup` (needs npm)"
    results = _allure_results(tmp_path)
    proc = _npu_hil("report", "allure", str(results), "--out", str(tmp_path / "html"), "--allure", str(ALLURE),
                    cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    index = Path(proc.stdout.strip())
    assert index == tmp_path / "html" / "index.html" and index.exists()
    assert "test_bad" in (tmp_path / "html" / "test-results.json").read_text()


def test_missing_allure_is_one_line_with_the_install_command(tmp_path: Path) -> None:
    results = _allure_results(tmp_path)
    proc = _npu_hil("report", "allure", str(results), cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "NPU_HIL_ALLURE": ""})
    assert proc.returncode == 2
    assert "npm install" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_folder_without_results_is_refused(tmp_path: Path) -> None:
    proc = _npu_hil("report", "allure", str(tmp_path), "--allure", str(ALLURE), cwd=tmp_path)
    assert proc.returncode == 2 and "no allure results" in proc.stderr
