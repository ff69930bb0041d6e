"""Soak (manual 4.2.1): many runs of each model while the runtime process's open file descriptors are counted;
growth, or 'Too many open files', is a leak. ``--soak-runs N`` sets the length (a lab runs thousands)."""

from __future__ import annotations

import pytest

from harness.npu.soak import soak


def test_no_descriptor_growth(board, model_package, npu_push, soak_runs, npu_deadline) -> None:
    result = soak(board, model_package, runs=soak_runs, remote=npu_push(model_package), deadline_s=npu_deadline)
    print(f"{model_package.name}: open fds of {result.process} per run: {result.fd_samples}; "
          f"means (ms): {[round(m, 3) for m in result.run_means_ms]}")
    if result.failure:
        pytest.fail(result.failure, pytrace=False)
    assert result.runs_done == soak_runs
