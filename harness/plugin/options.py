"""Every command-line option and ini setting of npu-hil, registered once, and the readers that validate them.

Why one module: a lab reads ``pytest --help`` to learn the harness, so the options stand together in one group,
and each is read through one function here that turns a bad value into a one-line ``pytest.UsageError`` before
any board is opened (instead of a traceback in the middle of a run).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from harness.firmware.flash import DEFAULT_STRATEGY, STRATEGIES

if TYPE_CHECKING:
    from harness.npu.latency import Tolerance

DEFAULT_SOAK_RUNS = 5
DEFAULT_SOAK_INFERENCES = 200
GROUP = "npu-hil"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup(GROUP, "Rockchip NPU boards (npu-hil)")
    _board_options(group)
    _model_options(group)
    _firmware_options(group)
    parser.addini("npu_hil_models_dir", "folder of model packages, relative to the rootdir (default suites/models)",
                  default="suites/models")
    parser.addini("npu_hil_boards_file", "board inventory, relative to the rootdir (default boards.toml)",
                  default="boards.toml")


def _board_options(group: pytest.OptionGroup) -> None:
    group.addoption("--board", action="append", default=[], metavar="NAME",
                    help="board to test: a name from boards.toml, a chip (rv1126) when one real board has it, "
                         "or sim-<chip> for a simulated board (repeatable); without it, a run of the suites "
                         "(testpaths) uses [defaults] board of boards.toml")
    group.addoption("--boards-file", default=None, metavar="PATH",
                    help="board inventory (default: boards.toml in the rootdir, if present; none is needed for "
                         "sim-<chip> boards)")
    group.addoption("--board-tag", action="append", default=[], metavar="TAG",
                    help="select every board carrying TAG (or chip=rk3588); repeatable, all must match")
    group.addoption("--toolkit", default=None, metavar="VERSION",
                    help="RKNN toolkit release under test (overrides boards.toml)")
    group.addoption("--reports-dir", default=None, metavar="DIR", help="where runs write evidence (default: reports/)")
    group.addoption("--run-id", default=None, help="name of this run's report folder (default: date-time-pid)")
    group.addoption("--lock-dir", default=None, metavar="DIR",
                    help="where board locks live, shared by every user of the host (default: $NPU_HIL_LOCK_DIR, "
                         "else /tmp/npu-hil-locks; simulated boards: $NPU_HIL_SIM_HOME/.locks)")
    group.addoption("--board-wait", default=0.0, type=_seconds, metavar="SECONDS",
                    help="how long to wait for a board another run holds (default: 0 = fail at once, naming "
                         "the holder)")
    group.addoption("--recovery-budget", type=float, default=300.0, metavar="SECONDS",
                    help="time a board may spend on the recovery ladder (reconnect, reboot, power cycle) before "
                         "it is marked broken for the rest of the run (default 300)")


def _model_options(group: pytest.OptionGroup) -> None:
    group.addoption("--update-goldens", action="store_true", default=False,
                    help="rewrite the goldens (and latency baselines) of outputs that fail, and fail those tests "
                         "so the change is reviewed")
    group.addoption("--regen-goldens", action="store_true", default=False,
                    help="rewrite every golden and latency baseline from this run (never from a hang's zeros)")
    group.addoption("--soak-runs", type=int, default=DEFAULT_SOAK_RUNS, metavar="N",
                    help=f"runs per model in the soak suite (default {DEFAULT_SOAK_RUNS}; a lab uses thousands)")
    group.addoption("--soak-inferences", type=int, default=DEFAULT_SOAK_INFERENCES, metavar="N",
                    help="inferences per model in the soak that keeps one process running them (our runner), "
                         f"its descriptors and memory sampled 20 times (default {DEFAULT_SOAK_INFERENCES}; a "
                         "lab uses 100000s)")
    group.addoption("--npu-deadline", type=float, default=None, metavar="SECONDS",
                    help="deadline of one model run on the board; past it the run is an NPU hang (manual 4.2.13) "
                         "(default: 3x the package's latency budget + 10 s, or 120 s)")
    group.addoption("--models-dir", default=None, metavar="DIR",
                    help="folder of model packages (default: the npu_hil_models_dir ini value, suites/models)")
    group.addoption("--latency-tolerance", default=None, metavar="PCT%[,Ksigma]",
                    help="how much slower than its baseline a latency mean may get: more than PCT%% AND more "
                         "than K sigma of the baseline's spread fails (like --benchmark-compare-fail; the gate "
                         "uses the same rule). Default 25%%,4sigma")
    group.addoption("--verbose-rerun", action=argparse.BooleanOptionalAction, default=True,
                    help="on an NPU failure, rerun the failed board command with RKNN_LOG_LEVEL=5 (manual 1.2.3) "
                         "and attach the runtime's log (default: on)")


def _firmware_options(group: pytest.OptionGroup) -> None:
    group.addoption("--firmware", default=None, metavar="PATH",
                    help="update.img to flash once onto each selected board before its tests (skipped when the "
                         "board already runs its RK_VERSION); implies a destructive run")
    group.addoption("--firmware-strategy", default=DEFAULT_STRATEGY, choices=STRATEGIES,
                    help=f"how to flash --firmware (default {DEFAULT_STRATEGY})")
    group.addoption("--destructive", action="store_true", default=False,
                    help="run tests marked destructive (they reflash the board)")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 <= value < 86400:
        raise argparse.ArgumentTypeError(f"{text!r}: give 0 to 86399 seconds")
    return value


def pytest_configure(config: pytest.Config) -> None:
    """Bad option values stop the run at once with one line, before any board is opened."""
    golden_policy(config)
    soak_runs(config)
    soak_inferences(config)
    npu_deadline(config)
    recovery_budget(config)
    firmware_path(config)
    latency_tolerance(config)


def boards_file(config: pytest.Config) -> Path | None:
    """--boards-file, else the ini's file in the rootdir when it exists (a sim-only run needs none)."""
    given = config.getoption("--boards-file")
    if given:
        return Path(given)
    default = Path(config.rootpath) / str(config.getini("npu_hil_boards_file"))
    return default if default.is_file() else None


