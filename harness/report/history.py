"""The nightly history: one line per night and board, appended to ``history.jsonl`` in the nightly archive.

Why a JSON-lines file beside the night folders: run folders are pruned (``npu-hil nightly --keep N``) but the
trend must outlive them, a night appends without rewriting what earlier nights wrote, and a line cut short by a
crash loses that line only (it is skipped when read, with a warning).

Each line is what a lab lead asks of a board's night: its verdict (GO / NO-GO for that board, and the night's),
pass/fail/skip counts, versions, firmware, on-board latency per model, accuracy per model where a suite
measured it (top-k agreement with the golden), and whether the board was recovered or broken. Pure: built from
a run (:mod:`harness.report.gate_input`) and its gate report; the nightly command writes it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.report.gate import GateReport
from harness.report.gate_input import Run

log = logging.getLogger("npu-hil.history")
HISTORY_FILE = "history.jsonl"
#: A night the harness could not run at all (no board reachable, pytest interrupted): its verdict
NOT_RUN = "NOT-RUN"
#: How many nights the gate's pages show
DEFAULT_NIGHTS = 30


def night_records(run: Run, report: GateReport, boards: list[str], *, problem: str | None = None) -> list[dict]:
    """One record per board of ``boards`` for the night ``run`` gated as ``report``; ``problem``: why the night
    could not be made (its records then say NOT-RUN with that reason)."""
    data = run.data
    records = []
    for board in boards:
        tests = [t for t in (data.tests if data else []) if t.board == board]
        entry = data.boards.get(board) if data else None
        reasons = [r.text for r in report.reasons if r.board in (board, None)]
        verdict = NOT_RUN if problem else ("NO-GO" if reasons else "GO")
        records.append({
            "night": run.run_id,
            "started": data.started if data else None,
            "board": board,
            "verdict": verdict,
            "night_verdict": NOT_RUN if problem else report.verdict,
            "problem": problem,
            "counts": _counts(tests),
            "versions": _versions(entry.versions if entry else None),
            "firmware": _firmware(entry.firmware if entry else None) or _versions(
                entry.versions if entry else None).get("rk_version"),
            "latency_ms": {f"{e.model}": e.stats.get("mean_ms") for t in tests for e in t.latency},
            "accuracy": _accuracy(tests),
            "recovered": [r.get("outcome") for r in (entry.recoveries if entry else []) if r.get("outcome")
                          != "broken"],
            "broken": (entry.broken if entry and isinstance(entry.broken, str) else
                       "broken" if entry and entry.broken else None),
            "reasons": reasons[:20],
        })
    return records


def _counts(tests: list[Any]) -> dict[str, int]:
    counts = dict.fromkeys(("passed", "failed", "broken", "error", "skipped"), 0)
    for test in tests:
        counts[test.outcome] = counts.get(test.outcome, 0) + 1
    return counts


def _versions(recorded: dict[str, Any] | None) -> dict[str, str]:
    """component -> version string, from a board's versions as results.json records them."""
    return {name: str(value["version"]) for name, value in (recorded or {}).items()
            if isinstance(value, dict) and value.get("version") is not None}


def _firmware(entry: dict[str, Any] | None) -> str | None:
    """The RK_VERSION a --firmware run left the board on (as found when it was not reflashed)."""
    if not entry or entry.get("error"):
        return None
    return str(entry.get("after") or entry.get("before") or "") or None


def _accuracy(tests: list[Any]) -> dict[str, float]:
    """Per model: the share of the golden's top-k classes the board's outputs agreed with, over every output
    comparison of the night that measured it."""
    agree: dict[str, list[int]] = {}
    for test in tests:
        for entry in test.golden:
            if not isinstance(entry, dict):
                continue
            for output in entry.get("outputs") or []:
                if isinstance(output, dict) and output.get("top_k_total"):
                    pair = agree.setdefault(str(entry.get("model")), [0, 0])
                    pair[0] += int(output.get("top_k_agree") or 0)
                    pair[1] += int(output["top_k_total"])
    return {model: round(hit / total, 4) for model, (hit, total) in agree.items() if total}


def append(archive: Path, records: list[dict]) -> Path:
    """Add the night's records to the archive's history file (created on the first night)."""
    path = Path(archive) / HISTORY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps(record, sort_keys=True, default=str) + "\n")
    return path


def read(archive: Path) -> list[dict]:
    """Every record of the archive's history, oldest first; a line that is not a record is skipped (logged)."""
    path = Path(archive) / HISTORY_FILE
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            log.warning("%s:%d: skipped, not a record (cut short?): %s", path, number, exc)
            continue
        if isinstance(record, dict) and {"night", "board", "verdict"} <= record.keys():
            records.append(record)
        else:
            log.warning("%s:%d: skipped, not a night record", path, number)
    return records


@dataclass(frozen=True)
class Trends:
    """The last nights of a history, shaped for the gate's pages: per board a verdict per night, and per board
    and model the on-board latency mean per night (only nights that measured it)."""

    nights: list[str]
    verdicts: dict[str, dict[str, str]] = field(default_factory=dict)  # board -> night -> verdict
    latency: dict[tuple[str, str], list[tuple[str, float]]] = field(default_factory=dict)  # (board, model)

    @property
    def boards(self) -> list[str]:
        return sorted(self.verdicts)


def trends(records: list[dict], last: int = DEFAULT_NIGHTS) -> Trends:
    """The history's last ``last`` nights (in the order they were appended) as :class:`Trends`."""
    order: list[str] = []
    for record in records:
        if record["night"] not in order:
            order.append(record["night"])
    nights = order[-last:]
    shown = set(nights)
    verdicts: dict[str, dict[str, str]] = {}
    latency: dict[tuple[str, str], list[tuple[str, float]]] = {}
    for record in records:
        if record["night"] not in shown:
            continue
        verdicts.setdefault(str(record["board"]), {})[record["night"]] = str(record["verdict"])
        for model, mean in (record.get("latency_ms") or {}).items():
            if isinstance(mean, (int, float)):
                latency.setdefault((str(record["board"]), str(model)), []).append((record["night"], float(mean)))
    return Trends(nights, verdicts, dict(sorted(latency.items())))


def night_label(night: str) -> str:
    """``night-20261206-225023-25406`` -> ``12-06 22:50``: short enough for a column header."""
    parts = night.removeprefix("night-").split("-")
    if len(parts) >= 2 and len(parts[0]) == 8 and len(parts[1]) >= 4 and (parts[0] + parts[1]).isdigit():
        return f"{parts[0][4:6]}-{parts[0][6:8]} {parts[1][:2]}:{parts[1][2:4]}"
    return night
