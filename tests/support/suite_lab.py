"""A pytester folder that runs the repo's suites as a lab does: a boards.toml of simulated boards, a simulator
home of its own, and ``pytest --board NAME --boards-file boards.toml`` in a subprocess.

Shared by the tests that judge what a whole run does (the gate on it, the verbose rerun after a failure, the
soaks): one way to set the lab up and one way to run it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.sim_leftovers import own_sim_home

REPO = Path(__file__).resolve().parents[2]
SUITES = REPO / "suites"
#: The toolkit releases the repo's boards.toml names, for a lab's own inventory
TOOLKITS = '[defaults]\ntoolkit = { rknpu1 = "1.7.1", rknpu2 = "2.3.2" }\n'
HARD_STOP_S = 240


@contextlib.contextmanager
def suite_lab(pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch,
              boards: str) -> Iterator[pytest.Pytester]:
    """``pytester`` with ``boards`` as its boards.toml and a simulator home of its own (boards left running are
    stopped afterwards)."""
    pytester.makefile(".toml", boards=boards)
    with own_sim_home(tmp_path_factory, monkeypatch):
        yield pytester


def run_suites(lab: pytest.Pytester, board: str, *args: str) -> pytest.RunResult:
    """A real pytest on ``board`` with the repo's fixtures (its conftest.py lies outside the lab's rootdir)."""
    return lab.runpytest_subprocess(
        "-p", "fixtures.suite_packages", "-p", "no:cacheprovider", "--board", board, "--boards-file",
        str(lab.path / "boards.toml"), "--reports-dir", str(lab.path / "reports"), *args, timeout=HARD_STOP_S)
