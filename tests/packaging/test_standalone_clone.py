"""The repo stands alone: what a clone holds, in a folder with nothing beside it, runs the tests that read data.

Why: the project's data once lived in a folder beside the repo, so a clone from the project's public home
failed at collection. Here the tracked (and not ignored) files are copied to a temp folder whose parent holds
nothing else, and the data-reading tests run there with that copy first on the path.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DATA_READERS = ["tests/npu/test_rknn_file.py", "tests/npu/test_model_compat.py", "tests/npu/test_matrix.py",
                "tests/npu/test_diagnose.py", "tests/npu/test_version_parsers.py", "tests/core/test_chips.py"]
OUTSIDE = re.compile(r"\.\./shared|shared/(?:testdata|reference)")


def clone_files() -> list[str]:
    """What a clone of the working tree would hold: tracked files plus new ones git does not ignore."""
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout (an installed copy has no tests to run)")
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True, timeout=60).stdout.decode()
    return [name for name in listed.split("\0") if name and (REPO / name).is_file()]


@pytest.fixture(scope="module")
def alone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the clone at <tmp>/npu-hil, with no sibling folder (no shared/ beside it)."""
    root = tmp_path_factory.mktemp("alone") / "npu-hil"
    for name in clone_files():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target)
    assert [p.name for p in root.parent.iterdir()] == ["npu-hil"]
    return root


def test_no_file_points_outside_the_repo() -> None:
    offenders = []
    for name in clone_files():
        if name == "tests/packaging/test_standalone_clone.py":
            continue
        try:
            text = (REPO / name).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # a binary: .rknn test data
        offenders += [f"{name}:{n}" for n, line in enumerate(text.splitlines(), 1) if OUTSIDE.search(line)]
    assert offenders == []


def test_data_reading_tests_pass_in_a_clone_with_nothing_beside_it(alone: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(alone)}  # the copy's harness, not the editable install's
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *DATA_READERS],
                          cwd=alone, env=env, capture_output=True, text=True, timeout=600)
    tail = done.stdout[-3000:] + done.stderr[-2000:]
    assert done.returncode == 0, tail
    assert re.search(r"\d+ passed", done.stdout) and "error" not in done.stdout.splitlines()[-1], tail
    used = subprocess.run([sys.executable, "-c", "import harness; print(harness.__file__)"], cwd=alone, env=env,
                          capture_output=True, text=True, timeout=60, check=True).stdout
    assert Path(used.strip()).is_relative_to(alone)  # the tests ran the copy's harness
