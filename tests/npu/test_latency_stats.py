"""Latency statistics, budgets, regressions and the parsers of rknn_benchmark's and our runner's output.

The parser fixtures are the simulated boards' exact output: captured from harness/sim (rknn_benchmark and
tests' runner under the board's python3, run through harness.sim.board_exec as tests/sim/test_npu.py does) on
2026-11-23; ``test_parsers_on_live_simulator_output`` re-runs both tools on a simulated board each time.
"""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.errors import ConfigError, ProductError
from harness.npu.latency import (
    MIN_SAMPLES,
    LatencyStats,
    Tolerance,
    check_budget,
    enforce_budget,
    parse_rknn_benchmark,
    parse_runner_output,
    regression,
)
from harness.npu.rknn_file import pack_sim_model
from harness.npu.runner import npu_hil_runner

# `cd /userdata && rknn_benchmark m.rknn in.npy 3` on sim rk3588 (stdout)
BENCHMARK_RK3588 = """\
rknn_api/rknnrt version: 2.3.2 (429f97ae6b@2025-04-09T09:09:27), driver version: 0.9.8
total weight size: 592, total internal size: 8224
model input num: 1, output num: 1
input tensors:
  index=0, name=images, n_dims=4, dims=[1, 16, 16, 3], n_elems=768, size=1536, fmt=NHWC, type=FP16, \
qnt_type=AFFINE, zp=0, scale=1.000000
output tensors:
  index=0, name=scores, n_dims=2, dims=[1, 10], n_elems=10, size=20, fmt=UNDEFINED, type=FP16, \
qnt_type=AFFINE, zp=0, scale=1.000000
Loading in.npy
npy data type:float32
Warmup ...
   0: Elapse Time = 5.43ms, FPS = 184.30
   1: Elapse Time = 0.97ms, FPS = 1026.69
   2: Elapse Time = 0.98ms, FPS = 1021.45
   3: Elapse Time = 0.96ms, FPS = 1036.27
   4: Elapse Time = 0.99ms, FPS = 1013.17
Begin perf ...
   0: Elapse Time = 1.03ms, FPS = 970.87
   1: Elapse Time = 0.99ms, FPS = 1007.05
   2: Elapse Time = 0.98ms, FPS = 1017.29

Avg Time 1.00ms, Avg FPS = 998.004

Save output to rt_output0.npy
---- Top5 ----
5.870916 - 3
5.255064 - 9
2.970433 - 4
2.586831 - 6
-0.901044 - 7
"""
# a model built for rk1808 on sim rk3566: stdout, then stderr
BENCHMARK_WRONG_TARGET = """\
rknn_init fail! ret=-13
E RKNN: [23:16:28.348] rknn model target platform[0] is RK1808, while current platform is RK3566
E RKNN: [23:16:28.348] rknn_init, load model failed!
"""
# sim rk3588 with the npu-hang fault: the perf part of stdout, then the first stderr lines
BENCHMARK_HANG = """\
Begin perf ...
   0: Elapse Time = 301.03ms, FPS = 3.32

Avg Time 301.03ms, Avg FPS = 3.322

Save output to rt_output0.npy
E RKNN: [23:16:24.444] failed to submit!, op id: 1, op name: Conv:scores, flags: 0x5, task start: 0, \
task number: 1, run task counter: 0, int status: 0
"""
# `RKNN_LOG_LEVEL=3 python3 runner.py m.rknn --input in.npy --loops 3 --warmup 2 --out res` on sim rv1126
RUNNER_RV1126 = """\
npu-hil runner protocol 1
model: m.rknn
first run: 24.216 ms
warmup 0: 24.216 ms
warmup 1: 2.889 ms
iteration 0: 2.901 ms
iteration 1: 2.998 ms
iteration 2: 2.977 ms
average: 2.958 ms over 3 iterations
output 0: res/output_0.npy shape=[1, 10] dtype=float32
done
I RKNNAPI: ==============================================
I RKNNAPI: RKNN VERSION:
I RKNNAPI:   API: 1.7.1 (ccb93f1 build: 2021-11-16 10:48:49 base: 1131)
I RKNNAPI:   DRV: 1.7.1 (ccb93f1 build: 2021-11-16 10:48:49 base: 1131)
I RKNNAPI: ==============================================
I RKNNAPI: RKNN Model Information: toolkit version: 2.3.2, target platform: rv1126
"""
# the runner on sim rk3566 with a model built for rk1808 (stderr; exit 4)
RUNNER_INIT_FAIL = """\
I RKNN: [23:16:28.401] RKNN Runtime Information, librknnrt version: 1.6.0 (9a7b5d24c@2023-12-13T17:31:11)
I RKNN: [23:16:28.401] RKNN Driver Information, version: 0.9.2
E RKNN: [23:16:28.402] rknn model target platform[0] is RK1808, while current platform is RK3566
E RKNN: [23:16:28.402] rknn_init, load model failed!
E Catch exception when init runtime!
Exception: RKNN init failed. error code: RKNN_ERR_TARGET_PLATFORM_UNMATCH
error: init_runtime failed: ret=-1
"""


