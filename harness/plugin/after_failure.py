"""What happens right after a test fails: the one place that decides it.

Today: when a link of the test's board failed during the test (a command or transfer missed its deadline or
lost its link), the board's links are probed side by side at once, so the failing test's own report says why
(``the board stopped answering on every link (adb, ssh, console)``) instead of leaving only a timeout. The
check is kept on the board for the recovery ladder that runs before the next test
(:func:`harness.recovery.recover_lost_links`), so a dead board is probed once. Evidence collection that follows
(dmesg for allure, version probes for the report) skips a board found silent instead of waiting out each
link's deadline again.

This hook wraps innermost (``trylast``): its findings are in place before the evidence and report hooks read
the report.
"""

from __future__ import annotations

import pytest

from harness.plugin.items import item_boards
from harness.recovery import diagnose_failure

#: "BOARD: why it does not answer" for each board of a failed test found not answering (the report hooks add
#: it to the test's message in results.json and the gate)
LINKS_KEY = pytest.StashKey[list[str]]()


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if report.failed and report.when in ("setup", "call"):
        found = [f"{name}: {why}" for name, board in item_boards(item) if (why := diagnose_failure(board))]
        if found:
            item.stash[LINKS_KEY] = found
            report.sections.append(("links (npu-hil)", "\n".join(found)))
    return report


def link_diagnosis(item: pytest.Item) -> list[str]:
    """What :func:`pytest_runtest_makereport` found about the failed test's boards (empty when they answered)."""
    return item.stash.get(LINKS_KEY, [])
