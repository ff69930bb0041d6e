"""The run's session: boards selected from the options, the run folder, board locks checked before any test.

``pytest_configure`` builds one :class:`harness.session.RunSession` per process (an xdist worker shares the
controller's run id, so every worker writes into one ``reports/<run-id>/``); boards open lazily in the fixtures
and close when the run ends. The report hooks are registered here too, because they need the session.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from harness.config.loader import Inventory, load_inventory
from harness.config.models import BoardSpec
from harness.errors import ConfigError, HarnessError
from harness.lab import xdist_boards
from harness.plugin import options
from harness.plugin.items import SESSION_KEY, run_session
from harness.session import RunSession, new_run_id


def selected_boards(config: pytest.Config) -> tuple[Inventory, list[BoardSpec]]:
    """The inventory and the boards --board / --board-tag select, else ``[defaults] board`` for a run of the
    lab's suites (ConfigError for a bad inventory or name)."""
    inventory = load_inventory(options.boards_file(config))
    names, tags = config.getoption("--board"), config.getoption("--board-tag")
    if not names and not tags and runs_lab_suites(config):
        default = inventory.default_board()
        return inventory, [default] if default is not None else []
    return inventory, inventory.select(names, tags)


def runs_lab_suites(config: pytest.Config) -> bool:
    """True for a bare ``pytest`` and for paths inside the ini's testpaths (the lab's suites): only such a run
    gets ``[defaults] board``. A run naming other folders (this repo's own tests/) selects no board unasked."""
    if getattr(config, "args_source", None) is not pytest.Config.ArgsSource.ARGS:
        return True
    testpaths = config.getini("testpaths")
    if not testpaths:
        return True
    roots = [(Path(config.rootpath) / t).resolve() for t in testpaths]
    here = Path(config.invocation_params.dir)
    for arg in config.args:
        path = (here / arg.split("::", 1)[0]).resolve()
        if not any(path == root or root in path.parents for root in roots):
            return False
    return True


@pytest.hookimpl(trylast=True)  # after options.pytest_configure has refused bad option values
def pytest_configure(config: pytest.Config) -> None:
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
                                           board_wait=config.getoption("--board-wait"),
                                           recovery_budget=options.recovery_budget(config))
    from harness.report.evidence import record_recovery

    config.stash[SESSION_KEY].on_recovery = lambda name, recovery: record_recovery(name, recovery.to_dict())
    if role != "worker" and not (config.option.collectonly or config.option.help):
        _preflight(config.stash[SESSION_KEY])
    from harness.plugin.reporting import ReportHooks

    if not config.pluginmanager.has_plugin("npu-hil-report"):
        config.pluginmanager.register(ReportHooks(config), "npu-hil-report")


def _preflight(session: RunSession) -> None:
    """Every selected board's lock can be taken (lock dir usable, labgrid place known and reachable) before any
    test: a lab problem is one line and no test runs, instead of N broken tests."""

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
    chosen = config.getoption("--board") or config.getoption("--board-tag")
    source = "" if chosen else f", the [defaults] board of {options.boards_file(config) or 'boards.toml'}"
    return [f"npu-hil: boards {names}{source}; reports in {session.run_dir}"]