# ------------------------------------------------------------------------------------------------ statistics
def test_stats_match_numpy_on_known_data():
    samples = [float(v) for v in range(1, 1001)]  # 1..1000 ms, shuffled
    rng = np.random.default_rng(3)
    rng.shuffle(samples)
    stats = LatencyStats.from_samples(samples, first_run_ms=40.0)
    assert (stats.count, stats.min, stats.max, stats.first_run_ms) == (1000, 1.0, 1000.0, 40.0)
    assert stats.mean == pytest.approx(500.5)
    assert stats.stdev == pytest.approx(float(np.std(samples, ddof=1)))
    assert (stats.p50, stats.p90, stats.p99) == (500.0, 900.0, 990.0)  # nearest rank: observed samples
    for name in ("p50", "p90", "p99"):
        assert getattr(stats, name) == np.percentile(samples, int(name[1:]), method="inverted_cdf")
    record = stats.to_dict()
    assert record["p99_ms"] == 990.0 and "samples_ms" not in record
    assert len(stats.to_dict(include_samples=True)["samples_ms"]) == 1000


def test_percentiles_are_claimed_only_with_enough_samples():
    assert MIN_SAMPLES == {"p50": 10, "p90": 64, "p99": 662}
    at = lambda n: LatencyStats.from_samples([1.0 + i / 100 for i in range(n)])
    assert at(9).p50 is None and at(10).p50 is not None
    assert at(63).p90 is None and at(64).p90 is not None
    assert at(661).p99 is None and at(662).p99 is not None
    one = at(1)
    assert (one.stdev, one.p50, one.mean) == (0.0, None, 1.0)


@pytest.mark.parametrize("bad", [[], [1.0, float("nan")], [1.0, -2.0], [float("inf")]])
def test_bad_samples_are_config_errors(bad):
    with pytest.raises(ConfigError):
        LatencyStats.from_samples(bad)


# ------------------------------------------------------------------------------------------------ budgets
def test_budget_passes_and_names_what_is_over():
    stats = LatencyStats.from_samples([8.0] * 60 + [9.0] * 4, first_run_ms=30.0)  # 64 runs
    assert check_budget(stats, {"mean_ms": 9, "p90_ms": 8.5, "max_ms": 10, "first_run_ms": 50}) == []
    problems = check_budget(stats, {"mean_ms": 8.0, "p90_ms": 7.5, "first_run_ms": 25})
    assert len(problems) == 3
    assert problems[0] == "mean 8.062 ms exceeds the budget of 8 ms (+0.8 %, 64 runs)"
    assert problems[1].startswith("p90 8.000 ms exceeds the budget of 7.5 ms")
    assert problems[2].startswith("first_run 30.000 ms exceeds")


