"""The pytest plugin (entry point ``npu_hil``): options, markers, board selection, per-test console evidence.

Thin on purpose: it parses options into a :class:`harness.session.RunSession` and leaves the work to the
library; the fixtures themselves live in ``fixtures/`` (loaded by the project's ``conftest.py``).

    pytest --board sim-rv1126 suites/          # one simulated board
    pytest --board rv1126 suites/              # the one board in boards.toml whose chip is rv1126
    pytest --board-tag nightly suites/         # every board tagged nightly: each test runs once per board
    pytest -n auto --board-tag nightly suites/ # the same, one pytest-xdist worker per board (in parallel)

With several boards, every test that uses the ``board`` fixture (directly or through other fixtures) is
parametrized by board (``test_x[sim-rk3588]``); with one board node ids keep no suffix. A board is locked
(:mod:`harness.lab.locks`) from the moment a run opens it until the run ends, so two runs never share one.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import pytest

from harness.config.loader import Inventory, load_inventory
from harness.config.models import BoardSpec
from harness.errors import ConfigError, HarnessError
from harness.lab import xdist_boards
from harness.session import RunSession, new_run_id

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
    group.addoption("--lock-dir", default=None, metavar="DIR",
                    help="where board locks live, shared by every user of the host (default: $NPU_HIL_LOCK_DIR, "
                         "else /tmp/npu-hil-locks; simulated boards: $NPU_HIL_SIM_HOME/.locks)")
    group.addoption("--board-wait", default=0.0, type=_seconds, metavar="SECONDS",
                    help="how long to wait for a board another run holds (default: 0 = fail at once, naming "
                         "the holder)")
    from harness.npu.pytest_options import addoption as add_model_options

    add_model_options(parser)
    from harness.firmware.pytest_options import addoption as add_firmware_options

    add_firmware_options(parser)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 <= value < 86400:
        raise argparse.ArgumentTypeError(f"{text!r}: give 0 to 86399 seconds")
    return value


def selected_boards(config: pytest.Config) -> tuple[Inventory, list[BoardSpec]]:
    """The inventory and the boards --board / --board-tag select (ConfigError for a bad inventory or name)."""
    boards_file = config.getoption("--boards-file")
    default_file = Path(config.rootpath) / "boards.toml"
    inventory = load_inventory(boards_file or (default_file if default_file.exists() else None))
    return inventory, inventory.select(config.getoption("--board"), config.getoption("--board-tag"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "chip(*names): run only on boards with one of these chips")
    config.addinivalue_line("markers", "npu(generation): run only on rknpu1 or rknpu2 boards")
    config.addinivalue_line("markers", "needs(*links): run only on boards that have these links (console, adb, ssh, usb)")
    config.addinivalue_line("markers", "destructive: changes the board's firmware; runs only when selected")
    try:
        inventory, specs = selected_boards(config)
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None
    reports = Path(config.getoption("--reports-dir") or Path(config.rootpath) / "reports")
    role = xdist_boards.role(config)
    run_id = xdist_boards.controller_run_id(config) or config.getoption("--run-id") or new_run_id()
    if role == "controller":
        config.option.run_id = run_id  # and pytest_configure_node hands it to every worker
        from harness.report.results import clear_parts

        clear_parts(Path(reports) / run_id)
    config.stash[SESSION_KEY] = RunSession(inventory=inventory, specs=specs, reports_dir=reports, run_id=run_id,
                                           toolkit=config.getoption("--toolkit"),
                                           lock_dir=config.getoption("--lock-dir"),
                                           board_wait=config.getoption("--board-wait"))
    if role != "worker" and not (config.option.collectonly or config.option.help):
        _preflight(config.stash[SESSION_KEY])
    from harness.report.pytest_hooks import ReportHooks

    if not config.pluginmanager.has_plugin("npu-hil-report"):
        config.pluginmanager.register(ReportHooks(config), "npu-hil-report")


def _preflight(session: RunSession) -> None:
    """Every selected board's lock can be taken (lock dir usable, labgrid place known and reachable) before any
    test: a lab problem is one line and no test runs, instead of N broken tests."""
    from concurrent.futures import ThreadPoolExecutor

    def problem(spec: BoardSpec) -> str | None:
        try:
            session.lock_of(spec).check()
        except HarnessError as exc:
            return f"board {spec.name}: {exc}"
        return None

    # checked side by side: a place check is ~0.5 s of coordinator calls and probes, 16 places in a row add up
    with ThreadPoolExecutor(max_workers=min(8, max(1, len(session.specs)))) as pool:
        problems = [p for p in pool.map(problem, session.specs) if p]
    if problems:
        raise pytest.UsageError("\n".join(problems))


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist controller: every worker writes into this run's folder (its run id, not one of its own)."""
    node.workerinput[xdist_boards.RUN_ID_KEY] = run_session(node.config).run_id


