"""Push, run, hang and soak on a simulated RK3588 reached over its real links (a real adb server, real ssh).

Everything the model machinery promises is checked on the board's side: hashes with ``sha256sum`` there, files
with ``ls`` there, the kernel's own hang lines, ``/proc/PID/fd`` of rknn_server.
"""

from __future__ import annotations

import os
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest

from harness.config.loader import parse_inventory
from harness.connect import open_board
from harness.errors import HarnessError, ProductError
from harness.links.adb_server import AdbServer
from harness.npu.deploy import push_model, remove_model
from harness.npu.goldens import judge
from harness.npu.model_package import load_package
from harness.npu.run import ModelRun, NpuHang, run_package, zero_output_hang
from harness.npu.soak import soak
from harness.sim import api

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "suites" / "models"
INVENTORY = parse_inventory('[defaults]\ntoolkit = { rknpu1 = "1.7.1", rknpu2 = "2.3.2" }\n')
ADB_PORT = 15141  # this test file's own adb server port


@pytest.fixture(scope="module")
def sim_home(tmp_path_factory):
    old = os.environ.get("NPU_HIL_SIM_HOME")
    os.environ["NPU_HIL_SIM_HOME"] = str(tmp_path_factory.mktemp("sim"))
    yield
    if old is None:
        del os.environ["NPU_HIL_SIM_HOME"]
    else:
        os.environ["NPU_HIL_SIM_HOME"] = old


@pytest.fixture(scope="module")
def board(sim_home, tmp_path_factory):
    server = AdbServer(port=ADB_PORT, home=tmp_path_factory.mktemp("adb")).start()
    spec = INVENTORY.get("sim-rk3588")
    try:
        board = open_board(spec, INVENTORY, run_dir=tmp_path_factory.mktemp("run"), adb_server=server)
        try:
            yield board
        finally:
            board.close()
            api.down(spec.name)
    finally:
        server.stop()


@pytest.fixture
def classifier(tmp_path: Path):
    """A private copy of the shipped package, free to edit."""
    shutil.copytree(MODELS / "classifier", tmp_path / "classifier")
    return load_package(tmp_path / "classifier")


def board_sha(board, path: str) -> str:
    return board.shell(f"sha256sum {shlex.quote(path)}", check=True).stdout.split()[0]


def board_ls(board, folder: str) -> list[str]:
    return board.shell(f"ls -a {shlex.quote(folder)} 2>/dev/null").stdout.split()


def test_push_transfers_only_what_changed(board, classifier) -> None:
    first = push_model(board, classifier)
    remove_model(board, first)  # start cold whatever earlier tests left
    cold = push_model(board, classifier)
    assert set(cold.pushed) == {cold.model, *cold.inputs} and not cold.reused
    assert board_sha(board, cold.model) == cold.sha256
    warm = push_model(board, classifier)
    assert warm.pushed == () and set(warm.reused) == set(cold.pushed)
    image = classifier.root / "inputs" / "image.npy"
    np.save(image, np.load(image) + 1)
    changed = push_model(board, load_package(classifier.root))
    assert changed.pushed == changed.inputs and changed.reused == (changed.model,)
    assert [n for n in board_ls(board, changed.folder) if "partial" in n] == []


def test_cut_transfer_never_leaves_the_name_the_runner_opens(board, classifier) -> None:
    remote = push_model(board, classifier)
    remove_model(board, remote)
    api.fault(board.name, "adb-drop=6000")  # the model is ~22 kB
    try:
        with pytest.raises(HarnessError):
            push_model(board, classifier)
    finally:
        api.fault(board.name, "adb-drop", clear=True)
    board.adb.wait_ready(timeout=30)
    assert Path(remote.model).name not in board_ls(board, remote.folder)
    again = push_model(board, classifier)
    assert remote.model in again.pushed and board_sha(board, again.model) == again.sha256