def test_budget_on_an_unclaimable_percentile_is_a_problem_not_a_pass():
    stats = LatencyStats.from_samples([1.0] * 63)
    problems = check_budget(stats, {"p90_ms": 100, "p99_ms": 100, "p50_ms": 100})
    assert problems == ["p90 budget of 100 ms cannot be claimed from 63 runs: run at least 64 iterations",
                        "p99 budget of 100 ms cannot be claimed from 63 runs: run at least 662 iterations"]


def test_enforce_budget_raises_by_whose_fault_it_is():
    stats = LatencyStats.from_samples([5.0] * 20)
    enforce_budget(stats, {"mean_ms": 6, "p50_ms": 6})
    with pytest.raises(ProductError, match="mean 5.000 ms exceeds the budget of 4 ms"):
        enforce_budget(stats, {"mean_ms": 4})
    with pytest.raises(ConfigError, match="run at least 64 iterations"):
        enforce_budget(stats, {"mean_ms": 4, "p90_ms": 6})  # a budget that cannot be judged comes first


def test_budget_keys_and_values_are_checked():
    stats = LatencyStats.from_samples([1.0] * 10)
    problems = check_budget(stats, {"p95_ms": 3, "mean_ms": "fast", "first_run_ms": 5})
    assert "unknown latency budget 'p95_ms'" in problems[0]
    assert "must be a number" in problems[1]
    assert "no first run" in problems[2]


# ------------------------------------------------------------------------------------------------ regressions
def noisy(mean: float, spread: float, n: int = 200, seed: int = 0) -> LatencyStats:
    rng = np.random.default_rng(seed)
    return LatencyStats.from_samples(list(np.clip(rng.normal(mean, spread, n), 0.01, None)))


def test_small_change_within_noise_passes():
    assert regression(noisy(10.5, 0.2, seed=1), noisy(10.0, 0.2)) is None  # +5 % < rel_tol


def test_large_change_outside_spread_fails_with_numbers():
    found = regression(noisy(13.0, 0.2, seed=1), noisy(10.0, 0.2))
    assert found is not None and found.change_pct == pytest.approx(30, abs=1.5)
    assert f"{found.current_mean:.3f}" in found.message and f"{found.baseline_mean:.3f} ± " in found.message
    assert f"{found.change_pct:+.1f} %" in found.message


def test_large_change_with_huge_baseline_spread_passes():
    baseline = {"mean_ms": 10.0, "stdev_ms": 2.0, "count": 100}
    current = LatencyStats.from_samples([13.0] * 100)
    assert regression(current, baseline) is None  # 13 < 10 + 3 * 2
    assert regression(current, {"mean_ms": 10.0, "stdev_ms": 0.5}) is not None


def test_baseline_samples_give_a_robust_spread():
    steady = [10.0 + 0.01 * (i % 5) for i in range(95)]
    baseline = {"mean_ms": 10.0, "stdev_ms": 5.0, "samples_ms": steady + [60.0] * 5}  # five outliers
    found = regression(LatencyStats.from_samples([14.0] * 50), baseline, Tolerance(0.10, 3.0))
    assert found is not None and "MAD" in found.message  # stdev_ms=5 would have hidden it; the MAD does not


def test_faster_is_never_a_regression_and_bad_baselines_are_config_errors():
    assert regression(noisy(5.0, 0.1), noisy(10.0, 0.1)) is None
    with pytest.raises(ConfigError):
        regression(noisy(5.0, 0.1), {"stdev_ms": 1})
    with pytest.raises(ConfigError):
        regression(noisy(5.0, 0.1), {"mean_ms": 0})


