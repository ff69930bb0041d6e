"""``reports/<run-id>/results.json``: the machine-readable record of a run, written after every test.

Why incrementally and atomically: a run on real boards can be cut short (a hung board, a CI job killed at its
time limit, a power cut in the lab). The file is rewritten whole after each test into a temporary file and
renamed over the old one, so a reader only ever sees a complete JSON document; ``"complete": false`` until
the session ends normally tells a partial run from a finished one.

Each failure carries a class from its exception (design principle 5, :mod:`harness.errors`): ``product`` (the
firmware or model is wrong: a *failed* test), ``infrastructure`` (the board or the lab: *broken*), ``config``
(the setup of the run: an *error*). A plain ``assert`` is a product failure.

Under pytest-xdist each worker writes its own ``results.<worker>.json`` (same schema, incrementally) and the
controller merges them into ``results.json`` at the end (:func:`write_merged`): workers never rewrite one shared
file, and a run whose controller was killed can still be read from its parts (:func:`read_parts`,
:func:`merge_results`).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import platform
import socket
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, HarnessError

SCHEMA_VERSION = 1
RESULTS_FILE = "results.json"
PART_GLOB = "results.*.json"  # one per xdist worker: results.gw0.json, results.gw1.json...
OUTCOME_OF_CLASS = {"product": "failed", "infrastructure": "broken", "config": "error"}
TIMEOUT_MARK = "from pytest-timeout"  # pytest-timeout's failure text: the test hung, not the product


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def harness_error(exc: BaseException | None) -> HarnessError | None:
    """The HarnessError behind ``exc``: itself, or one it was raised from or while handling (pytest.fail in an
    ``except BoardError`` block, as the board fixtures do)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, HarnessError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def failure_class(exc: BaseException, when: str = "call") -> str:
    """``product``, ``infrastructure`` or ``config`` for an exception that failed a test phase."""
    import pytest

    found = harness_error(exc)
    if found is not None:
        return found.kind if found.kind in OUTCOME_OF_CLASS else "infrastructure"
    if isinstance(exc, AssertionError):
        return "product"
    if isinstance(exc, pytest.fail.Exception):
        if TIMEOUT_MARK in str(exc):
            return "infrastructure"
        return "product" if when == "call" else "infrastructure"
    return "infrastructure"  # anything unexpected (OSError, a harness bug) cannot be blamed on the product


def outcome_of(cls: str) -> str:
    return OUTCOME_OF_CLASS.get(cls, "broken")


def host_info() -> dict[str, str]:
    import pytest

    return {"hostname": socket.gethostname(), "platform": platform.platform(), "python": sys.version.split()[0],
            "pytest": pytest.__version__, "pid": str(os.getpid())}


def jsonable(value: Any) -> Any:
    """``value`` with NaN and infinities as strings and tuples as lists: strict JSON that every reader parses."""
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if hasattr(value, "item"):  # numpy scalars
        return jsonable(value.item())
    return str(value)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as JSON next to ``path`` and rename it over ``path`` (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(jsonable(data), handle, indent=2, allow_nan=False)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class ResultsWriter:
    """The run's results.json: boards, their versions, every test's outcome; flushed after each change."""

    def __init__(self, run_dir: Path, *, run_id: str, toolkit: str | None = None, worker: str | None = None) -> None:
        self.path = Path(run_dir) / (part_name(worker) if worker else RESULTS_FILE)
        self._lock = threading.Lock()
        self.data: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION, "run_id": run_id, "complete": False, "started": now_iso(),
            "finished": None, "host": host_info(), "toolkit": toolkit, "boards": {}, "summary": {}, "tests": [],
        }
        if worker:
            self.data["worker"] = worker

    def set_board(self, name: str, **info: Any) -> None:
        """Add or update a board's entry (chip, npu, simulated, versions, matrix, broken); None values are kept
        out so a later partial update never erases what an earlier one recorded."""
        with self._lock:
            entry = self.data["boards"].setdefault(name, {"versions": None, "matrix": None})
            entry.update({k: v for k, v in info.items() if v is not None})

    def board(self, name: str) -> dict[str, Any] | None:
        return self.data["boards"].get(name)

    def add_test(self, record: dict[str, Any]) -> None:
        with self._lock:
            self.data["tests"].append(record)
            summary = self.data["summary"]
            summary[record["outcome"]] = summary.get(record["outcome"], 0) + 1

    def flush(self) -> None:
        with self._lock:
            write_json_atomic(self.path, self.data)

    def finish(self, exitstatus: int | None = None) -> None:
        """Mark the run complete (the session ended normally) and write the file a last time."""
        with self._lock:
            self.data["complete"] = True
            self.data["finished"] = now_iso()
            self.data["exitstatus"] = None if exitstatus is None else int(exitstatus)
        self.flush()


class ResultsFormatError(ConfigError, ValueError):
    """A file that is not a results document this code can merge (bad JSON, wrong schema, wrong field types).

    A ValueError too, because callers of :func:`load_results` have always caught it as one."""


