"""Per-test console evidence and diagnosis: what a failure report shows beside the traceback.

Every test gets its own excerpt of each of its boards' consoles (from the moment its setup began), written
beside the run's full capture; a failing test also gets the excerpt in its report and the manual's diagnosis
of the failure text and console.
"""

from __future__ import annotations

import time

import pytest

from harness.plugin.items import MARK_KEY, excerpt_name, item_boards

EXCERPT_LIMIT = 20000


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item):
    item.stash[MARK_KEY] = time.time()
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if report.failed and report.when in ("setup", "call"):
        _add_diagnosis(item, report)
    since = item.stash.get(MARK_KEY, None)
    for name, board in item_boards(item):
        if not board.has_link("console"):
            continue
        if report.failed:  # the report pytest prints for this failure (setup, call or teardown) gets the excerpt
            report.sections.append((f"console {name}", board.console.excerpt(since=since)[-EXCERPT_LIMIT:]))
        if report.when == "teardown":
            (board.run_dir / excerpt_name(item.nodeid)).write_text(board.console.excerpt(since=since))
    return report


def _add_diagnosis(item: pytest.Item, report: pytest.TestReport) -> None:
    """Match the failure's text and the board's console against the manual's failure signatures."""
    from harness.npu.diagnose import diagnose, format_diagnoses

    texts = [str(report.longrepr)]
    since = item.stash.get(MARK_KEY, None)
    texts += [b.console.excerpt(since=since) for _, b in item_boards(item) if b.has_link("console")]
    found = diagnose(*texts)
    if found:
        report.sections.append(("diagnosis (npu-hil)", format_diagnoses(found)))
