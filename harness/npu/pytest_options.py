"""Command-line options of the model suites (goldens, soak length, run deadline, packages folder).

Kept apart from :mod:`harness.plugin` so the model machinery owns its options; the plugin's
``pytest_addoption`` calls :func:`addoption`. Values are read through :func:`golden_policy` and friends, which
turn a bad combination into a one-line usage error instead of a traceback.
"""

from __future__ import annotations

import pytest

DEFAULT_SOAK_RUNS = 5


def addoption(parser: pytest.Parser) -> None:
    """Add the options once: both harness.plugin and fixtures.models call this, in whichever order they load."""
    group = parser.getgroup("npu-hil", "Rockchip NPU boards (npu-hil)")
    if any("--soak-runs" in option.names() for option in group.options):
        return
    group.addoption("--update-goldens", action="store_true", default=False,
                    help="rewrite the goldens (and latency baselines) of outputs that fail, and fail those tests "
                         "so the change is reviewed")
    group.addoption("--regen-goldens", action="store_true", default=False,
                    help="rewrite every golden and latency baseline from this run (never from a hang's zeros)")
    group.addoption("--soak-runs", type=int, default=DEFAULT_SOAK_RUNS, metavar="N",
                    help=f"runs per model in the soak suite (default {DEFAULT_SOAK_RUNS}; a lab uses thousands)")
    group.addoption("--npu-deadline", type=float, default=None, metavar="SECONDS",
                    help="deadline of one model run on the board; past it the run is an NPU hang (manual 4.2.13) "
                         "(default: 3x the package's latency budget + 10 s, or 120 s)")
    group.addoption("--models-dir", default=None, metavar="DIR",
                    help="folder of model packages (default: suites/models in the rootdir)")


def golden_policy(config: pytest.Config) -> str:
    """``check`` unless --update-goldens or --regen-goldens (not both) asks otherwise."""
    update, regen = config.getoption("--update-goldens"), config.getoption("--regen-goldens")
    if update and regen:
        raise pytest.UsageError("--update-goldens and --regen-goldens exclude each other: choose one")
    return "regen" if regen else "update" if update else "check"


def soak_runs(config: pytest.Config) -> int:
    runs = config.getoption("--soak-runs")
    if runs < 2:
        raise pytest.UsageError(f"--soak-runs must be at least 2 to see growth (got {runs})")
    return runs


def npu_deadline(config: pytest.Config) -> float | None:
    value = config.getoption("--npu-deadline")
    if value is not None and value <= 0:
        raise pytest.UsageError(f"--npu-deadline must be > 0 seconds (got {value:g})")
    return value
