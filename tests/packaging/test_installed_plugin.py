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
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of this checkout, built as a release would be."""
    root = tmp_path_factory.mktemp("wheel")
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--disable-pip-version-check", "-w",
          str(root / "dist"), str(REPO)], cwd=root, timeout=300)
    return next((root / "dist").glob("npu_hil-*.whl"))


def _venv_with(requirement: str, folder: Path) -> Path:
    _run([sys.executable, "-m", "venv", str(folder)], cwd=folder.parent, timeout=120)
    _run([str(folder / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", requirement],
         cwd=folder.parent, timeout=900)
    return folder


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv holding only the wheel (with its [sim] extra, which a simulated board needs) and its dependencies."""
    return _venv_with(f"{wheel}[sim]", tmp_path_factory.mktemp("sim-install") / "venv")


@pytest.fixture(scope="module")
def core(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The core install a lab host driving real boards gets: the wheel with no extra."""
    return _venv_with(str(wheel), tmp_path_factory.mktemp("core-install") / "venv")


def _user_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["NPU_HIL_SIM_HOME"] = str(tmp_path / "sim")
    return env


def test_the_wheel_plugin_runs_a_user_test_file_from_an_empty_folder(installed: Path, tmp_path: Path) -> None:
    user = tmp_path / "lab"
    user.mkdir()
    (user / "test_mine.py").write_text(USER_TESTS)
    env = _user_env(tmp_path)
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


def test_the_destructive_test_runs_with_destructive(installed: Path, tmp_path: Path) -> None:
    user = tmp_path / "lab"
    user.mkdir()
    (user / "test_mine.py").write_text(USER_TESTS)
    done = subprocess.run([str(installed / "bin" / "pytest"), "-p", "no:cacheprovider", "--board", "sim-rv1126",
                           "--destructive", "test_mine.py"], cwd=user, capture_output=True, text=True, timeout=300,
                          env=_user_env(tmp_path))
    assert "1 failed, 1 passed" in done.stdout, done.stdout[-3000:]
    assert "a destructive test ran in a routine run" in done.stdout  # it ran (and fails on purpose)


def test_the_core_install_has_no_simulator_plots_or_labgrid(core: Path) -> None:
    for module in ("onnx", "onnxruntime", "matplotlib", "labgrid"):
        found = subprocess.run([str(core / "bin" / "python"), "-c", f"import {module}"], capture_output=True,
                               timeout=60)
        assert found.returncode != 0, f"{module} came with the core install"


@pytest.mark.parametrize("argv, extra", [
    (["pytest", "-p", "no:cacheprovider", "--board", "sim-rv1126", "test_mine.py"], "sim"),
    (["npu-hil", "sim", "up", "rv1126"], "sim"),
])
def test_a_missing_extra_is_one_line_naming_the_pip_install(core: Path, tmp_path: Path, argv: list[str],
                                                           extra: str) -> None:
    user = tmp_path / "lab"
    user.mkdir()
    (user / "test_mine.py").write_text(USER_TESTS)
    done = subprocess.run([str(core / "bin" / argv[0]), *argv[1:]], cwd=user, capture_output=True, text=True,
                          timeout=300, env=_user_env(tmp_path))
    output = done.stdout + done.stderr
    assert done.returncode != 0, output[-3000:]
    assert f"pip install 'npu-hil[{extra}]'" in output, output[-3000:]
    assert "Traceback" not in output and "ModuleNotFoundError" not in output, output[-3000:]
    assert "During handling" not in output, output[-3000:]
