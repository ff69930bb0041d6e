"""Run evidence for reports: allure labels and attachments, JUnit properties, and results.json.

Registered by :mod:`harness.plugin.session` in ``pytest_configure``::

    config.pluginmanager.register(ReportHooks(config), "npu-hil-report")

Why it corrects allure's status: allure-pytest calls every exception that is not an ``AssertionError`` or
``pytest.fail`` *broken*, so a :class:`~harness.errors.ProductError` (wrong output, version mismatch) would be
shown as a lab problem and a board that could not be opened (``pytest.fail`` in the board fixture) as a
product failure. The class comes from the exception (:func:`harness.report.results.failure_class`) and the
status follows it: product -> failed, infrastructure and config -> broken.

Under pytest-xdist the per-test side runs in the workers (each writes ``results.<worker>.json`` and its allure
results into the one alluredir) and the controller merges the parts into ``results.json`` and writes the
run-wide files (JUnit suite properties, allure environment and categories). A test's labels, properties and
evidence are those of its own board (:func:`harness.plugin.items.item_specs`), never another board's.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from harness.errors import HarnessError
from harness.report import evidence
from harness.report.results import (
    ResultsWriter,
    failure_class,
    harness_error,
    now_iso,
    outcome_of,
    write_merged,
)

log = logging.getLogger("npu-hil.report")

DMESG_TIMEOUT_S = 10.0
PROBE_TIMEOUT_S = 10.0
EXCERPT_LIMIT = 20000
PHASES_KEY = pytest.StashKey[dict[str, Any]]()

#: allure's categories.json: infrastructure trouble (broken) apart from product failures (failed); the first
#: matching category wins, so the specific ones come first. allure matches a regex against the whole message.
CATEGORIES = [
    {"name": "Board unreachable", "matchedStatuses": ["broken"],
     "messageRegex": r"(?s).*(unusable|unreachable|no link could run|not found|offline|refused|link down|"
                     r"did not come back|marked broken).*"},
    {"name": "Hang (NPU or test)", "matchedStatuses": ["broken"],
     "messageRegex": r"(?s).*(NPU hang|Timeout \(>|deadline|timed out).*"},
    {"name": "Flash failed", "matchedStatuses": ["broken"],
     "messageRegex": r"(?si).*(flash|upgrade_tool|rkdeveloptool).*"},
    {"name": "Infrastructure (board, link, lab)", "matchedStatuses": ["broken"]},
    {"name": "Version mismatch", "matchedStatuses": ["failed"],
     "messageRegex": r"(?s).*(MISMATCH|version).*"},
    {"name": "Golden mismatch (wrong output)", "matchedStatuses": ["failed"],
     "messageRegex": r"(?s).*(golden|elements differ|cosine|top-1).*"},
    {"name": "Latency regression or budget", "matchedStatuses": ["failed"],
     "messageRegex": r"(?s).*(latency regression|exceeds the budget|budget).*"},
    {"name": "Product failure", "matchedStatuses": ["failed"]},
]


def properties_escape(text: str) -> str:
    """Java .properties escaping (allure reads environment.properties with java.util.Properties)."""
    out = []
    for ch in str(text):
        if ch in "\\=: #!":
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ord(ch) > 126 or ord(ch) < 32:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out)


def suite_name(item: pytest.Item) -> str:
    stem = Path(str(item.path)).stem
    return stem[5:] if stem.startswith("test_") else stem


class ReportHooks:
    """The pytest plugin object: one per run, it owns the results writer and the allure side."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.writer: ResultsWriter | None = None
        self.alluredir: Path | None = None
        self.merged: dict[str, Any] | None = None  # the controller's merged results.json (xdist)

    def _role(self) -> str:
        from harness.lab.xdist_boards import role

        return role(self.config)

    # -- helpers --------------------------------------------------------------------------------------------
    def _session(self) -> Any:
        from harness.plugin.items import run_session

        return run_session(self.config)

    def _specs(self, item: pytest.Item | None = None) -> list[Any]:
        """The run's boards, or those ``item`` concerns (its own board when it has one)."""
        if item is None:
            return list(self._session().specs)
        from harness.plugin.items import item_specs

        return item_specs(item)

    def _board_versions(self, name: str) -> dict[str, str] | None:
        """component -> version of a board: probed in this process, or (controller) from the workers' parts."""
        record = evidence.RECORDER.board_versions.get(name)
        if record is not None:
            return {c: getattr(record, c).version or "unreadable" for c in evidence.COMPONENTS}
        entry = ((self.merged or {}).get("boards") or {}).get(name) or {}
        versions = entry.get("versions")
        if not isinstance(versions, dict):
            return None
        return {c: (versions.get(c) or {}).get("version") or "unreadable" for c in evidence.COMPONENTS}

    def _allure_listener(self) -> Any:
        return self.config.pluginmanager.get_plugin("allure_listener")

    @staticmethod
    def _npu(chip: str) -> str:
        from harness.chips import chip as lookup

        try:
            return lookup(chip).npu
        except HarnessError:
            return "unknown"

    # -- session --------------------------------------------------------------------------------------------
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        run = self._session()
        report_dir = getattr(self.config.option, "allure_report_dir", None)
        self.alluredir = Path(report_dir).resolve() if report_dir and self._allure_listener() else None
        controller = self._role() == "controller"  # the workers write the results; it merges them at the end
        if run.specs and not controller:  # a run without boards (the unit tests) leaves no report folder behind
            from harness.lab.xdist_boards import worker_id

            self.writer = ResultsWriter(run.run_dir, run_id=run.run_id, toolkit=run.toolkit,
                                        worker=worker_id(self.config))
            for spec in run.specs:
                self.writer.set_board(spec.name, chip=spec.chip, npu=self._npu(spec.chip),
                                      simulated=spec.is_simulated)
            self.writer.flush()
        evidence.RECORDER.start_run(self.writer, allure=self.alluredir is not None,
                                    attachments_dir=run.run_dir / "attachments" if run.specs and not controller
                                    else None)

    @pytest.hookimpl(tryfirst=True)  # before junitxml writes its file, so the suite properties are complete
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        run = self._session()
        role = self._role()
        self._probe_missing_versions(run)
        if self.writer is not None:
            for name, reason in run.failures.items():
                self.writer.set_board(name, broken=reason)
            for name, board in run.boards.items():
                self.writer.set_board(name, toolkit=board.toolkit, broken=board.broken)
            self.writer.finish(exitstatus)
        if role == "controller" and run.specs:
            try:
                self.merged = write_merged(run.run_dir, run_id=run.run_id, toolkit=run.toolkit, exitstatus=exitstatus)
            except OSError as exc:
                log.warning("results.json could not be merged: %s", exc)
        self._junit_suite_properties()
        if self.alluredir is not None and role != "worker":  # one writer of the run-wide allure files
            self._write_allure_files(run)

    def _junit_suite_properties(self) -> None:
        """Board, chip, NPU and versions as properties of the JUnit ``testsuite`` too: the xunit2 schema (pytest's
        default) has no per-testcase properties, and some CI systems only read the suite's. Done as the
        ``record_testsuite_property`` fixture does it (pytest has no public hook-side API for it)."""
        try:
            from _pytest.junitxml import xml_key
        except ImportError:
            return
        xml = self.config.stash.get(xml_key, None)
        if xml is None:
            return
        wanted: list[tuple[str, str]] = []
        for spec in self._specs():
            wanted += [("board", spec.name), (f"{spec.name}.chip", spec.chip),
                       (f"{spec.name}.npu", self._npu(spec.chip))]
            wanted += [(f"{spec.name}.{c}", v) for c, v in (self._board_versions(spec.name) or {}).items()]
        have = {name for name, _ in xml.global_properties}
        for name, value in wanted:
            if name not in have:
                xml.add_global_property(name, value)

    def _probe_missing_versions(self, run: Any) -> None:
        """Boards opened in this run whose versions no test recorded: probe once, briefly, for the reports."""
        from harness.npu.board_versions import probe_board

        for name, board in run.boards.items():
            if name in evidence.RECORDER.board_versions or board.silent:
                continue  # a board known not to answer would only make each probe wait out its deadline
            try:
                evidence.record_versions(board, probe_board(board, timeout=PROBE_TIMEOUT_S))
            except HarnessError as exc:
                log.warning("%s: versions could not be read for the report: %s", name, exc)

    def _write_allure_files(self, run: Any) -> None:
        assert self.alluredir is not None
        self.alluredir.mkdir(parents=True, exist_ok=True)
        lines = {"npu-hil.run_id": run.run_id}
        if run.toolkit:
            lines["toolkit"] = run.toolkit
        for spec in run.specs:
            lines[f"{spec.name}.chip"] = spec.chip
            lines[f"{spec.name}.npu"] = self._npu(spec.chip)
            board = run.boards.get(spec.name)
            if board is not None and board.toolkit:
                lines[f"{spec.name}.toolkit"] = board.toolkit
            for component, version in (self._board_versions(spec.name) or {}).items():
                lines[f"{spec.name}.{component}"] = version
        text = "".join(f"{properties_escape(k)}={properties_escape(v)}\n" for k, v in lines.items())
        (self.alluredir / "environment.properties").write_text(text, encoding="ascii")
        (self.alluredir / "categories.json").write_text(json.dumps(CATEGORIES, indent=2) + "\n")

    # -- per test -------------------------------------------------------------------------------------------
    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item):
        evidence.RECORDER.begin_test(item.nodeid)
        item.stash[PHASES_KEY] = {"started": now_iso(), "duration": 0.0, "failed": None, "skipped": None}
        specs = self._specs(item)
        for spec in specs:
            item.user_properties += [("board", spec.name), ("chip", spec.chip), ("npu", self._npu(spec.chip))]
        allure = evidence.allure_module()
        if allure is not None and specs:
            for spec in specs:
                npu = self._npu(spec.chip)
                allure.dynamic.label("board", spec.name)
                allure.dynamic.label("chip", spec.chip)
                allure.dynamic.label("npu", npu)
                allure.dynamic.tag(spec.name, spec.chip, npu)
            allure.dynamic.parent_suite(", ".join(spec.name for spec in specs))
            allure.dynamic.suite(suite_name(item))
        return (yield)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        report: pytest.TestReport = yield
        state = item.stash.get(PHASES_KEY, None)
        if state is None:  # setup hook never ran (another plugin failed first): nothing of ours to add
            return report
        state["duration"] += report.duration
        if report.when == "setup" and report.passed:
            self._versions_from_fixtures(item)
            self._versions_property(item)
        if report.failed and state["failed"] is None:
            exc = call.excinfo.value if call.excinfo is not None else None
            cls = failure_class(exc, report.when) if exc is not None else "infrastructure"
            from harness.plugin.after_failure import link_diagnosis

            message = "; ".join([_message(call, report), *link_diagnosis(item)])[:4000]
            state["failed"] = {"phase": report.when, "class": cls, "message": message}
            self._fix_allure_status(cls)
            self._attach_failure_evidence(item, exc)
        elif report.skipped and state["skipped"] is None:
            state["skipped"] = _skip_reason(report)
        if report.when == "teardown":
            self._finish_test(item, state)
        return report

    def _versions_from_fixtures(self, item: pytest.Item) -> None:
        """A test that used the ``board_versions`` / ``version_verdict`` fixtures records them: no suite has
        to remember to, and the JUnit XML gets a versions property."""
        from harness.npu.probes import VersionRecord

        funcargs = getattr(item, "funcargs", {})
        record, verdict, board = (funcargs.get("board_versions"), funcargs.get("version_verdict"),
                                  funcargs.get("board"))
        if isinstance(record, VersionRecord):
            specs = self._specs(item)
            name = getattr(board, "name", None) or (specs[0].name if specs else "board")
            evidence.record_versions(name, record, verdict if hasattr(verdict, "explain") else None)

    def _versions_property(self, item: pytest.Item) -> None:
        """JUnit ``versions`` property of every board whose versions are known by now (probed by this test or
        an earlier one)."""
        for spec in self._specs(item):
            record = evidence.RECORDER.board_versions.get(spec.name)
            if record is not None:
                item.user_properties.append(("versions", f"{spec.name}: {evidence.versions_summary(record)}"))

    def _fix_allure_status(self, cls: str) -> None:
        listener = self._allure_listener()
        if listener is None or self.alluredir is None:
            return
        test_result = listener.allure_logger.get_test(None)
        if test_result is not None and test_result.status in ("failed", "broken"):
            test_result.status = "failed" if cls == "product" else "broken"

    def _attach_failure_evidence(self, item: pytest.Item, exc: BaseException | None) -> None:
        if evidence.allure_module() is None:
            return
        from harness.plugin.items import MARK_KEY

        cause = harness_error(exc)
        # What the error itself carries: the kernel log captured at an NPU hang (before the reboot that
        # recovered the board erased it) and the runner's output for a run that did not finish.
        for attribute, title in (("dmesg", "dmesg at the failure"), ("output", "runner output")):
            text = getattr(cause, attribute, None)
            if isinstance(text, str) and text:
                evidence.allure_attach(title, text[-EXCERPT_LIMIT:])

        current = evidence.RECORDER.current
        since = item.stash.get(MARK_KEY, None)
        from harness.plugin.items import item_boards

        own = item_boards(item)
        for name, board in own:
            if board.has_link("console"):
                excerpt = board.console.excerpt(since=since)[-EXCERPT_LIMIT:]
                evidence.allure_attach(f"console {name}", excerpt or "(the console printed nothing during this test)")
            evidence.allure_attach(f"dmesg {name}", board.kernel_log(timeout=DMESG_TIMEOUT_S))
        names = {name for name, _ in own} or set(evidence.RECORDER.board_tables)
        tables = {n: t for n, t in evidence.RECORDER.board_tables.items() if n in names}
        tables.update(current.versions if current else {})
        for name, table in tables.items():
            evidence.allure_attach(f"versions {name}", table)
        if current is not None and current.golden:
            evidence.allure_attach("golden diff", evidence.golden_summary(current.golden))
        for title, args in current.plots if current else ():
            try:
                from harness.report.histogram import latency_histogram_png

                evidence.allure_attach(title, latency_histogram_png(**args), "png")
            except Exception as exc:  # a plot that cannot be drawn must not hide the test's own failure
                log.warning("latency histogram %s: %s", title, exc)

    def _finish_test(self, item: pytest.Item, state: dict[str, Any]) -> None:
        done = evidence.RECORDER.end_test() or evidence.TestEvidence(item.nodeid)
        if self.writer is None:
            return
        from harness.plugin.items import SKIP_KIND_KEY, excerpt_name, item_board, item_boards

        failed = state["failed"]
        if failed:
            outcome, cls, message, phase = (outcome_of(failed["class"]), failed["class"], failed["message"],
                                            failed["phase"])
        elif state["skipped"] is not None:
            outcome, cls, message, phase = "skipped", None, state["skipped"], None
        else:
            outcome, cls, message, phase = "passed", None, None, None
        self.writer.add_test({
            "nodeid": item.nodeid, "suite": suite_name(item), "board": item_board(item),
            "outcome": outcome, "class": cls, "phase": phase, "duration": round(state["duration"], 6),
            "started": state["started"], "message": message, "latency": done.latency, "golden": done.golden,
            "attachments": done.attachments,
            "skip": item.stash.get(SKIP_KIND_KEY, None) if outcome == "skipped" else None,
            # the console excerpt of each board, relative to the run folder (the gate names it beside a failure)
            "evidence": [f"{name}/{excerpt_name(item.nodeid)}" for name, board in item_boards(item)
                         if board.has_link("console")],
        })
        try:
            self.writer.flush()
        except OSError as exc:  # a full disk must not turn every later test into an error
            log.warning("results.json could not be written: %s", exc)


def _message(call: pytest.CallInfo, report: pytest.TestReport) -> str:
    if call.excinfo is not None:
        value = call.excinfo.value
        text = str(value) if isinstance(value, (HarnessError, pytest.fail.Exception)) else call.excinfo.exconly()
    else:
        text = report.longreprtext
    return text[:4000]


def _skip_reason(report: pytest.TestReport) -> str:
    if hasattr(report, "wasxfail"):
        return f"xfail: {report.wasxfail}"
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


