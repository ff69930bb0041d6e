"""Soak (manual 4.2.1): what leaks when the NPU runs for a long time.

* ``test_one_process_does_not_grow``: one long-lived process (our runner, whichever runner the package uses
  elsewhere) runs ``--soak-inferences`` inferences on one context; its open descriptors and resident memory,
  and rknn_server's, are sampled as it goes. Growth past this suite's limits (below) fails with the rate per
  1000 inferences.
* ``test_no_descriptor_growth``: ``--soak-runs`` runs, a new process each, while rknn_server's descriptors are
  counted; growth, or 'Too many open files', is a leak, with the package's own runner.
"""

from __future__ import annotations

import pytest

from harness.npu.soak import soak
from harness.npu.soak_process import soak_process

# What this lab tolerates over a soak: no descriptor may stay open, memory may grow by 1 MiB per 1000 inferences
pytestmark = pytest.mark.soak_limits(max_fd_growth=0, max_rss_kb_per_1k=1024)


def test_one_process_does_not_grow(board, model_package, npu_push, soak_inferences, soak_limits,
                                   npu_deadline) -> None:
    result = soak_process(board, model_package, inferences=soak_inferences, remote=npu_push(model_package),
                          limits=soak_limits, deadline_s=npu_deadline)
    for process, samples in result.samples.items():
        fds, kb, span = result.growth(process)
        print(f"{model_package.name}: {process}: {span} inferences, fds {samples[0].fds} -> {samples[-1].fds}, "
              f"VmRSS {samples[0].rss_kb} -> {samples[-1].rss_kb} kB")
    failures = result.failures()
    if failures:
        pytest.fail("\n".join(failures), pytrace=False)
    assert "self" in result.samples, "the runner printed no samples"


def test_no_descriptor_growth(board, model_package, npu_push, soak_runs, npu_deadline) -> None:
    result = soak(board, model_package, runs=soak_runs, remote=npu_push(model_package), deadline_s=npu_deadline)
    print(f"{model_package.name}: open fds of {result.process} per run: {result.fd_samples}; "
          f"means (ms): {[round(m, 3) for m in result.run_means_ms]}")
    if result.failure:
        pytest.fail(result.failure, pytrace=False)
    assert result.runs_done == soak_runs
