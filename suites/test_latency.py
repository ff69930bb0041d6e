"""Latency, measured ON the board by the runner (manual 4.2.2), first run reported apart (4.2.3), judged against
the package's per-chip budgets (per precision: each package has one, 4.2.15) and against the latency baseline
kept next to the goldens (a regression must exceed both a relative tolerance and the baseline's own noise).

Percentiles are reported only where the run count can claim them (harness.npu.latency.MIN_SAMPLES).
"""

from __future__ import annotations

import json

import pytest

from harness.npu.latency import check_budget, regression
from harness.report.evidence import record_latency

BASELINE = "latency.json"


def _claimable(stats) -> str:
    parts = [f"mean {stats.mean:.3f} ms", f"stdev {stats.stdev:.3f}", f"min {stats.min:.3f}", f"max {stats.max:.3f}"]
    parts += [f"{name} {value:.3f} ms" for name, value in (("p50", stats.p50), ("p90", stats.p90), ("p99", stats.p99))
              if value is not None]
    return ", ".join(parts) + f" over {stats.count} runs"


def test_latency_within_budget_and_baseline(model_package, npu_run, golden_policy, latency_tolerance) -> None:
    run = npu_run(model_package)
    stats = run.stats
    npu = run.parsed.npu_ms  # the runtime's own figure (RKNN_QUERY_PERF_RUN), where the runner could ask for it
    own = f"; the runtime's own time: mean {sum(npu) / len(npu):.3f} ms" if npu else ""
    print(f"{model_package.name} on {run.board}: first run {run.first_run_ms} ms (apart); steady: "
          f"{_claimable(stats)}{own}")
    problems = []
    budget = model_package.budget(run.chip)
    if budget is not None:
        problems += [f"budget: {p}" for p in check_budget(stats, budget.limits())]
    baseline_file = model_package.golden_dir(run.chip) / BASELINE
    baseline = json.loads(baseline_file.read_text()) if baseline_file.is_file() and golden_policy != "regen" else None
    record_latency(run.board, model_package.name, run.chip, stats, budget.limits() if budget is not None else None,
                   baseline, precision=model_package.precision, tolerance=latency_tolerance)
    found = None
    if baseline is not None:
        found = regression(stats, baseline, latency_tolerance)
        if found:
            problems.append(found.message)
            if baseline.get("runner") not in (None, run.measured_by):  # figures of another program
                problems.append(f"the baseline was measured by {baseline['runner']}, this run by {run.measured_by}: "
                                f"if the runner changed on purpose, make a new baseline (--regen-goldens)")
    if golden_policy == "regen" or (golden_policy == "update" and (found or not baseline_file.is_file())):
        baseline_file.parent.mkdir(parents=True, exist_ok=True)
        baseline_file.write_text(json.dumps({**stats.to_dict(include_samples=True), "runner": run.measured_by,
                                             "board": run.board}, indent=2, sort_keys=True) + "\n")
        if golden_policy == "update":
            problems.append(f"latency baseline rewritten at {baseline_file}: review it")
    elif not baseline_file.is_file():
        problems.append(f"no latency baseline at {baseline_file}: create it with --regen-goldens")
    if problems:
        pytest.fail(f"{model_package.name} on {run.board} ({run.chip}, {model_package.precision}, {run.measured_by}): "
                    f"{_claimable(stats)}; first run {run.first_run_ms} ms\n" + "\n".join(problems), pytrace=False)
