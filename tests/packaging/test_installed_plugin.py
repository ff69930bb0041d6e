"""npu-hil as a lab gets it: the wheel built, installed into a fresh venv, used from an empty folder.

Why a real wheel and a real venv: the repo's conftest, its fixtures/ and the editable install all hide what the
wheel lacks (a fixture module not packaged, an option registered only by the repo). Here nothing of the repo is
on the path: the user's folder holds one test file and no boards.toml, as a lab's would.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
USER_TESTS = '''
import pytest


def test_board_answers(board):
    assert board.shell("echo hi").stdout.strip() == "hi"


@pytest.mark.destructive
def test_reflashes(board):
    raise AssertionError("a destructive test ran in a routine run")
'''

DOCUMENTED_FIXTURES = ("board", "boards", "console", "adb", "ssh", "board_versions", "version_verdict",
                       "model_packages", "model_package", "npu_push", "npu_run", "golden_policy", "soak_runs",
                       "npu_deadline", "firmware")


def _run(argv: list[str], cwd: Path, timeout: float, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert done.returncode == 0, f"{argv[:3]} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv holding only the wheel (with its [sim] extra, which a simulated board needs) and its dependencies."""
    root = tmp_path_factory.mktemp("wheel")
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--disable-pip-version-check", "-w",
          str(root / "dist"), str(REPO)], cwd=root, timeout=300)
    wheel = next((root / "dist").glob("npu_hil-*.whl"))
    _run([sys.executable, "-m", "venv", str(root / "venv")], cwd=root, timeout=120)
    _run([str(root / "venv" / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", f"{wheel}[sim]"],
         cwd=root, timeout=900)
    return root / "venv"


def test_the_wheel_plugin_runs_a_user_test_file_from_an_empty_folder(installed: Path, tmp_path: Path) -> None:
    user = tmp_path / "lab"
    user.mkdir()
    (user / "test_mine.py").write_text(USER_TESTS)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["NPU_HIL_SIM_HOME"] = str(tmp_path / "sim")
    out = _run([str(installed / "bin" / "pytest"), "-p", "no:cacheprovider", "-rs", "--board", "sim-rv1126",
                "test_mine.py"], cwd=user, timeout=300, env=env)
    assert "1 passed, 1 skipped" in out, out
    assert "destructive (reflashes the board)" in out, out
    listed = _run([str(installed / "bin" / "pytest"), "-p", "no:cacheprovider", "--fixtures", "test_mine.py"],
                  cwd=user, timeout=120, env=env)
    for name in DOCUMENTED_FIXTURES:
        assert f"\n{name} " in listed or f"\n{name}\n" in listed, f"fixture {name} missing from the installed plugin"
    assert str(REPO) not in _run([str(installed / "bin" / "python"), "-c", "import harness; print(harness.__file__)"],
                                 cwd=user, timeout=60, env=env)
