"""Stop the simulated boards a pytest subprocess left running in the current simulator home.

Why: the tests that run a whole ``pytest`` (pytester) against simulated boards rely on that run to stop its
boards; a run that died or was killed cannot, so each such test ends by downing whatever still runs in its own
NPU_HIL_SIM_HOME, by the supervisor PID ``api.down`` reads (never by process name). Written once here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.sim import api

REPO = Path(__file__).resolve().parents[2]


def down_running_boards() -> None:
    """``api.down`` every board of the current NPU_HIL_SIM_HOME that is still running."""
    for entry in api.list_boards():
        if entry.get("running"):
            api.down(entry["name"])


@contextlib.contextmanager
def own_sim_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """For a test that runs a whole ``pytest`` on simulated boards: a simulator home and a cache of its own, the repo
    importable by the subprocess (``fixtures`` is a folder of the repo), and every board a run cut short left
    running stopped afterwards. Yields the simulator home."""
    home = tmp_path_factory.mktemp("sim")
    monkeypatch.setenv("NPU_HIL_SIM_HOME", str(home))
    monkeypatch.setenv("NPU_HIL_CACHE", str(tmp_path_factory.mktemp("cache")))  # the native runner's builds
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    try:
        yield home
    finally:
        down_running_boards()
