"""The native runner (C, over the runtime's C API through dlopen), built by ``npu-hil runner build`` for this
host and for the boards' architectures (armhf, aarch64: Debian's cross compilers, run here under qemu-user),
against the stub runtime library built beside it: every ABI and architecture prints protocol 1 as the harness
parses it and writes the outputs the runtime returned; failures carry the runtime's own code and name (a corrupt
model -6, a wrong input size -8, a missing library), each on one line. A runner of one ABI refuses the other
ABI's library by a call only that generation has, before any call that would crash on the other's layouts.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.npu.latency import parse_runner_output
from harness.npu.runner.native_build import emulator

ABIS = ("rknpu1", "rknpu2")
HOST = platform.machine()
#: (architecture, ABI) pairs a lab meets: RV1126 is armhf with RKNPU1, RK3588 aarch64 with RKNPU2; and the host
TARGETS = [(HOST, "rknpu1"), (HOST, "rknpu2"), ("armhf", "rknpu1"), ("armhf", "rknpu2"), ("aarch64", "rknpu2")]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], dict[str, str]]:
    out = tmp_path_factory.mktemp("runner")
    done = subprocess.run([sys.executable, "-m", "harness", "runner", "build", "--out", str(out), "--stub", "--json",
                           "--arch", "host", "--arch", "armhf", "--arch", "aarch64"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return {(b["arch"], b["abi"]): b for b in json.loads(done.stdout)}


@pytest.fixture
def files(tmp_path: Path) -> Path:
    np.save(tmp_path / "x.npy", np.array([[1.0, -2.0, 0.5, 4.0]], dtype=np.float32))
    (tmp_path / "model.rknn").write_bytes(b"RKNN" + bytes(60))
    (tmp_path / "out").mkdir()
    return tmp_path


def run(built: dict, abi: str, files: Path, *args: str, lib: str | None = None, model: str = "model.rknn",
        inputs: str = "x.npy", arch: str = HOST) -> subprocess.CompletedProcess:
    b = built[(arch, abi)]
    return subprocess.run([*emulator(arch), b["runner"], model, "--input", inputs, "--loops", "5", "--warmup", "2",
                           "--out", "out", "--lib", lib or b["stub"], *args], cwd=files, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("arch, abi", TARGETS, ids=[f"{a}-{b}" for a, b in TARGETS])
def test_the_runner_speaks_protocol_1_and_writes_the_runtimes_outputs(built, files, arch, abi) -> None:
    done = run(built, abi, files, arch=arch)
    assert done.returncode == 0, done.stderr
    parsed = parse_runner_output(done.stdout)
    assert parsed.complete and len(parsed.iterations_ms) == 5 and len(parsed.warmup_ms) == 2
    assert parsed.first_run_ms is not None and parsed.outputs == ["out/output_0.npy"]
    assert parsed.tensors[0].dims == (1, 4) and not parsed.errors
    out = np.load(files / "out" / "output_0.npy")
    assert out.dtype == np.float32 and out.tolist() == [[3.0, -3.0, 2.0, 9.0]]  # the stub's y = 2x + 1


@pytest.mark.parametrize("arch, abi", TARGETS, ids=[f"{a}-{b}" for a, b in TARGETS])
def test_a_corrupt_model_fails_with_the_runtimes_code(built, files, arch, abi) -> None:
    (files / "bad.rknn").write_bytes(b"CORRUPT" + bytes(60))
    done = run(built, abi, files, model="bad.rknn", arch=arch)
    assert done.returncode == 4 and done.stdout == ""
    assert done.stderr == "error: rknn_init failed for bad.rknn: ret=-6 (RKNN_ERR_MODEL_INVALID)\n"


def test_a_wrong_input_size_fails_with_the_runtimes_code(built, files) -> None:
    np.save(files / "x5.npy", np.zeros((1, 5), dtype=np.float32))
    done = run(built, "rknpu2", files, inputs="x5.npy")
    assert done.returncode == 5
    assert done.stderr == "error: inference failed at run 0: ret=-8 (RKNN_ERR_INPUT_INVALID)\n"


def test_a_missing_runtime_library_is_one_line(built, files) -> None:
    done = run(built, "rknpu1", files, lib=str(files / "librknn_api.so"))
    assert done.returncode == 4 and done.stderr.count("\n") == 1
    assert done.stderr.startswith(f"error: cannot load the NPU runtime library {files / 'librknn_api.so'}: ")


@pytest.mark.parametrize("arch", [HOST, "armhf"])
@pytest.mark.parametrize("abi, other", [("rknpu1", "rknpu2"), ("rknpu2", "rknpu1")])
def test_each_abi_refuses_the_other_abis_library(built, files, arch, abi, other) -> None:
    """A call across the ABIs would crash (on armhf rknn_context is 8 bytes for RKNPU1, 4 for RKNPU2)."""
    done = run(built, abi, files, lib=built[(arch, other)]["stub"], arch=arch)
    assert done.returncode == 4 and done.stderr.count("\n") == 1, done.stderr
    assert f"is an {other.upper()} runtime" in done.stderr and f"this runner is the {abi} build" in done.stderr


def test_bad_arguments_and_inputs_exit_2(built, files) -> None:
    assert run(built, "rknpu2", files, "--bogus").returncode == 2
    (files / "junk.npy").write_bytes(b"not numpy")
    junk = run(built, "rknpu2", files, inputs="junk.npy")
    assert junk.returncode == 2 and "junk.npy: not a .npy file" in junk.stderr


def test_build_refuses_an_unknown_abi_and_a_missing_compiler(tmp_path) -> None:
    from harness.errors import ConfigError
    from harness.npu.runner.native_build import build

    with pytest.raises(ConfigError, match="unknown runner ABI"):
        build(tmp_path, abis=("rknpu3",))
    with pytest.raises(ConfigError, match="no C compiler 'no-such-cc'"):
        build(tmp_path, cc="no-such-cc")
    with pytest.raises(ConfigError, match="unknown architecture 'mips'"):
        build(tmp_path, arch="mips")


@pytest.mark.parametrize("arch", [HOST, "armhf"])
def test_the_runner_samples_itself_for_the_long_lived_soak(built, files, arch) -> None:
    from harness.npu.soak_process import parse_samples

    done = run(built, "rknpu1", files, "--sample-every", "2", "--watch", "no-such-process", arch=arch)
    assert done.returncode == 0, done.stderr
    samples = parse_samples(done.stdout)
    assert list(samples) == ["self"]  # a watched process that is not running prints nothing
    assert [s.inferences for s in samples["self"]] == [0, 2, 4]
    assert all(s.fds > 0 and s.rss_kb > 0 for s in samples["self"])  # read from /proc (qemu's, under qemu-user)
