"""Accepted baselines: the reference latency (and goldens metadata) a release is compared with, per chip.

Why per chip: latency is a property of the NPU, not of one bench's board; two RK3588 boards should compare
with the same reference. A board's own earlier figures win when they exist (:meth:`BaselineStore.get`).

Layout under the baseline folder (default ``reports/baselines``)::

    <chip>/current.json                        the reference the gate compares with
    <chip>/history/<accepted-at>-<run>.json    every accepted run, for the trend (oldest first by name)

Why history files: the gate shows a trend over accepted runs, and a baseline that slowly creeps up (each step
under the regression threshold) is only visible as a trend. Accepting writes under a file lock and replaces
files atomically, so two hosts accepting at once never leave a half-written reference.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from harness.errors import ConfigError
from harness.report.gate_input import load_run
from harness.report.results import write_json_atomic

DEFAULT_DIR = Path("reports") / "baselines"
LOCK_TIMEOUT_S = 30.0
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass(frozen=True)
class BaselineEntry:
    chip: str
    model: str
    precision: str | None
    board: str | None
    run_id: str
    accepted_at: str
    stats: dict[str, Any]


@dataclass(frozen=True)
class TrendPoint:
    run_id: str
    accepted_at: str
    mean_ms: float


@dataclass
class BaselineStore:
    """Every chip's current reference and history, read once."""

    root: Path
    current: list[BaselineEntry] = field(default_factory=list)
    history: list[BaselineEntry] = field(default_factory=list)

    def get(self, chip: str, model: str, precision: str | None, board: str | None = None) -> BaselineEntry | None:
        """The current reference for this model on this chip; the same board's figure when there is one."""
        found = [e for e in self.current if (e.chip, e.model, e.precision) == (chip, model, precision)]
        same_board = [e for e in found if board is not None and e.board == board]
        return (same_board or found or [None])[0]

    def trend(self, chip: str, model: str, precision: str | None) -> list[TrendPoint]:
        """Mean latency of each accepted run, oldest first (one point per run: the first board's)."""
        points: dict[str, TrendPoint] = {}
        for e in sorted(self.history, key=lambda e: e.accepted_at):
            mean = e.stats.get("mean_ms")
            if (e.chip, e.model, e.precision) == (chip, model, precision) and isinstance(mean, (int, float)):
                points.setdefault(f"{e.accepted_at}/{e.run_id}", TrendPoint(e.run_id, e.accepted_at, float(mean)))
        return list(points.values())


def _safe_name(text: str, what: str) -> str:
    """A folder or file name from a results file: never a path (``../``) and never empty."""
    if not _SAFE.match(text) or text in (".", ".."):
        raise ConfigError(f"{what} {text!r} cannot name a baseline folder: use letters, digits, '.', '_', '-'")
    return text


def _entries(record: dict[str, Any], chip: str) -> list[BaselineEntry]:
    return [BaselineEntry(chip, item["model"], item.get("precision"), item.get("board"), record["run_id"],
                          record["accepted_at"], dict(item.get("stats") or {}))
            for item in record.get("latency", [])]


def _read(file: Path) -> dict[str, Any]:
    try:
        record = json.loads(file.read_text(encoding="utf-8"))
        if not isinstance(record, dict) or not {"run_id", "accepted_at"} <= record.keys():
            raise ValueError("run_id or accepted_at missing")
        return record
    except (OSError, ValueError) as exc:
        raise ConfigError(f"baseline file {file} is unreadable: {exc}") from None


def load_baselines(root: Path) -> BaselineStore:
    """Every chip folder under ``root``; an absent folder is an empty store (no baseline accepted yet)."""
    root = Path(root)
    store = BaselineStore(root)
    if not root.exists():
        return store
    if not root.is_dir():
        raise ConfigError(f"baseline folder {root} is not a folder")
    for chip_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        if (chip_dir / "current.json").is_file():
            store.current += _entries(_read(chip_dir / "current.json"), chip_dir.name)
        for file in sorted((chip_dir / "history").glob("*.json")):
            store.history += _entries(_read(file), chip_dir.name)
    return store


@dataclass
class Accepted:
    """What :func:`accept` stored: the files per chip, and what a person should know about the run."""

    run_id: str
    files: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def accept(run_dir: Path, into: Path = DEFAULT_DIR, *, now: datetime | None = None) -> Accepted:
    """Store the run in ``run_dir`` as the new reference for each chip it measured.

    An incomplete run is refused (partial figures are no reference). Failed tests do not stop the accept: a
    deliberately slower release is accepted exactly so its figures become the reference, but they are named.
    """
    run = load_run(Path(run_dir))
    if run.data is None or not run.complete:
        raise ConfigError(f"cannot accept {run_dir} as a baseline: {run.problem}")
    data = run.data
    run_id = _safe_name(data.run_id, "run id")
    accepted_at = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S.%fZ")
    per_chip: dict[str, dict[str, Any]] = {}

    def chip_record(chip: str) -> dict[str, Any]:
        return per_chip.setdefault(_safe_name(chip, "chip"), {
            "schema": 1, "run_id": run_id, "accepted_at": accepted_at, "source": str(Path(run_dir).resolve()),
            "host": data.host, "boards": {}, "latency": [], "golden": []})

    result = Accepted(run_id)
    for name, board in data.boards.items():
        if board.chip:
            chip_record(board.chip)["boards"][name] = {"versions": board.versions, "simulated": board.simulated,
                                                       "toolkit": (board.matrix or {}).get("toolkit")}
    for test in data.tests:
        board = data.boards.get(test.board or "")
        if test.outcome not in ("passed", "skipped"):
            result.warnings.append(f"{test.nodeid} on {test.board}: {test.outcome} "
                                   f"({test.klass or 'unclassified'}): {(test.message or '')[:160]}")
        for entry in test.latency:
            chip = entry.chip or (board.chip if board else None)
            if chip is None:
                result.warnings.append(f"{test.nodeid}: latency of {entry.model} has no chip: not stored")
                continue
            chip_record(chip)["latency"].append({"model": entry.model, "precision": entry.precision,
                                                 "board": test.board, "nodeid": test.nodeid,
                                                 "stats": dict(entry.stats)})
        if test.golden and board and board.chip:
            chip_record(board.chip)["golden"].append({"board": test.board, "nodeid": test.nodeid,
                                                      "golden": test.golden})
    per_chip = {chip: r for chip, r in per_chip.items() if r["latency"] or r["golden"]}
    if not per_chip:  # a chip without figures keeps its reference: it was not measured, not made faster
        raise ConfigError(f"cannot accept {run_dir} as a baseline: it holds no latency figure and no golden")
    into = Path(into)
    into.mkdir(parents=True, exist_ok=True)
    try:
        with FileLock(str(into / ".lock"), timeout=LOCK_TIMEOUT_S):
            for chip, record in sorted(per_chip.items()):
                history = into / chip / "history"
                for old in history.glob("*.json"):  # accepting a run again replaces its point
                    if old.name.split("-", 1)[-1] == f"{run_id}.json":  # the stamp holds no '-'
                        old.unlink()
                write_json_atomic(history / f"{accepted_at}-{run_id}.json", record)
                write_json_atomic(into / chip / "current.json", record)
                result.files.append(into / chip / "current.json")
    except Timeout:
        raise ConfigError(f"baseline folder {into} is locked by another accept for over {LOCK_TIMEOUT_S:g} s "
                          f"(remove {into / '.lock'} if no accept is running)") from None
    return result