def test_model_for_another_chip_is_refused_before_any_transfer(board) -> None:
    package = load_package(REPO / "suites" / "refused_models" / "wrong_target")
    with pytest.raises(ProductError) as refused:
        push_model(board, package)
    message = str(refused.value)
    assert "targets rk3566, not rk3588" in message and "-13" in message and "4.1.2" in message, message
    assert board_ls(board, "/userdata/npu-hil/models/wrong_target/rk3588") == []


def test_quoted_folder_and_custom_runner_template(board, classifier) -> None:
    text = (classifier.root / "model.toml").read_text().replace(
        'runner = "rknn_benchmark"', 'runner = "rknn_benchmark {model} {inputs} {loops}"')
    (classifier.root / "model.toml").write_text(text)
    package = load_package(classifier.root)
    folder = "/userdata/npu hil's models"
    run = run_package(board, package, remote=push_model(board, package, folder=folder), loops=3)
    assert run.runner.startswith("rknn_benchmark {model}") and run.remote_dir.startswith(folder)
    assert len(run.parsed.iterations_ms) == 3 and run.first_run_ms is not None
    verdict = judge(run.outputs, run.golden_dir(), tolerances=package.tolerances())
    assert verdict.passed, verdict.message()
    board.shell(f"rm -rf {shlex.quote(folder)}", check=True)


def test_two_models_keep_their_outputs_apart_and_batch_is_split(board) -> None:
    single, batch = load_package(MODELS / "classifier"), load_package(MODELS / "classifier_batch2")
    runs = [run_package(board, p, loops=1, keep_remote=True) for p in (single, batch)]
    assert runs[0].remote_dir != runs[1].remote_dir
    assert list(runs[1].per_sample()) == ["sample_a", "sample_b"]
    for run in runs:
        for sample, outputs in run.per_sample().items():
            assert judge(outputs, run.golden_dir(sample), tolerances=run.package.tolerances()).passed, sample
        assert "rt_output0.npy" in board_ls(board, run.remote_dir)
        board.shell(f"rm -rf {shlex.quote(run.remote_dir)}", check=True)
    a, b = runs[1].per_sample().values()
    assert not np.allclose(a[0], b[0])  # two different samples, two different results


def test_all_zero_outputs_against_a_nonzero_golden_are_a_hang(board) -> None:
    run = run_package(board, load_package(MODELS / "classifier"), loops=1)
    assert zero_output_hang(run) is None
    zeroed = ModelRun(**{**run.__dict__, "outputs": [np.zeros_like(o) for o in run.outputs]})
    assert "4.2.13" in zero_output_hang(zeroed)


def test_hang_past_the_deadline_collects_dmesg_and_reboots(board) -> None:
    package = load_package(MODELS / "classifier")
    remote = push_model(board, package)
    api.fault(board.name, "npu-hang")
    try:
        with pytest.raises(NpuHang) as hung:
            run_package(board, package, remote=remote, loops=1, deadline_s=4)
    finally:
        api.fault(board.name, "npu-hang", clear=True)
    assert "NPU hang (manual 4.2.13)" in str(hung.value) and "RKNPU: job timeout" in str(hung.value)
    assert "RKNPU: soft reset" in hung.value.dmesg and hung.value.recovery == "rebooted"
    assert "RKNPU: job timeout" not in board.shell("dmesg", check=True).stdout  # a fresh boot's log
    assert board.shell("true").ok and board.broken is None


def test_soak_sees_descriptor_growth_and_a_clean_soak_passes(board) -> None:
    package = load_package(MODELS / "classifier")
    clean = soak(board, package, runs=3, loops=1)
    assert clean.failure is None and clean.runs_done == 3 and len(set(clean.fd_samples)) == 1
    api.fault(board.name, "fd-leak=1")
    try:
        leaking = soak(board, package, runs=3, loops=1)
    finally:
        api.fault(board.name, "fd-leak", clear=True)
        board.shell("restart_rknn.sh", check=True)
    assert leaking.growth == 12  # rknn_benchmark: 5 warm-ups + 1 run, one descriptor each, two runs after the first
    assert "manual 4.2.1" in leaking.failure and "grew by 12 (6.0 per run)" in leaking.failure, leaking.failure
    with pytest.raises(ProductError):
        leaking.raise_for_failure()
