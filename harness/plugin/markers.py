"""The markers suites use, and the skips they imply: a test that does not fit the board, a destructive test in
a routine run.

    @pytest.mark.chip("rv1126")      @pytest.mark.npu("rknpu2")      @pytest.mark.needs("adb")
    @pytest.mark.destructive         # reflashes the board: runs only with --destructive or --firmware
    @pytest.mark.soak_limits(max_fd_growth=0, max_rss_kb_per_1k=512)   # what a soak tolerates (4.2.1)

The destructive guard lives in the installed plugin, not in a repo's conftest, so a lab that pip-installs
npu-hil can never reflash its boards in a routine run.
"""

from __future__ import annotations

import pytest

from harness.plugin.items import SKIP_KIND_KEY, item_specs, mismatch_reason, run_session
from harness.plugin.options import destructive_allowed

MARKERS = (
    "chip(*names): run only on boards with one of these chips",
    "npu(generation): run only on rknpu1 or rknpu2 boards",
    "needs(*links): run only on boards that have these links (console, adb, ssh, usb)",
    "destructive: changes the board's firmware; runs only with --destructive or --firmware",
    "soak_limits(max_fd_growth=0, max_rss_kb_per_1k=1024): the growth a soak tolerates (fixture soak_limits)",
)
DESTRUCTIVE_SKIP = "destructive (reflashes the board): run with --destructive"


def pytest_configure(config: pytest.Config) -> None:
    for line in MARKERS:
        config.addinivalue_line("markers", line)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not destructive_allowed(config):
        skip = pytest.mark.skip(reason=DESTRUCTIVE_SKIP)
        for item in items:
            if item.get_closest_marker("destructive") is not None:
                item.add_marker(skip)
                item.stash[SKIP_KIND_KEY] = "not-selected"
    if not run_session(config).specs:
        return
    from harness.chips import chip as lookup_chip

    for item in items:  # a test without a board of its own is skipped only when no selected board fits it
        reasons = [mismatch_reason(item, spec, lookup_chip(spec.chip).npu) for spec in item_specs(item)]
        if reasons and all(reasons):
            item.add_marker(pytest.mark.skip(reason=reasons[0]))
            item.stash.setdefault(SKIP_KIND_KEY, "not-applicable")
