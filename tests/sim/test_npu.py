"""The simulated NPU through the board's own commands: rknn_benchmark and our runner under the board's python3.

Every test builds a real board root (busybox), a real gate on a loopback socket and the simulated kernel,
then runs the REAL board command with board_exec (unshare + chroot); outputs are compared with onnxruntime
run here on the same ONNX graph and input. Timing figures checked here are the board's printed ones (the
simulated NPU's deterministic model), never the host's wall clock.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from support.models import two_input_onnx
from support.npu_board import Board, classifier_board, onnxruntime_outputs

from harness.npu.rknn_file import pack_sim_model
from harness.npu.runner import npu_hil_runner
from harness.sim.kernel import SERVER_BASE_FDS

REPO_ROOT = Path(__file__).resolve().parents[2]
RKNN_DIR = REPO_ROOT / "tests" / "data" / "rknn"
RUNNER = Path(npu_hil_runner.__file__)

TENSOR = re.compile(r"^  index=(\d+), name=(\S+), n_dims=(\d+), dims=\[([\d, ]*)\], n_elems=(\d+), size=(\d+), "
                    r"fmt=(NHWC|NCHW|UNDEFINED), type=(INT8|FP16|FP32), qnt_type=(NONE|DFP|AFFINE), zp=(-?\d+), "
                    r"scale=(\d+\.\d{6})$")
RUN = re.compile(r"^\s*(\d+): Elapse Time = (\d+\.\d\d)ms, FPS = (\d+\.\d\d)$")
AVG = re.compile(r"^Avg Time (\d+\.\d\d)ms, Avg FPS = (\d+\.\d{3})$")


def parse_benchmark(stdout: bytes) -> dict:
    lines = stdout.decode().splitlines()
    warm, perf = lines.index("Warmup ..."), lines.index("Begin perf ...")
    runs = lambda part: [float(m.group(2)) for line in part if (m := RUN.match(line))]  # noqa: E731
    avg = next(m for line in lines if (m := AVG.match(line)))
    return {"lines": lines, "tensors": [TENSOR.match(line) for line in lines if line.startswith("  index=")],
            "warmup": runs(lines[warm:perf]), "perf": runs(lines[perf:]), "avg": float(avg.group(1))}


def benchmark(board: Board, args: str = "m.rknn in.npy 20") -> subprocess.CompletedProcess:
    return board.run(f"cd /userdata && rknn_benchmark {args}")


# ------------------------------------------------------------------------------------------------ rknn_benchmark
@pytest.mark.parametrize("chip", ["rk3588", "rv1126"])
def test_benchmark_prints_rockchip_format_and_outputs_match_onnxruntime(make_board, chip):
    board, onnx_bytes = classifier_board(make_board, chip)
    result = benchmark(board)
    assert result.returncode == 0, result.stderr
    report = parse_benchmark(result.stdout)
    lines = report["lines"]
    versions = board.ctx.profile.versions
    assert lines[0].startswith(f"rknn_api/rknnrt version: {versions.runtime} (")
    assert lines[0].endswith(f", driver version: {versions.driver}")
    assert re.fullmatch(r"total weight size: \d+, total internal size: \d+", lines[1])
    assert lines[2] == "model input num: 1, output num: 1"
    assert all(report["tensors"]) and len(report["tensors"]) == 2
    image, scores = report["tensors"]
    assert (image.group(2), image.group(4), image.group(7)) == ("images", "1, 16, 16, 3", "NHWC")
    assert (scores.group(2), scores.group(4), scores.group(5)) == ("scores", "1, 10", "10")
    assert len(report["warmup"]) == 5 and len(report["perf"]) == 20
    assert report["avg"] == pytest.approx(sum(report["perf"]) / 20, abs=0.011)  # warm-up excluded
    assert "Save output to rt_output0.npy" in lines

    image_nhwc = board.load("in.npy")
    expected = onnxruntime_outputs(onnx_bytes, {"images": image_nhwc.transpose(0, 3, 1, 2)})[0]
    got = board.load("rt_output0.npy")
    assert got.dtype == np.float32 and got.shape == (1, 10)
    assert np.allclose(got, expected, atol=1e-5)
    top = lines[lines.index("---- Top5 ----") + 1:][:5]
    assert [int(line.split(" - ")[1]) for line in top] == list(np.argsort(-expected.ravel(), kind="stable")[:5])


def test_benchmark_two_inputs_and_default_zero_input(make_board):
    board = make_board("rk3588")
    onnx_bytes = two_input_onnx()
    board.put("two.rknn", pack_sim_model(onnx_bytes, target_platforms=["rk3588"], toolkit_version="2.3.2"))
    a, b = (np.random.default_rng(s).standard_normal((1, 32)).astype(np.float32) for s in (2, 3))
    board.save("a.npy", a)
    board.save("b.npy", b)
    result = benchmark(board, "two.rknn a.npy#b.npy 2")
    assert result.returncode == 0, result.stderr
    assert np.allclose(board.load("rt_output0.npy"), onnxruntime_outputs(onnx_bytes, {"a": a, "b": b})[0], atol=1e-5)

    result = benchmark(board, "two.rknn a.npy 2")  # one file for two inputs: the tool's own complaint
    assert b"input missing!, need input number: 2, only get 1 inputs" in result.stdout
    assert result.returncode != 0

    assert benchmark(board, "two.rknn").returncode == 0  # no input file: zeros, as the real tool feeds
    assert np.allclose(board.load("rt_output0.npy"), 0.0)


def test_benchmark_times_are_deterministic_per_model_and_chip_and_first_run_is_slower(make_board):
    fast, _ = classifier_board(make_board, "rk3588", platforms=["rk3588", "rv1126"])
    slow = make_board("rv1126")
    slow.put("m.rknn", (fast.root / "userdata" / "m.rknn").read_bytes())
    slow.put("in.npy", (fast.root / "userdata" / "in.npy").read_bytes())
    first, second = (parse_benchmark(benchmark(fast).stdout) for _ in range(2))
    assert first["perf"] == second["perf"] and first["warmup"] == second["warmup"]
    perf = np.array(first["perf"])
    assert perf.std() > 0 and perf.std() / perf.mean() < 0.1  # seeded noise: a few percent
    assert first["warmup"][0] >= 3 * np.median(perf)  # the lazy first run (manual 4.2.3)
    assert max(first["warmup"][1:]) < 2 * np.median(perf)
    on_rv1126 = parse_benchmark(benchmark(slow).stdout)
    ratio = on_rv1126["avg"] / first["avg"]  # npu_speed 1.0 vs 3.0 in the profiles
    assert 2.5 < ratio < 3.5


def test_real_rockchip_model_fails_to_init_with_model_invalid(make_board):
    board = make_board("rk3588")
    board.put("real.rknn", (RKNN_DIR / "npu2_multi_rk3588_old.rknn").read_bytes())  # declares rk3588
    result = benchmark(board, "real.rknn")
    assert result.returncode != 0
    assert b"rknn_init fail! ret=-6" in result.stdout
    assert b"E RKNN: " in result.stderr and b"Invalid RKNN format" in result.stderr

    rv1126 = make_board("rv1126")
    rv1126.put("real.rknn", (RKNN_DIR / "npu1_mobilenet_uint8_rv1126.rknn").read_bytes())
    result = benchmark(rv1126, "real.rknn")
    assert result.returncode != 0 and b"rknn_init fail! ret=-6" in result.stdout


def test_wrong_target_platform_fails_with_minus_13(make_board):
    board, _ = classifier_board(make_board, "rk3588", platforms=["rk3566"])
    result = benchmark(board)
    assert result.returncode != 0
    assert b"rknn_init fail! ret=-13" in result.stdout
    assert b"target platform[0] is RK3566, while current platform is RK3588" in result.stderr
    board.put("real.rknn", (RKNN_DIR / "npu2_multi_rk3566.rknn").read_bytes())  # the trailer is read first
    assert b"ret=-13" in benchmark(board, "real.rknn").stdout


def test_missing_model_and_bad_input_shape_fail(make_board):
    board, _ = classifier_board(make_board, "rk3588")
    result = benchmark(board, "absent.rknn")
    assert result.returncode != 0 and b"rknn_init fail! ret=-1" in result.stdout
    board.save("bad.npy", np.zeros((1, 3, 16, 16), np.float32))  # NCHW given where NHWC is expected
    result = benchmark(board, "m.rknn bad.npy 1")
    assert result.returncode != 0 and b"npy shape match failed!, (3, 16, 16) != (16, 16, 3)" in result.stdout


# ------------------------------------------------------------------------------------------------ faults
def test_npu_hang_blocks_the_run_and_is_in_dmesg(make_board):
    board, _ = classifier_board(make_board, "rk3588")
    assert benchmark(board, "m.rknn in.npy 1").returncode == 0  # model loaded and cached: only the hang is slow
    board.ctx.faults.set("npu-hang")
    with pytest.raises(subprocess.TimeoutExpired):
        board.run("cd /userdata && rknn_benchmark m.rknn in.npy 1", timeout=3)  # a 25 s hang cannot finish
    assert b"RKNPU: job timeout" in board.run("dmesg").stdout  # the driver's watchdog saw it meanwhile


def test_npu_hang_returns_zeros_and_logs_the_driver_timeout(make_board):
    for chip, line in (("rk3588", b"RKNPU: job timeout"), ("rv1126", b"[galcore]: GPU[0] hang, automatic recovery.")):
        board, _ = classifier_board(make_board, chip, hang_seconds=0.3)
        board.ctx.faults.set("npu-hang")
        result = benchmark(board, "m.rknn in.npy 1")
        assert result.returncode == 0
        assert np.all(board.load("rt_output0.npy") == 0)
        assert all(ms >= 300 for ms in parse_benchmark(result.stdout)["perf"])
        assert line in board.run("dmesg").stdout
        if chip == "rk3588":
            assert b"failed to submit!" in result.stderr


def server_pid(board: Board) -> str:
    script = 'for p in /proc/[0-9]*; do [ "$(cat $p/comm)" = rknn_server ] && echo ${p#/proc/}; done'
    return board.run(script).stdout.decode().strip()


def test_fd_leak_grows_rknn_server_fds_until_too_many_open_files(make_board):
    board, _ = classifier_board(make_board, "rk3588")
    pid = server_pid(board)
    count = lambda: int(board.run(f"ls /proc/{pid}/fd | wc -l").stdout)  # noqa: E731
    assert count() == SERVER_BASE_FDS
    board.ctx.faults.set("fd-leak=4")
    counts, result = [count()], None
    for _ in range(10):
        result = benchmark(board, "m.rknn in.npy 1")  # 5 warm-ups + 1 run: 6 runs, 24 descriptors
        counts.append(count())
        if result.returncode != 0:
            break
    assert result is not None and result.returncode != 0
    assert b"Too many open files" in result.stderr and b"rknn run error" in result.stdout
    growth = np.diff(counts[:-1])
    assert len(growth) >= 3 and set(growth) == {24}
    board.ctx.faults.clear("fd-leak")


def test_wrong_output_is_silent_but_wrong(make_board):
    board, onnx_bytes = classifier_board(make_board, "rk3588")
    board.ctx.faults.set("wrong-output")
    result = benchmark(board, "m.rknn in.npy 2")
    assert result.returncode == 0 and result.stderr == b""
    expected = onnxruntime_outputs(onnx_bytes, {"images": board.load("in.npy").transpose(0, 3, 1, 2)})[0]
    assert not np.allclose(board.load("rt_output0.npy"), expected, atol=1e-2)


def test_slow_npu_multiplies_latency(make_board):
    board, _ = classifier_board(make_board, "rk3588")
    normal = parse_benchmark(benchmark(board, "m.rknn in.npy 10").stdout)["avg"]
    board.ctx.faults.set("slow-npu=4")
    slow = parse_benchmark(benchmark(board, "m.rknn in.npy 10").stdout)["avg"]
    assert slow / normal == pytest.approx(4.0, rel=0.05)


# ------------------------------------------------------------------------------------------------ versions
def test_rknpu1_runtime_driver_mismatch_fails_init(make_board):
    board, _ = classifier_board(make_board, "rv1126", driver="6.4.3.5.293908")  # 1.6.0's galcore, 1.7.1 runtime
    result = benchmark(board, "m.rknn in.npy 1")
    assert result.returncode != 0 and b"rknn_init fail! ret=-3" in result.stdout
    assert b"driver open fail!" in result.stderr
    dmesg = board.run("dmesg").stdout
    assert b"HAL user version 6.4.6.5.351518" in dmesg and b"HAL kernel version 6.4.3.5.293908" in dmesg


def test_rknpu2_old_driver_warns_but_runs_and_old_runtime_refuses_v6(make_board):
    board, _ = classifier_board(make_board, "rk3588", driver="0.8.2")
    result = benchmark(board, "m.rknn in.npy 1")
    assert result.returncode == 0
    assert b"Current driver version: 0.8.2, recommend to upgrade the driver to the new version: >= " in result.stderr
    old, _ = classifier_board(make_board, "rk3588", runtime="1.5.0")
    result = benchmark(old, "m.rknn in.npy 1")
    assert result.returncode != 0 and b"Invalid RKNN model version 6" in result.stderr
    assert result.stdout.startswith(b"rknn_init fail! ret=-1")


# ------------------------------------------------------------------------------------------------ our runner
RUNNER_LINE = {key: re.compile("^" + re.sub(r"\\\{(\w+)(?::[^}]*)?\\\}", r"(?P<\1>.+?)", re.escape(fmt)) + "$")
               for key, fmt in npu_hil_runner.FORMATS.items()}


@pytest.mark.parametrize("chip", ["rk3588", "rv1126"])
def test_runner_under_board_python3_times_on_board_and_writes_outputs(make_board, chip):
    board, onnx_bytes = classifier_board(make_board, chip)
    board.put("runner.py", RUNNER.read_bytes())
    result = board.run("cd /userdata && python3 runner.py m.rknn --input in.npy --loops 4 --warmup 2 --out res")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode().splitlines()
    assert lines[0] == "npu-hil runner protocol 1" and lines[-1] == "done"
    parsed = {key: [m.groupdict() for line in lines if (m := pattern.match(line))]
              for key, pattern in RUNNER_LINE.items()}
    iterations = [float(d["ms"]) for d in parsed["iteration"]]
    warmups = [float(d["ms"]) for d in parsed["warmup"]]
    assert len(iterations) == 4 and len(warmups) == 2
    assert float(parsed["first"][0]["ms"]) == warmups[0] > 3 * max(iterations)
    assert float(parsed["average"][0]["ms"]) == pytest.approx(sum(iterations) / 4, abs=1e-3)
    assert parsed["output"][0]["path"] == "res/output_0.npy" and parsed["output"][0]["shape"] == "1, 10"
    expected = onnxruntime_outputs(onnx_bytes, {"images": board.load("in.npy").transpose(0, 3, 1, 2)})[0]
    assert np.allclose(board.load("res/output_0.npy"), expected, atol=1e-5)


def test_runner_reports_init_failure_and_bad_arguments(make_board):
    board, _ = classifier_board(make_board, "rk3588", platforms=["rk3566"])
    board.put("runner.py", RUNNER.read_bytes())
    result = board.run("cd /userdata && python3 runner.py m.rknn --input in.npy --loops 2 --warmup 0 --out r")
    assert result.returncode == npu_hil_runner.EXIT_INIT
    assert b"RKNN_ERR_TARGET_PLATFORM_UNMATCH" in result.stderr and b"error: init_runtime failed" in result.stderr
    result = board.run("cd /userdata && python3 runner.py m.rknn --input in.npy --loops 0 --warmup 0 --out r")
    assert result.returncode == npu_hil_runner.EXIT_USAGE and result.stderr.startswith(b"error: ")


def test_board_python3_refuses_anything_but_the_runner(make_board):
    board = make_board("rk3588")
    board.put("other.py", b"print('hello')\n")
    for command in ("python3 /userdata/other.py", "python3 -c 'print(1)'", "python3"):
        result = board.run(command)
        assert result.returncode == 127
        assert result.stderr.strip() == b"python3: this simulated board only runs the npu-hil runner"


def test_board_python3_answers_an_import_probe_as_its_interpreter_would(make_board):
    board = make_board("rv1126")
    assert board.run("python3 -c 'import numpy, rknnlite.api'").returncode == 0
    missing = board.run("python3 -c 'import numpy, cv2'")
    assert missing.returncode == 1 and missing.stderr.splitlines()[-1] == b"ModuleNotFoundError: No module named 'cv2'"


def test_runner_is_standalone_and_says_when_rknnlite_is_missing(tmp_path):
    """On a host without rknnlite, in isolated mode (no harness on the path): one error line, exit 4."""
    script = tmp_path / "npu_hil_runner.py"
    shutil.copy(RUNNER, script)
    result = subprocess.run([sys.executable, "-I", str(script), "m.rknn", "--input", "x.npy", "--loops", "1",
                             "--warmup", "0", "--out", "o"], cwd=tmp_path, capture_output=True, timeout=60)
    assert result.returncode == npu_hil_runner.EXIT_INIT
    assert result.stderr.startswith(b"error: RKNN Toolkit Lite is not installed") and result.stdout == b""


def test_runner_nchw_inputs_core_masks_and_full_userdata(make_board):
    board, onnx_bytes = classifier_board(make_board, "rk3588")
    board.put("runner.py", RUNNER.read_bytes())
    board.save("nchw.npy", board.load("in.npy").transpose(0, 3, 1, 2))
    base = "cd /userdata && python3 runner.py m.rknn --input nchw.npy --loops 3 --warmup 1 --data-format nchw"
    one_core = board.run(base + " --core-mask 1 --out a")
    three_cores = board.run(base + " --core-mask 7 --out b")
    assert one_core.returncode == 0 and three_cores.returncode == 0, three_cores.stderr
    expected = onnxruntime_outputs(onnx_bytes, {"images": board.load("nchw.npy")})[0]
    assert np.allclose(board.load("b/output_0.npy"), expected, atol=1e-5)
    board.ctx.faults.set("userdata-full")
    result = board.run(base + " --out c")
    assert result.returncode == npu_hil_runner.EXIT_OUTPUT and b"No space left on device" in result.stderr
