"""A simulated board without its supervisor: a real board root (busybox), a real gate on a loopback socket, the
simulated kernel and NPU. Board commands run for real with board_exec (unshare + chroot)."""

from __future__ import annotations

import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from harness.npu.rknn_file import pack_sim_model
from harness.sim import board_exec
from harness.sim.context import BoardContext
from harness.sim.gate import Gate
from harness.sim.kernel import Kernel
from harness.sim.npu import SimNpu
from support.boards import board_context
from support.models import classifier_onnx


# ------------------------------------------------------------------------------------------------ models
def onnxruntime_outputs(onnx_bytes: bytes, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    return ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"]).run(None, feeds)


# ------------------------------------------------------------------------------------------------ boards
@dataclass
class Board:
    root: Path
    ctx: BoardContext
    kernel: Kernel
    gate: Gate

    def run(self, command: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
        return board_exec.run(self.root, command, timeout=timeout)

    def put(self, name: str, data: bytes) -> None:
        (self.root / "userdata" / name).write_bytes(data)

    def save(self, name: str, array: np.ndarray) -> None:
        np.save(self.root / "userdata" / name, array)

    def load(self, name: str) -> np.ndarray:
        return np.load(self.root / "userdata" / name)


@pytest.fixture
def make_board(tmp_path):
    gates: list[Gate] = []

    def make(name: str, *, hang_seconds: float = 25.0, **version_overrides: str) -> Board:
        ctx = board_context(tmp_path / f"{name}-{len(gates)}", name)
        versions = ctx.profile.versions.model_copy(update=version_overrides)
        if version_overrides:
            ctx.extra["versions"] = versions
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        gate = Gate(listener)
        gates.append(gate)
        gate.start()
        kernel = Kernel(ctx)
        kernel.populate(driver_version=versions.driver, gate_address=gate.address)
        kernel.register(gate)
        kernel.start_server()
        SimNpu(ctx, hang_seconds=hang_seconds).register(gate)
        return Board(ctx.root, ctx, kernel, gate)

    yield make
    for gate in gates:
        gate.stop()


def classifier_board(make_board, name: str, *, platforms: list[str] | None = None, **kwargs) -> tuple[Board, bytes]:
    board = make_board(name, **kwargs)
    onnx_bytes = classifier_onnx()
    board.put("m.rknn", pack_sim_model(onnx_bytes, target_platforms=platforms or [name], toolkit_version="2.3.2"))
    board.save("in.npy", np.random.default_rng(7).standard_normal((1, 16, 16, 3)).astype(np.float32))
    return board, onnx_bytes