def models_dir(config: pytest.Config) -> Path:
    value = config.getoption("--models-dir") or config.getini("npu_hil_models_dir")
    path = Path(value)
    return path if path.is_absolute() else Path(config.rootpath) / path


def golden_policy(config: pytest.Config) -> str:
    """``check`` unless --update-goldens or --regen-goldens (not both) asks otherwise."""
    update, regen = config.getoption("--update-goldens"), config.getoption("--regen-goldens")
    if update and regen:
        raise pytest.UsageError("--update-goldens and --regen-goldens exclude each other: choose one")
    return "regen" if regen else "update" if update else "check"


def soak_inferences(config: pytest.Config) -> int:
    count = config.getoption("--soak-inferences")
    if count < 2:
        raise pytest.UsageError(f"--soak-inferences must be at least 2 to see growth (got {count})")
    return count


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


def recovery_budget(config: pytest.Config) -> float:
    value = config.getoption("--recovery-budget")
    if value <= 0:
        raise pytest.UsageError(f"--recovery-budget must be > 0 seconds (got {value:g})")
    return value


def latency_tolerance(config: pytest.Config) -> Tolerance:
    """--latency-tolerance, parsed by the same code the gate uses (the default when not given)."""
    from harness.errors import ConfigError
    from harness.npu.latency import Tolerance

    value = config.getoption("--latency-tolerance")
    try:
        return Tolerance.parse(value) if value is not None else Tolerance()
    except ConfigError as exc:
        raise pytest.UsageError(f"--latency-tolerance: {exc}") from None


def firmware_path(config: pytest.Config) -> Path | None:
    """The --firmware file, checked to exist (a UsageError line otherwise, before any board is opened)."""
    value = config.getoption("--firmware")
    if value is None:
        return None
    path = Path(value)
    if not path.is_file():
        raise pytest.UsageError(f"--firmware {value}: no such file")
    return path


def destructive_allowed(config: pytest.Config) -> bool:
    return bool(config.getoption("--destructive") or config.getoption("--firmware"))
