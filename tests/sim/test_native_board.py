"""C programs on the simulated board: our native runner (built for the board's machine, run under qemu-user by
the simulated kernel's loader) on the board's runtime library (an ARM stand-in that forwards each rknn_* call to
the simulated NPU). Outputs are compared with onnxruntime run here; failures must carry the runtime's own code
and log line, and the harness's diagnosis must name the manual's section for them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from support.npu_board import Board, classifier_board, onnxruntime_outputs

from harness.npu.diagnose import diagnose
from harness.npu.latency import parse_runner_output
from harness.npu.runner.native_build import build

#: (profile, chip, the board's machine, its runtime ABI): the stock RV1126 image and an RKNPU2 board
BOARDS = [("rv1126-stock", "rv1126", "armhf", "rknpu1"), ("rk3588", "rk3588", "aarch64", "rknpu2")]
RUN = "cd /userdata && ./runner m.rknn --input in.npy --loops 3 --warmup 1 --out out"



@pytest.fixture(scope="module")
def runners(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    out = tmp_path_factory.mktemp("runners")
    return {(b.arch, b.abi): b.runner for arch in ("armhf", "aarch64") for b in build(out, arch=arch)}


def native_board(make_board, runners, case: tuple[str, str, str, str], **kwargs) -> tuple[Board, bytes]:
    name, chip, arch, abi = case
    board, onnx_bytes = classifier_board(make_board, name, platforms=[chip], **kwargs)
    (board.root / "userdata" / "out").mkdir()
    shutil.copy(runners[(arch, abi)], board.root / "userdata" / "runner")
    return board, onnx_bytes


@pytest.mark.parametrize("case", BOARDS, ids=[b[0] for b in BOARDS])
def test_native_runner_runs_the_model_on_the_simulated_npu(make_board, runners, case):
    board, onnx_bytes = native_board(make_board, runners, case)
    result = board.run(RUN)
    assert result.returncode == 0, result.stderr
    parsed = parse_runner_output(result.stdout.decode())
    assert parsed.complete and len(parsed.iterations_ms) == 3 and parsed.first_run_ms is not None
    # the runtime's own figure (RKNN_QUERY_PERF_RUN) for each timed run: the simulated NPU's time, the same for the
    # same runs of a fresh context (the host's load changes the wall clock around rknn_run, not this)
    assert len(parsed.npu_ms) == 3 and all(npu > 0 for npu in parsed.npu_ms)
    again = board.run(RUN)
    assert parse_runner_output(again.stdout.decode()).npu_ms == parsed.npu_ms
    image = board.load("in.npy")
    expected = onnxruntime_outputs(onnx_bytes, {"images": image.transpose(0, 3, 1, 2)})[0]
    assert np.allclose(board.load("out/output_0.npy"), expected, atol=1e-4)


def test_stock_image_has_no_python3(make_board):
    board = make_board("rv1126-stock")
    result = board.run("python3 -c 1")
    assert result.returncode == 127 and b"python3: not found" in result.stderr


@pytest.mark.parametrize("case", BOARDS, ids=[b[0] for b in BOARDS])
def test_corrupt_model_gives_the_runtimes_code_and_the_manuals_section(make_board, runners, case):
    board, _ = native_board(make_board, runners, case)
    board.put("m.rknn", (board.root / "userdata" / "m.rknn").read_bytes()[:100])
    result = board.run(RUN)
    text = result.stderr.decode()
    assert result.returncode == 4, text
    assert "Invalid RKNN format" in text and "ret=-6 (RKNN_ERR_MODEL_INVALID)" in text
    assert [d.section for d in diagnose(text)][:1] == ["4.1.2"]


@pytest.mark.parametrize("case", BOARDS, ids=[b[0] for b in BOARDS])
def test_wrong_input_size_gives_the_runtimes_code_and_log_line(make_board, runners, case):
    board, _ = native_board(make_board, runners, case)
    board.save("in.npy", np.zeros((1, 8, 8, 3), dtype=np.float32))
    result = board.run(RUN)
    text = result.stderr.decode()
    assert result.returncode == 5, text
    assert "rknn_inputs_set, param input size(768) < model input size(3072)" in text
    assert "ret=-5 (RKNN_ERR_PARAM_INVALID)" in text
    assert [d.section for d in diagnose(text)][:1] == ["4.2.9"]


@pytest.mark.parametrize("case", BOARDS, ids=[b[0] for b in BOARDS])
def test_missing_runtime_library_is_one_line_naming_the_manual(make_board, runners, case):
    board, _ = native_board(make_board, runners, case)
    library = "librknn_api.so" if case[3] == "rknpu1" else "librknnrt.so"
    (board.root / "usr" / "lib" / library).unlink()
    result = board.run(RUN)
    lines = result.stderr.decode().strip().splitlines()
    assert result.returncode == 4 and len(lines) == 1, lines
    assert f"cannot load the NPU runtime library {library}" in lines[0]
    assert [d.section for d in diagnose(lines[0])][:1] == ["4.1.4"]


def test_version_mismatch_fails_init_with_device_unavailable(make_board, runners):
    board, _ = native_board(make_board, runners, BOARDS[0], driver="6.4.3.5.293908")
    result = board.run(RUN)
    text = result.stderr.decode()
    assert result.returncode == 4 and "HAL user version" in text
    assert "ret=-3 (RKNN_ERR_DEVICE_UNAVAILABLE)" in text


def test_the_loader_leaves_scripts_applets_and_the_boards_own_programs_alone(make_board, runners):
    board, _ = native_board(make_board, runners, BOARDS[0])
    board.put("plain", b"echo from a script without hash-bang\n")
    board.put("other-arch", runners[("aarch64", "rknpu2")].read_bytes())
    result = board.run("cd /userdata && chmod +x plain other-arch && ./plain && echo ab | od -An -c && "
                       "dmesg | grep -c . ; ./other-arch; echo rc=$?")
    out, err = result.stdout.decode(), result.stderr.decode()
    assert "from a script without hash-bang" in out and "a   b  \\n" in out
    assert "klogctl" not in err  # the board's own dmesg (a script over the simulated kernel), not busybox's
    assert "./other-arch: cannot execute binary file: Exec format error" in err and "rc=126" in out


@pytest.mark.parametrize("fault", [None, "mem-leak=256", "fd-leak=2"])
def test_a_c_program_is_in_the_boards_proc_while_it_holds_a_context(make_board, runners, fault):
    board, _ = native_board(make_board, runners, BOARDS[0])
    if fault:
        board.ctx.faults.set(fault)
    result = board.run(RUN.replace("--loops 3", "--loops 4") + " --sample-every 2 --watch rknn_server")
    assert result.returncode == 0, result.stderr
    samples = {}
    for line in result.stdout.decode().splitlines():
        if line.startswith("sample "):
            fields = dict(f.split("=") for f in line.split()[3:])
            samples.setdefault(line.split()[2], []).append((int(fields["fds"]), int(fields["rss_kb"])))
    assert len(samples["self"]) == 3 and len(samples["rknn_server"]) == 3, samples  # before run 1, after 2 and 4
    rss_growth = samples["self"][-1][1] - samples["self"][0][1]
    fd_growth = samples["rknn_server"][-1][0] - samples["rknn_server"][0][0]
    assert rss_growth == (4 * 256 if fault == "mem-leak=256" else 0)
    assert fd_growth == (4 * 2 if fault == "fd-leak=2" else 0)
    assert not [p for p in (board.root / "proc").iterdir() if p.name.isdigit()
                and (p / "comm").read_text().strip() == "rknn_app"]  # gone with the program


def test_rv1106_runtime_is_librknnmrt_in_oem_and_the_runner_is_told_where(make_board, runners):
    board, onnx_bytes = native_board(make_board, runners, ("rv1106", "rv1106", "armhf", "rknpu2"))
    default = board.run(RUN)
    assert default.returncode == 4 and b"cannot load the NPU runtime library librknnrt.so" in default.stderr
    told = board.run(RUN + " --lib /oem/usr/lib/librknnmrt.so")  # what the harness passes (board_runner)
    assert told.returncode == 0, told.stderr  # RKNPU2 on 32-bit ARM: the 4-byte rknn_context of librknnmrt
    expected = onnxruntime_outputs(onnx_bytes, {"images": board.load("in.npy").transpose(0, 3, 1, 2)})[0]
    assert np.allclose(board.load("out/output_0.npy"), expected, atol=1e-4)