# ------------------------------------------------------------------------------------------------ parsers
def test_rknn_benchmark_output_from_the_simulator():
    run = parse_rknn_benchmark(BENCHMARK_RK3588)
    assert run.iterations_ms == [1.03, 0.99, 0.98] and run.warmup_ms == [5.43, 0.97, 0.98, 0.96, 0.99]
    assert run.first_run_ms == 5.43 and run.average_ms == 1.00 and run.average_fps == 998.004
    assert run.outputs == ["rt_output0.npy"] and run.complete and run.errors == []
    assert (run.runtime_version, run.driver_version) == ("2.3.2 (429f97ae6b@2025-04-09T09:09:27)", "0.9.8")
    inp, out = run.tensors
    assert (inp.io, inp.name, inp.dims, inp.fmt, inp.type, inp.qnt_type, inp.scale) == \
        ("input", "images", (1, 16, 16, 3), "NHWC", "FP16", "AFFINE", 1.0)
    assert (out.io, out.name, out.dims, out.n_elems, out.size) == ("output", "scores", (1, 10), 10, 20)
    stats = run.stats()
    assert stats.count == 3 and stats.first_run_ms == 5.43 and stats.mean == pytest.approx(1.0)


def test_rknn_benchmark_errors_carry_the_rknn_code():
    run = parse_rknn_benchmark(BENCHMARK_WRONG_TARGET)
    assert not run.complete and run.iterations_ms == [] and run.error_code == -13
    assert run.errors[0].name == "RKNN_ERR_TARGET_PLATFORM_UNMATCH" and len(run.errors) == 3
    assert parse_rknn_benchmark("rknn run error -5").errors[0].name == "RKNN_ERR_PARAM_INVALID"
    hang = parse_rknn_benchmark(BENCHMARK_HANG)
    assert hang.iterations_ms == [301.03] and "failed to submit!" in hang.errors[0].line


def test_runner_output_from_the_simulator():
    run = parse_runner_output(RUNNER_RV1126)
    assert run.iterations_ms == [2.901, 2.998, 2.977] and run.warmup_ms == [24.216, 2.889]
    assert run.first_run_ms == 24.216 and run.average_ms == 2.958 and run.complete
    assert run.outputs == ["res/output_0.npy"] and run.tensors[0].dims == (1, 10)
    assert run.runtime_version == "1.7.1 (ccb93f1 build: 2021-11-16 10:48:49 base: 1131)"
    assert "target platform: rv1126" in run.model_info


def test_runner_init_failure():
    run = parse_runner_output(RUNNER_INIT_FAIL)
    assert not run.complete and run.error_code == -13 and run.iterations_ms == []
    assert (run.runtime_version, run.driver_version) == ("1.6.0 (9a7b5d24c@2023-12-13T17:31:11)", "0.9.2")
    assert run.errors[-1].line == "error: init_runtime failed: ret=-1" and run.errors[-1].code == -1


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_parsers_never_raise_on_any_text(text):
    for parse in (parse_rknn_benchmark, parse_runner_output):
        run = parse(text)
        assert all(isinstance(v, float) for v in run.iterations_ms)


LINES = st.sampled_from((BENCHMARK_RK3588 + BENCHMARK_WRONG_TARGET + RUNNER_RV1126 + RUNNER_INIT_FAIL).splitlines()
                        + ["iteration 1: 1e999 ms", "   7: Elapse Time = 99999999999999999999999999.9ms, FPS = x",
                           "  index=99999999, dims=[", "output 2:  shape=[] dtype=", "ret=-99999", "first run: ms"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(LINES, st.text(max_size=40)), max_size=40), st.randoms())
def test_parsers_never_raise_on_shuffled_and_mutated_real_lines(lines, rnd):
    text = "\n".join(line[: rnd.randint(0, len(line))] if rnd.random() < 0.2 else line for line in lines)
    for parse in (parse_rknn_benchmark, parse_runner_output):
        run = parse(text)
        assert all(np.isfinite(v) for v in run.iterations_ms + run.warmup_ms)


