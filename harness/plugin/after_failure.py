"""What happens right after a test fails: the one place that decides it.

1. When a link of the test's board failed during the test (a command or transfer missed its deadline or lost
   its link), the board's links are probed side by side at once, so the failing test's own report says why
   (``the board stopped answering on every link (adb, ssh, console)``) instead of leaving only a timeout. The
   check is kept on the board for the recovery ladder that runs before the next test
   (:func:`harness.recovery.recover_lost_links`), so a dead board is probed once. Evidence collection that
   follows (dmesg for allure, version probes for the report) skips a board found silent.
2. Otherwise, when the test ran a model on the board (inference, latency, soak) and failed, its last model run
   is repeated once with the runtime's verbose log (manual 1.2.3: RKNN_LOG_LEVEL=5 and rknn_server restarted at
   that level, then back to normal), and the log is kept with the test (results.json attachments, allure) and
   named in its report. Not after an NPU hang: the board was just recovered and the rerun would hang again.
   ``--no-verbose-rerun`` turns this off.

This hook wraps innermost (``trylast``): its findings are in place before the evidence and report hooks read
the report.
"""

from __future__ import annotations

import pytest

from harness.board import Board
from harness.plugin.items import item_boards
from harness.recovery import diagnose_failure

#: "BOARD: why it does not answer" for each board of a failed test found not answering (the report hooks add
#: it to the test's message in results.json and the gate)
LINKS_KEY = pytest.StashKey[list[str]]()
#: How long the verbose rerun of a model run may take at most
RERUN_TIMEOUT_S = 300.0


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    for _, board in item_boards(item):  # a model run of an earlier test is not this test's to repeat
        board.last_npu_step = None


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if not report.failed or report.when not in ("setup", "call"):
        return report
    found = [f"{name}: {why}" for name, board in item_boards(item) if (why := diagnose_failure(board))]
    if found:
        item.stash[LINKS_KEY] = found
        report.sections.append(("links (npu-hil)", "\n".join(found)))
    elif report.when == "call" and item.config.getoption("--verbose-rerun") and not _is_hang(call):
        for name, board in item_boards(item):
            kept = _verbose_rerun(board)
            if kept:
                report.sections.append((f"runtime log {name} (npu-hil)", kept))
    return report


def link_diagnosis(item: pytest.Item) -> list[str]:
    """What :func:`pytest_runtest_makereport` found about the failed test's boards (empty when they answered)."""
    return item.stash.get(LINKS_KEY, [])


def _is_hang(call: pytest.CallInfo) -> bool:
    from harness.npu.run import NpuHang
    from harness.report.results import harness_error

    return call.excinfo is not None and isinstance(harness_error(call.excinfo.value), NpuHang)


def _verbose_rerun(board: Board) -> str | None:
    """Repeat the board's last model run of this test with the verbose runtime log; where the log is kept."""
    step = board.last_npu_step
    if step is None or board.silent or board.suspect:
        return None
    from harness.npu.verbose_log import collect_verbose_log
    from harness.report.evidence import attach_text

    board.last_npu_step = None
    log = collect_verbose_log(board, step, timeout=min(RERUN_TIMEOUT_S, max(60.0, board.command_timeout)))
    kept = attach_text(f"runtime log {board.name} (RKNN_LOG_LEVEL=5)", log.text) or log.path
    return (f"the failed model run, repeated with RKNN_LOG_LEVEL=5 (manual 1.2.3): exit {log.exit_code}; "
            f"the runtime's verbose log is kept in {kept}")
