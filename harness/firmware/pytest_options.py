"""Command-line options of flashing: ``--firmware PATH``, ``--firmware-strategy NAME``, ``--destructive``.

Kept apart from :mod:`harness.plugin` so the firmware machinery owns its options (as
:mod:`harness.npu.pytest_options` does for models). Flashing is destructive: tests marked ``destructive`` are
skipped unless ``--destructive`` is given, so a routine run can never reflash a lab's boards by accident.
"""

from __future__ import annotations

from pathlib import Path

import pytest

STRATEGIES = ("ota-adb", "ota-ssh", "usb", "usb-upgrade_tool")
DEFAULT_STRATEGY = "ota-adb"


def addoption(parser: pytest.Parser) -> None:
    """Add the options once (the plugin and fixtures.firmware may both call this, in either order)."""
    group = parser.getgroup("npu-hil", "Rockchip NPU boards (npu-hil)")
    if any("--firmware" in option.names() for option in group.options):
        return
    group.addoption("--firmware", default=None, metavar="PATH",
                    help="update.img to flash once per board before the tests (skipped when the board already "
                         "runs its RK_VERSION); implies a destructive run")
    group.addoption("--firmware-strategy", default=DEFAULT_STRATEGY, choices=STRATEGIES,
                    help=f"how to flash --firmware (default {DEFAULT_STRATEGY})")
    group.addoption("--destructive", action="store_true", default=False,
                    help="run tests marked destructive (they reflash the board)")


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


def skip_destructive(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every ``destructive`` test skipped unless the run asked for destructive tests."""
    if destructive_allowed(config):
        return
    skip = pytest.mark.skip(reason="destructive (reflashes the board): run with --destructive")
    for item in items:
        if item.get_closest_marker("destructive") is not None:
            item.add_marker(skip)
