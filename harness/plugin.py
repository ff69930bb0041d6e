"""The pytest plugin (entry point ``npu_hil``): options, markers, board selection, per-test console evidence.

Thin on purpose: it parses options into a :class:`harness.session.RunSession` and leaves the work to the
library; the fixtures themselves live in ``fixtures/`` (loaded by the project's ``conftest.py``).

    pytest --board sim-rv1126 suites/          # one simulated board
    pytest --board rv1126 suites/              # the one board in boards.toml whose chip is rv1126
    pytest --board-tag nightly suites/         # every board tagged nightly
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.config.loader import Inventory, load_inventory
from harness.errors import ConfigError, HarnessError
from harness.session import RunSession

SESSION_KEY = pytest.StashKey[RunSession]()
MARK_KEY = pytest.StashKey[float]()
LINK_NAMES = ("console", "adb", "ssh", "usb")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("npu-hil", "Rockchip NPU boards (npu-hil)")
    group.addoption("--board", action="append", default=[], metavar="NAME",
                    help="board to test: a name from boards.toml, a chip (rv1126) if one board has it, or "
                         "sim-<profile> for a simulated board (repeatable)")
    group.addoption("--boards-file", default=None, metavar="PATH",
                    help="board inventory (default: boards.toml in the rootdir, if present)")
    group.addoption("--board-tag", action="append", default=[], metavar="TAG",
                    help="select every board carrying TAG (or chip=rk3588); repeatable, all must match")
    group.addoption("--toolkit", default=None, metavar="VERSION",
                    help="RKNN toolkit release under test (overrides boards.toml)")
    group.addoption("--reports-dir", default=None, metavar="DIR", help="where runs write evidence (default: reports/)")
    group.addoption("--run-id", default=None, help="name of this run's report folder (default: date-time-pid)")
    from harness.npu.pytest_options import addoption as add_model_options

    add_model_options(parser)
    from harness.firmware.pytest_options import addoption as add_firmware_options

    add_firmware_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "chip(*names): run only on boards with one of these chips")
    config.addinivalue_line("markers", "npu(generation): run only on rknpu1 or rknpu2 boards")
    config.addinivalue_line("markers", "needs(*links): run only on boards that have these links (console, adb, ssh, usb)")
    config.addinivalue_line("markers", "destructive: changes the board's firmware; runs only when selected")
    boards_file = config.getoption("--boards-file")
    default_file = Path(config.rootpath) / "boards.toml"
    try:
        inventory = load_inventory(boards_file or (default_file if default_file.exists() else None))
        specs = inventory.select(config.getoption("--board"), config.getoption("--board-tag"))
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None
    reports = Path(config.getoption("--reports-dir") or Path(config.rootpath) / "reports")
    config.stash[SESSION_KEY] = RunSession(inventory=inventory, specs=specs, reports_dir=reports,
                                           run_id=config.getoption("--run-id"), toolkit=config.getoption("--toolkit"))
    from harness.report.pytest_hooks import ReportHooks

    if not config.pluginmanager.has_plugin("npu-hil-report"):
        config.pluginmanager.register(ReportHooks(config), "npu-hil-report")


def pytest_unconfigure(config: pytest.Config) -> None:
    session = config.stash.get(SESSION_KEY, None)
    if session is not None:
        session.close()


def pytest_report_header(config: pytest.Config) -> list[str]:
    session = config.stash[SESSION_KEY]
    if not session.specs:
        return []
    names = ", ".join(f"{s.name} ({s.chip}{', simulated' if s.is_simulated else ''})" for s in session.specs)
    return [f"npu-hil: boards {names}; reports in {session.run_dir}"]


def run_session(config: pytest.Config) -> RunSession:
    return config.stash[SESSION_KEY]


def _spec_links(spec) -> set[str]:
    if spec.is_simulated:
        return {"console", "adb", "ssh"}
    return {name for name, key in (("console", "serial"), ("adb", "adb"), ("ssh", "ssh"), ("usb", "usb"))
            if getattr(spec, key) is not None}


def mismatch_reason(item: pytest.Item, spec, npu: str) -> str | None:
    """Why the test does not fit the board (chip, NPU generation, links), or None when it does."""
    for mark in item.iter_markers("chip"):
        if spec.chip not in {c.lower() for c in mark.args}:
            return f"needs chip {'/'.join(mark.args)}; board {spec.name} is {spec.chip}"
    for mark in item.iter_markers("npu"):
        if npu not in {n.lower() for n in mark.args}:
            return f"needs {'/'.join(mark.args)}; board {spec.name} is {npu}"
    for mark in item.iter_markers("needs"):
        missing = set(mark.args) - _spec_links(spec)
        if missing:
            return f"needs link(s) {', '.join(sorted(missing))}; board {spec.name} has none configured"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from harness.chips import chip as lookup_chip

    session = run_session(config)
    if not session.specs:
        return
    spec = session.specs[0]
    npu = lookup_chip(spec.chip).npu
    for item in items:
        reason = mismatch_reason(item, spec, npu)
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item):
    item.stash[MARK_KEY] = _now()
    return (yield)


def _now() -> float:
    import time

    return time.time()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if report.failed and report.when in ("setup", "call"):
        _add_diagnosis(item, report)
    session = run_session(item.config)
    since = item.stash.get(MARK_KEY, None)
    for name, board in session.boards.items():
        if not board.has_link("console"):
            continue
        if report.failed:  # the report pytest prints for this failure (setup, call or teardown) gets the excerpt
            report.sections.append((f"console {name}", board.console.excerpt(since=since)[-20000:]))
        if report.when == "teardown":
            safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", item.nodeid)[-150:]
            (board.run_dir / f"{safe}.console.txt").write_text(board.console.excerpt(since=since))
    return report


def _add_diagnosis(item: pytest.Item, report: pytest.TestReport) -> None:
    """Match the failure's text and the board's console against the manual's failure signatures."""
    from harness.npu.diagnose import diagnose, format_diagnoses

    texts = [str(report.longrepr)]
    session = run_session(item.config)
    since = item.stash.get(MARK_KEY, None)
    texts += [b.console.excerpt(since=since) for b in session.boards.values() if b.has_link("console")]
    found = diagnose(*texts)
    if found:
        report.sections.append(("diagnosis (npu-hil)", format_diagnoses(found)))


def board_or_stop(request: pytest.FixtureRequest, name: str):
    """Open a board for a fixture; if it cannot be opened, this test errors and the run stops (one error, not N)."""
    session = run_session(request.config)
    try:
        return session.board(name)
    except HarnessError as exc:
        request.session.shouldstop = f"board {name} is unusable: {exc}"
        pytest.fail(f"board {name} is unusable: {exc}", pytrace=False)