#: Fields a results document must have the right type of, for :func:`merge_results` to combine it.
_SHAPE = {"boards": dict, "tests": list, "host": (dict, type(None)), "started": (str, type(None)),
          "finished": (str, type(None)), "complete": (bool, type(None))}


def _shape_problem(data: dict[str, Any]) -> str | None:
    """What makes a parsed document unusable for merging (the first problem found), or None."""
    for key, kinds in _SHAPE.items():
        if key in data and not isinstance(data[key], kinds):
            return f"{key} is a {type(data[key]).__name__}"
    if not all(isinstance(entry, dict) for entry in data.get("boards", {}).values()):
        return "a boards entry is not an object"
    if not all(isinstance(test, dict) and isinstance(test.get("outcome"), str) for test in data.get("tests", [])):
        return "a tests entry is not an object with a string outcome"
    return None


def load_results(path: Path) -> dict[str, Any]:
    """Read a results.json (used by tests and tools); ResultsFormatError (a ConfigError and a ValueError) for a
    file that is not one, OSError when it cannot be read."""
    try:
        data = json.loads(Path(path).read_bytes().decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # bad UTF-8, bad JSON, a number over int()'s 4300 digits
        reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise ResultsFormatError(f"{path} is not valid JSON: {reason}") from None
    if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION:
        raise ResultsFormatError(f"{path} is not a npu-hil results.json of schema {SCHEMA_VERSION}")
    problem = _shape_problem(data)
    if problem:
        raise ResultsFormatError(f"{path} is not a npu-hil results.json: {problem}")
    return data


def part_name(worker: str) -> str:
    """The file an xdist worker writes its share of the run into."""
    return f"results.{worker}.json"


def clear_parts(run_dir: Path) -> None:
    """Remove worker parts an earlier run with the same --run-id left (the controller, before any worker starts),
    so the merge never counts another run's tests."""
    for path in Path(run_dir).glob(PART_GLOB):
        if path.name != RESULTS_FILE:
            path.unlink(missing_ok=True)


def read_parts(run_dir: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The worker parts of a run (sorted by worker) and, for each unreadable one, why."""
    parts, problems = [], []
    for path in sorted(Path(run_dir).glob(PART_GLOB)):
        if path.name == RESULTS_FILE or path.name.startswith("."):
            continue
        try:
            data = load_results(path)
        except (OSError, ValueError) as exc:  # truncated by a killed worker (cannot happen with atomic writes)
            problems.append(f"{path.name}: {exc}")
            continue
        parts.append(data)
    return parts, problems


def merge_results(parts: list[dict[str, Any]], *, run_id: str, toolkit: str | None = None,
                  host: dict[str, str] | None = None, complete: bool = True) -> dict[str, Any]:
    """One results document from the workers' parts: boards merged (later non-empty values win), tests of all
    workers by start time, the summary recounted; complete only if every part is and ``complete`` says so."""
    boards: dict[str, dict[str, Any]] = {}
    for part in parts:
        for name, entry in part.get("boards", {}).items():
            merged = boards.setdefault(name, {"versions": None, "matrix": None})
            merged.update({k: v for k, v in entry.items() if v is not None})
    tests = sorted((t for part in parts for t in part.get("tests", [])), key=lambda t: str(t.get("started") or ""))
    summary: dict[str, int] = {}
    for test in tests:
        summary[test["outcome"]] = summary.get(test["outcome"], 0) + 1
    started = [p["started"] for p in parts if p.get("started")]
    finished = [p["finished"] for p in parts if p.get("finished")]
    return {
        "schema_version": SCHEMA_VERSION, "run_id": run_id,
        "complete": complete and all(p.get("complete") for p in parts),
        "started": min(started) if started else now_iso(), "finished": max(finished) if finished else None,
        "host": host or (parts[0].get("host") if parts else host_info()),
        "toolkit": (toolkit if toolkit is not None
                    else next((p.get("toolkit") for p in parts if p.get("toolkit")), None)),
        "boards": boards, "summary": summary, "tests": tests,
        "workers": {str(p.get("worker", i)): {"pid": (p.get("host") or {}).get("pid"), "complete": p.get("complete"),
                                              "tests": len(p.get("tests", []))} for i, p in enumerate(parts)},
    }


def write_merged(run_dir: Path, *, run_id: str, toolkit: str | None = None,
                 exitstatus: int | None = None) -> dict[str, Any]:
    """The xdist controller's last word: every worker part merged into ``results.json`` (parts are kept)."""
    parts, problems = read_parts(run_dir)
    if not parts:
        problems.append("no worker wrote its results (did every worker die before starting?)")
    # Ctrl-C (2) and an internal error (3) end a run whose workers may have finished "cleanly" all the same
    interrupted = exitstatus is not None and int(exitstatus) in (2, 3)
    data = merge_results(parts, run_id=run_id, toolkit=toolkit, host=host_info(),
                         complete=not problems and not interrupted)
    data["finished"] = now_iso()
    data["exitstatus"] = None if exitstatus is None else int(exitstatus)
    if problems:
        data["problems"] = problems
    write_json_atomic(Path(run_dir) / RESULTS_FILE, data)
    return data
