"""What run.py reads from a runner's stdout/stderr: the simulated boards' captured outputs with lines cut,
swapped, repeated and numbers bent, and raw text, for every runner kind. The parse never raises; judging the
run (finished? latency stats?) raises only the project's errors (RunFailed, ConfigError)."""

from __future__ import annotations

import math
from pathlib import Path

from fuzzing import FUZZ, mutated_text
from hypothesis import given
from hypothesis import strategies as st

# The simulated boards' exact outputs, kept with the latency tests (one source for captured text).
from npu.test_latency_stats import (  # tests/ is on pythonpath (pyproject)
    BENCHMARK_HANG,
    BENCHMARK_RK3588,
    BENCHMARK_WRONG_TARGET,
    RUNNER_INIT_FAIL,
    RUNNER_RV1126,
)

from harness.errors import ConfigError
from harness.links.base import ShellResult
from harness.npu.latency import BenchmarkRun
from harness.npu.model_package import load_package
from harness.npu.run import ModelRun, RunFailed, _check_finished, parse_output

PACKAGE = load_package(Path(__file__).resolve().parents[2] / "suites" / "models" / "classifier")
CAPTURED = [BENCHMARK_HANG, BENCHMARK_RK3588, BENCHMARK_WRONG_TARGET, RUNNER_INIT_FAIL, RUNNER_RV1126]
RUNNERS = ["npu_hil_runner", "rknn_benchmark", "my_tool {model} {inputs} {loops}"]
LINE_EDITS = st.sampled_from(["iteration 0: 1e309 ms", "iteration 1: -5.000 ms", "first run: nan ms",
                              "   7: Elapse Time = 99999999999999999999999999999.9ms, FPS = x",
                              "output 99999999999999: d/o.npy shape=[1, 99999999999999999] dtype=",
                              "  index=1, dims=[" + "9" * 5000 + "], n_elems=, scale=inf", "rknn_init fail! ret=-999",
                              "E RKNN: RKNN_ERR_NOT_A_CODE", "Avg Time nanms, Avg FPS = -nan", "done", "Warmup ...",
                              "Begin perf ...", "npu-hil runner protocol 1", "Save output to ", "\r", "\x00"])


@st.composite
def outputs(draw) -> str:
    base = draw(st.sampled_from(CAPTURED))
    lines = base.splitlines()
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, len(lines)))
        op = draw(st.sampled_from(["insert", "delete", "swap"]))
        if op == "insert" or not lines:
            lines.insert(at, draw(LINE_EDITS | st.text(max_size=40)))
        elif op == "delete":
            del lines[min(at, len(lines) - 1)]
        else:
            i, j = min(at, len(lines) - 1), draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
    text = "\n".join(lines)
    return draw(mutated_text(text)) if draw(st.booleans()) else text


TEXTS = outputs() | st.text(max_size=300) | st.sampled_from(CAPTURED)


def finite(value: float | None) -> bool:
    return value is None or math.isfinite(value)


@FUZZ
@given(st.sampled_from(RUNNERS), TEXTS)
def test_parse_output_never_raises(runner: str, text: str) -> None:
    parsed = parse_output(runner, text)
    assert isinstance(parsed, BenchmarkRun)
    assert all(math.isfinite(v) for v in parsed.iterations_ms + parsed.warmup_ms)
    assert finite(parsed.first_run_ms) and finite(parsed.average_ms)


@FUZZ
@given(st.sampled_from(RUNNERS), TEXTS, st.text(max_size=40), st.integers(-1, 255))
def test_judging_a_run_raises_only_project_errors(runner: str, stdout: str, stderr: str, code: int) -> None:
    result = ShellResult("runner", stdout, stderr, code, 0.5, "fuzz")
    parsed = parse_output(runner, result.output)
    run = ModelRun(PACKAGE, "rv1126", "fuzz-board", runner, "runner", "/userdata/x/runs/1", result, parsed)
    try:
        _check_finished(run)
    except RunFailed as exc:
        assert exc.output == result.output and str(exc)
        return
    try:
        stats = run.stats
    except ConfigError:  # latency samples it cannot use (negative)
        return
    assert stats.count == len(parsed.iterations_ms) >= 1 and math.isfinite(stats.mean)
    assert isinstance(stats.to_dict(), dict)
