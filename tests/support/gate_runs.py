"""Results files for release-gate tests: boards, cases and runs built from the harness's own version check
and latency statistics, so the gate is tested on what a run really writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from harness.npu.latency import LatencyStats, check_budget
from harness.npu.matrix import check
from harness.npu.probes import VersionRecord
from harness.npu.versions import ParsedVersion

REPO = Path(__file__).resolve().parents[2]
TOOLKIT = "2.3.0"


def versions(runtime: str = "2.3.0", server: str = "2.3.0", driver: str = "0.9.8",
             chip: str = "rk3588") -> VersionRecord:
    def pv(component: str, version: str) -> ParsedVersion:
        return ParsedVersion(component, version, f"{component} version: {version}")

    return VersionRecord("rknpu2", pv("driver", driver), pv("rknn_server", server), pv("runtime", runtime), True,
                         pv("chip", chip), pv("kernel", "5.10.160"), pv("rk_version", "v1.0.0"))


def board(chip: str = "rk3588", **kw: str) -> dict[str, Any]:
    record = versions(chip=chip, **kw)
    return {"chip": chip, "npu": "rknpu2", "simulated": True, "versions": record.to_dict(),
            "matrix": check(record, npu="rknpu2", toolkit=TOOLKIT).to_dict()}


def latency(model: str, samples: list[float], budget: dict[str, float] | None = None,
            chip: str = "rk3588") -> dict[str, Any]:
    stats = LatencyStats.from_samples(samples)
    return {"model": model, "chip": chip, "stats": stats.to_dict(), "budget": budget,
            "budget_problems": check_budget(stats, budget) if budget else [], "baseline": None, "regression": None}


def case(board_name: str, suite: str, name: str = "test_it", outcome: str = "passed", klass: str | None = None,
         message: str | None = None, lat: list[dict[str, Any]] | None = None, skip: str | None = None,
         evidence: list[str] = ()) -> dict[str, Any]:
    return {"nodeid": f"suites/{suite}.py::{name}[{board_name}]", "board": board_name, "suite": suite,
            "outcome": outcome, "class": klass, "duration": 0.5, "message": message, "latency": lat or [],
            "golden": [], "skip": skip, "evidence": list(evidence)}


def write_run(root: Path, run_id: str, boards: dict[str, Any], tests: list[dict[str, Any]], *,
              complete: bool = True, host: str = "lab-a") -> Path:
    run_dir = root / run_id
    run_dir.mkdir(parents=True)
    data = {"schema_version": 1, "run_id": run_id, "complete": complete, "started": "2026-11-23T10:00:00+00:00",
            "finished": "2026-11-23T10:30:00+00:00" if complete else None,
            "host": {"hostname": host, "platform": "Linux", "python": "3.11", "pid": "1"}, "toolkit": TOOLKIT,
            "boards": boards, "summary": {}, "tests": tests}
    (run_dir / "results.json").write_text(json.dumps(data, indent=2), encoding="utf-8")
    return run_dir


def good_pair(root: Path) -> list[Path]:
    """Two hosts, one board each, the same two suites: a release that should go."""
    a = write_run(root, "run-a", {"rk3588-a": board()},
                  [case("rk3588-a", "test_versions"),
                   case("rk3588-a", "test_models", lat=[latency("mobilenet", [10.0 + i * 0.01 for i in range(20)],
                                                                {"mean_ms": 20.0})])])
    b = write_run(root, "run-b", {"rk3566-b": board("rk3566")}, host="lab-b",
                  tests=[case("rk3566-b", "test_versions"), case("rk3566-b", "test_models")])
    return [a, b]


def npu_hil(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *map(str, args)], check=False, cwd=cwd,
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})


