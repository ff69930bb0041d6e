"""What the release gate reads: a run's ``results.json``, validated leniently (unknown keys kept), and how an
interrupted run (no file, a truncated file, ``complete: false``) is told apart from a file that is not ours.

Kept apart from :mod:`harness.report.gate` so the decision rules read on their own.

A run made with pytest-xdist has one ``results.<worker>.json`` per worker, merged by the controller into
``results.json`` at the end; when the controller was killed before merging, the parts are merged here and the
run counts as interrupted (its results are partial).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from harness.errors import ConfigError, printable
from harness.npu.probes import RECORDED_COMPONENTS
from harness.report.results import PART_GLOB, RESULTS_FILE, merge_results, read_parts
from harness.report.results import SCHEMA_VERSION as SCHEMA


class _Open(BaseModel):
    """Unknown keys are kept, so a newer writer adding fields does not break an older gate."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class LatencyEntry(_Open):
    model: str
    chip: str | None = None
    precision: str | None = None
    stats: dict[str, float | int | None]
    budget: dict[str, Any] | None = None
    budget_problems: list[str] = []
    baseline: dict[str, Any] | None = None
    regression: str | dict[str, Any] | None = None  # the writer stores latency.Regression as a dict
    baseline_problem: str | None = None
    tolerance: dict[str, Any] | None = None  # the regression tolerance the run judged with (rel, k_sigma)

    @property
    def regression_text(self) -> str | None:
        if isinstance(self.regression, dict):
            return str(self.regression.get("message") or self.regression)
        return self.regression


class TestEntry(_Open):
    nodeid: str
    board: str | None = None
    suite: str | None = None
    outcome: Literal["passed", "failed", "broken", "skipped", "error"]
    klass: Literal["product", "infrastructure", "config"] | None = Field(None, alias="class")
    duration: float | None = None
    message: str | None = None
    latency: list[LatencyEntry] = []
    golden: list[Any] = []
    skip: Literal["not-selected", "not-applicable"] | None = None  # a skip the harness made by selection
    evidence: list[str] = []  # console excerpt files, relative to the run folder


class BoardEntry(_Open):
    chip: str | None = None
    npu: str | None = None
    simulated: bool = False
    versions: dict[str, Any] | None = None
    matrix: dict[str, Any] | None = None
    broken: bool | str | None = None
    firmware: dict[str, Any] | None = None  # --firmware: image, before, after, flashed, error
    recoveries: list[dict[str, Any]] = []  # climbs of the recovery ladder: reason, outcome, steps, seconds

    @field_validator("versions", "matrix")
    @classmethod
    def _objects(cls, value: dict[str, Any] | None, info: Any) -> dict[str, Any] | None:
        """The gate reads each version component, the matrix's ``expected`` and each mismatch as an object."""
        if value is None:
            return None
        if info.field_name == "versions":
            inner = [value.get(c) for c in RECORDED_COMPONENTS]
        else:
            inner = [value.get("expected")]
            mismatches = value.get("mismatches") or []
            if not isinstance(mismatches, list) or not all(isinstance(m, dict) for m in mismatches):
                raise ValueError("matrix.mismatches must be a list of objects (component, expected, found)")
        if not all(v is None or isinstance(v, dict) for v in inner):
            raise ValueError(f"{info.field_name} holds a non-object where the gate reads an object")
        return value


class ResultsFile(_Open):
    run_id: str
    started: str | None = None
    finished: str | None = None
    complete: bool
    host: str | dict[str, Any] | None = None  # the writer stores hostname, platform, python, pid
    boards: dict[str, BoardEntry] = {}
    tests: list[TestEntry] = []

    @property
    def hostname(self) -> str | None:
        return (self.host.get("hostname") or None) if isinstance(self.host, dict) else self.host


@dataclass
class Run:
    """One run as read from disk; ``problem`` says why it cannot count as complete (None when it can)."""

    path: Path
    run_id: str
    complete: bool
    problem: str | None = None
    data: ResultsFile | None = None

    @property
    def label(self) -> str:
        host = self.data.hostname if self.data else None
        return f"{self.run_id}@{host}" if host else self.run_id

    def summary(self) -> dict[str, Any]:
        d = self.data
        return {"run_id": self.run_id, "label": self.label, "path": str(self.path), "complete": self.complete,
                "problem": self.problem, "host": d.hostname if d else None, "started": d.started if d else None,
                "finished": d.finished if d else None, "boards": sorted(d.boards) if d else [],
                "tests": len(d.tests) if d else 0}


def load_run(path: Path) -> Run:
    """A run directory (or its results.json). A missing or truncated file is an interrupted run, not an error;
    a file that is JSON but not our schema is a ConfigError (it is not a run of ours)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"run directory {path} does not exist")
    file = path if path.is_file() else path / RESULTS_FILE
    name = path.name if path.is_dir() else path.parent.name
    parts_note = None
    if not file.is_file() and path.is_dir() and any(path.glob(PART_GLOB)):
        raw, parts_note = _merged_parts(path, name)
    elif not file.is_file():
        return Run(path, name, False, f"no {RESULTS_FILE}: the run was interrupted before writing any result")
    else:
        try:
            raw = json.loads(file.read_text(encoding="utf-8"))
        except (ValueError, RecursionError) as exc:  # bad JSON or UTF-8; a 5000-digit number; nested too deep
            return Run(path, name, False, f"{RESULTS_FILE} is unreadable (interrupted while writing?): {exc}")
    version = raw.get("schema_version", raw.get("schema")) if isinstance(raw, dict) else None
    if version != SCHEMA:
        raise ConfigError(f"{file}: results schema {version!r} is not supported (this gate reads {SCHEMA})")
    try:
        data = ResultsFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{file}: not a results file: {first_error(exc)}") from None
    problem = None if data.complete else "the run did not finish (complete: false): its results are partial"
    if parts_note:
        problem = parts_note
    return Run(path, data.run_id, data.complete, problem, data)


def first_error(exc: ValidationError) -> str:
    """A pydantic error as one line: where, what, and how many more (the gate's inputs are files people wrote)."""
    first = exc.errors()[0]
    where = ".".join(printable(p) for p in first["loc"]) or "(top level)"  # a key may hold a newline
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {printable(first['msg'].removeprefix('Value error, '))}{more}"


def _merged_parts(path: Path, name: str) -> tuple[dict[str, Any], str]:
    """The workers' parts of a run whose xdist controller never merged them, and why the run is partial."""
    parts, problems = read_parts(path)
    raw = merge_results(parts, run_id=parts[0].get("run_id", name) if parts else name, complete=False)
    note = (f"no {RESULTS_FILE}: the xdist controller did not finish; read {len(parts)} worker part(s) "
            f"({', '.join(str(p.get('worker', '?')) for p in parts) or 'none readable'}): its results are partial")
    if problems:
        note += f"; unreadable: {'; '.join(problems)}"
    return raw, note
