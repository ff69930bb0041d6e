"""Which of our runners a board uses, and putting it on the board.

Two builds of one protocol (``npu-hil runner protocol 1``, parsed the same way):

* ``python``: ``npu_hil_runner.py`` under the board's python3 with RKNN Toolkit Lite (Rockchip's Debian images);
* ``native``: the C runner over the runtime's C API (``runner/native``), for stock Buildroot images that have no
  python3 (manual 4.2.2 times inference with the C API too). It is built here, with Debian's cross compiler for
  the chip's machine (``arch`` in chips.toml) and the ABI of its NPU generation, cached per source, and pushed.

``runner`` in boards.toml picks one: ``"python"``, ``"native"``, or ``"auto"`` (the default): python when the
board's python3 imports numpy and RKNN Toolkit Lite, else native; the probe runs once per board.
"""

from __future__ import annotations

import hashlib
import logging
import os
import posixpath
import shlex
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.npu.deploy import DEFAULT_MODEL_DIR, file_sha256, push_atomic, remote_hashes
from harness.npu.runner import native_build, npu_hil_runner

if TYPE_CHECKING:
    from harness.board import Board

log = logging.getLogger("npu-hil.runner")

RUNNER_KINDS = ("auto", "python", "native")
PYTHON_RUNNER = Path(npu_hil_runner.__file__)
#: python needs the board's python3 with numpy and RKNN Toolkit Lite (Rockchip's Debian images may have python3
#: without them); anything less gets the native runner
PROBE = "python3 -c 'import numpy, rknnlite.api' >/dev/null 2>&1 && echo python || echo native"


@dataclass(frozen=True)
class BoardRunner:
    """Our runner as installed on one board."""

    kind: str  # "python" | "native"
    path: str  # its board path
    args: tuple[str, ...] = ()  # options it always takes on this board (the runtime library's path)

    def command(self) -> str:
        """The start of the board command (quoted): ``python3 /userdata/npu_hil_runner.py`` or the binary."""
        words = ["python3"] if self.kind == "python" else []
        return " ".join([*words, *(shlex.quote(w) for w in (self.path, *self.args))])


def kind_for(board: Board) -> str:
    """``python`` or ``native`` for this board: its boards.toml choice, or (``auto``) the board probed once."""
    if board.runner_kind is None:
        answer = board.shell(PROBE, timeout=30, check=True).stdout.split()
        board.runner_kind = "python" if answer[-1:] == ["python"] else "native"
        log.info("%s: %s runner (auto: %s)", board.name, board.runner_kind, "the board's python3 has RKNN Toolkit "
                 "Lite" if board.runner_kind == "python" else "no python3 with numpy and RKNN Toolkit Lite")
    return board.runner_kind


def cache_dir() -> Path:
    return Path(os.environ.get("NPU_HIL_CACHE") or Path.home() / ".cache" / "npu-hil") / "runner"


def native_binary(arch: str, abi: str) -> Path:
    """The native runner for ``arch`` and ``abi``, built here on first use and kept per source
    (ConfigError naming the package when the cross compiler is missing)."""
    sources = b"".join((native_build.SOURCES / n).read_bytes() for n in ("npu_hil_runner.c", "rknn_decls.h"))
    recipe = " ".join([arch, abi, *native_build.CFLAGS, *native_build.ABIS[abi]]).encode()
    digest = hashlib.sha256(sources + recipe).hexdigest()[:16]
    binary = cache_dir() / f"npu_hil_runner-{abi}-{arch}-{digest}"
    if not binary.is_file():
        binary.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=binary.parent) as tmp:
            built = native_build.build(Path(tmp), abis=(abi,), arch=arch)[0]
            os.replace(built.runner, binary)  # atomic: workers building side by side end with one file
    return binary


def ensure(board: Board, folder: str = DEFAULT_MODEL_DIR) -> BoardRunner:
    """Our runner on ``board``, pushed when its copy is missing or different (one hash check otherwise)."""
    kind = kind_for(board)
    if kind == "python":
        local, name = PYTHON_RUNNER, "npu_hil_runner.py"
    else:
        local = native_binary(board.chip.arch, board.chip.npu)
        name = f"npu_hil_runner-{board.chip.npu}-{board.chip.arch}"
    remote = posixpath.join(posixpath.dirname(folder.rstrip("/")) or "/", name)
    if remote_hashes(board, [remote]).get(remote) != file_sha256(local):
        push_atomic(board, local, remote)
        if kind == "native":
            board.shell(f"chmod 755 {shlex.quote(remote)}", timeout=30, check=True)
        log.info("%s: pushed the %s runner to %s", board.name, kind, remote)
    return BoardRunner(kind, remote, library_args(board) if kind == "native" else ())


def library_args(board: Board) -> tuple[str, ...]:
    """``--lib PATH`` where the chip's C API library is not the runner's default name: RKNPU2 boards name theirs
    in chips.toml (RV1103/RV1106: /oem/usr/lib/librknnmrt.so). RKNPU1's C API is librknn_api.so beside the
    runtime (chips.toml names librknn_runtime.so), found by the loader's own search."""
    return ("--lib", board.chip.runtime_lib) if board.chip.npu == "rknpu2" else ()