# ------------------------------------------------------------------------------------------------ live simulator
def test_parsers_on_live_simulator_output(tmp_path):
    """Run rknn_benchmark and our runner on a simulated rk3588 (busybox board root, real gate on loopback)."""
    onnx_module = pytest.importorskip("onnx")
    from harness.sim import board_exec, profile, rootfs
    from harness.sim.context import BoardContext
    from harness.sim.faults import FaultSet
    from harness.sim.gate import Gate
    from harness.sim.kernel import Kernel
    from harness.sim.npu import SimNpu

    prof = profile.load("rk3588")
    root = rootfs.build(tmp_path / "root", prof)
    (tmp_path / "state").mkdir()
    ctx = BoardContext("rk3588", prof, root, tmp_path / "state", FaultSet(tmp_path / "state"))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    gate = Gate(listener)
    gate.start()
    try:
        kernel = Kernel(ctx)
        kernel.populate(driver_version=prof.versions.driver, gate_address=gate.address)
        kernel.register(gate)
        kernel.start_server()
        SimNpu(ctx).register(gate)
        userdata = root / "userdata"
        (userdata / "m.rknn").write_bytes(pack_sim_model(_matmul_onnx(onnx_module), target_platforms=["rk3588"],
                                                         toolkit_version="2.3.2"))
        np.save(userdata / "in.npy", np.ones((1, 32), np.float32))
        (userdata / "runner.py").write_bytes(Path(npu_hil_runner.__file__).read_bytes())
        bench = board_exec.run(root, "cd /userdata && rknn_benchmark m.rknn in.npy 12", timeout=60)
        runner = board_exec.run(root, "cd /userdata && python3 runner.py m.rknn --input in.npy --loops 12 "
                                      "--warmup 3 --out res", timeout=60)
    finally:
        gate.stop()
    assert bench.returncode == 0 and runner.returncode == 0, (bench.stderr, runner.stderr)
    b = parse_rknn_benchmark(bench.stdout.decode() + bench.stderr.decode())
    r = parse_runner_output(runner.stdout.decode() + runner.stderr.decode())
    assert len(b.iterations_ms) == 12 and len(b.warmup_ms) == 5 and b.complete
    assert b.average_ms == pytest.approx(np.mean(b.iterations_ms), abs=0.006)
    assert len(r.iterations_ms) == 12 and len(r.warmup_ms) == 3 and r.complete
    assert r.first_run_ms == r.warmup_ms[0] and r.first_run_ms > max(r.iterations_ms)
    assert r.outputs == ["res/output_0.npy"] and r.tensors[0].dims == (1, 4)
    assert b.runtime_version == prof.versions.runtime or b.runtime_version.startswith(prof.versions.runtime)
    stats = r.stats()
    assert stats.p50 is not None and stats.p90 is None  # 12 runs: a median, no p90 claim


def _matmul_onnx(onnx_module) -> bytes:
    helper, numpy_helper, tensor = onnx_module.helper, onnx_module.numpy_helper, onnx_module.TensorProto
    weights = numpy_helper.from_array(np.random.default_rng(1).standard_normal((32, 4)).astype(np.float32), "M")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "M"], ["y"])], "mm",
                              [helper.make_tensor_value_info("x", tensor.FLOAT, [1, 32])],
                              [helper.make_tensor_value_info("y", tensor.FLOAT, [1, 4])], [weights])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


def test_tolerance_is_written_as_percent_and_sigmas_and_bad_text_is_one_line():
    assert Tolerance.parse("10%,3sigma") == Tolerance(0.10, 3.0)
    assert Tolerance.parse("3sigma, 10%") == Tolerance(0.10, 3.0)
    assert Tolerance.parse("5%") == Tolerance(0.05, Tolerance().k_sigma)
    assert Tolerance.parse(str(Tolerance(0.125, 2.5))) == Tolerance(0.125, 2.5)
    for bad in ("", "10", "ten%", "10%,3", "-5%", "10%,3sigma,4sigma", "nan%"):
        with pytest.raises(ConfigError, match="latency tolerance"):
            Tolerance.parse(bad)


def test_the_tolerance_decides():
    slow = LatencyStats.from_samples([11.5] * 50)  # +15 %
    base = {"mean_ms": 10.0, "stdev_ms": 0.1}
    assert regression(slow, base, Tolerance(0.10, 3.0)) is not None
    assert regression(slow, base, Tolerance(0.20, 3.0)) is None
    assert regression(slow, base, Tolerance(0.10, 20.0)) is None  # 10 + 20 * 0.1 = 12 ms