@pytest.hookimpl(optionalhook=True, tryfirst=True)  # before xdist's own (the CPU count)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """``-n auto``: one worker per selected board (xdist's CPU count when no board is selected)."""
    try:
        count = len(selected_boards(config)[1])
    except ConfigError:
        return None  # pytest_configure reports it as a usage error
    return count or None


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Every test of a board on one worker (see :mod:`harness.lab.xdist_boards`), whatever --dist says."""
    session = config.stash.get(SESSION_KEY, None)
    if session is None or not session.specs:
        return None
    return xdist_boards.make_scheduler(config, log, [s.name for s in session.specs])


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """An xdist worker lets its boards go here, not in unconfigure: the controller terminates workers 10 s after
    they report finished, which may cut a slow cleanup (16 boards on 2 cores) short. Runs after the report hooks
    (which still probe the open boards)."""
    if xdist_boards.role(session.config) == "worker":
        run_session(session.config).close()


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


def item_board(item: pytest.Item) -> str | None:
    """The board this test instance runs on: its ``board`` parameter, or the only selected board."""
    callspec = getattr(item, "callspec", None)
    name = callspec.params.get("board") if callspec is not None else None
    if name is not None:
        return str(name)
    specs = run_session(item.config).specs
    return specs[0].name if len(specs) == 1 else None


def item_specs(item: pytest.Item) -> list[BoardSpec]:
    """The boards a test instance concerns: its own board, or every selected board for a test without one."""
    specs = run_session(item.config).specs
    name = item_board(item)
    return [s for s in specs if s.name == name] if name is not None else list(specs)



def mismatch_reason(item: pytest.Item, spec, npu: str) -> str | None:
    """Why the test does not fit the board (chip, NPU generation, links), or None when it does."""
    for mark in item.iter_markers("chip"):
        if spec.chip not in {c.lower() for c in mark.args}:
            return f"needs chip {'/'.join(mark.args)}; board {spec.name} is {spec.chip}"
    for mark in item.iter_markers("npu"):
        if npu not in {n.lower() for n in mark.args}:
            return f"needs {'/'.join(mark.args)}; board {spec.name} is {npu}"
    for mark in item.iter_markers("needs"):
        missing = set(mark.args) - set(spec.link_names)
        if missing:
            return f"needs link(s) {', '.join(sorted(missing))}; board {spec.name} has none configured"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from harness.chips import chip as lookup_chip

    if not run_session(config).specs:
        return
    for item in items:  # a test without a board of its own is skipped only when no selected board fits it
        reasons = [mismatch_reason(item, spec, lookup_chip(spec.chip).npu) for spec in item_specs(item)]
        if reasons and all(reasons):
            item.add_marker(pytest.mark.skip(reason=reasons[0]))


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
    since = item.stash.get(MARK_KEY, None)
    for name, board in item_boards(item):
        if not board.has_link("console"):
            continue
        if report.failed:  # the report pytest prints for this failure (setup, call or teardown) gets the excerpt
            report.sections.append((f"console {name}", board.console.excerpt(since=since)[-20000:]))
        if report.when == "teardown":
            safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", item.nodeid)[-150:]
            (board.run_dir / f"{safe}.console.txt").write_text(board.console.excerpt(since=since))
    return report


def item_boards(item: pytest.Item) -> list[tuple[str, Any]]:
    """(name, Board) of the opened boards this test concerns (never another board's console)."""
    opened = run_session(item.config).boards
    return [(s.name, opened[s.name]) for s in item_specs(item) if s.name in opened]


def _add_diagnosis(item: pytest.Item, report: pytest.TestReport) -> None:
    """Match the failure's text and the board's console against the manual's failure signatures."""
    from harness.npu.diagnose import diagnose, format_diagnoses

    texts = [str(report.longrepr)]
    since = item.stash.get(MARK_KEY, None)
    texts += [b.console.excerpt(since=since) for _, b in item_boards(item) if b.has_link("console")]
    found = diagnose(*texts)
    if found:
        report.sections.append(("diagnosis (npu-hil)", format_diagnoses(found)))


def board_or_stop(request: pytest.FixtureRequest, name: str):
    """Open a board for a fixture; if it cannot be opened, this test errors and, when it is the run's only board,
    the run stops (one error, not N). With several boards the others go on: the broken board's later tests fail
    at once with the same reason (the session remembers it), and stopping would end every worker's run."""
    session = run_session(request.config)
    try:
        return session.board(name)
    except HarnessError as exc:
        if len(session.specs) == 1:
            request.session.shouldstop = f"board {name} is unusable: {exc}"
        pytest.fail(f"board {name} is unusable: {exc}", pytrace=False)
