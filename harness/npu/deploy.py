"""Put a model package on a board: refuse what the board cannot load, transfer only what changed, never half.

Why each rule:

* Refuse before pushing: a model the board cannot load fails only at ``rknn_init``, with a terse -6/-13 and
  the reason buried in the board's log (manual 4.1.2, 4.3.2). :func:`check_model_for_board` decides it on the
  host from the model's own trailer and the board's probed versions; the refusal names the reason and the
  manual section, and the transfer is saved.
* Push only on a changed sha256: a lab re-runs the same models on every firmware; hashing the board's copy
  (``sha256sum``, one command for every file of the package) costs a round trip, a transfer costs seconds.
* Temporary name, then rename: a cut transfer (cable, reboot, full disk) must never leave a file under the
  name the runner opens. ``Board.push`` verifies the copy's sha256 before the ``mv``; a rename within one
  folder is atomic.

Every board path is ``shlex.quote``d.
"""

from __future__ import annotations

import hashlib
import logging
import os
import posixpath
import shlex
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from harness.errors import BoardError, ConfigError, HarnessError, ProductError
from harness.npu.model_compat import check_model_for_board
from harness.npu.model_package import ModelPackage
from harness.npu.rknn_file import read_rknn_file

if TYPE_CHECKING:
    from harness.board import Board
    from harness.npu.probes import VersionRecord

log = logging.getLogger("npu-hil.deploy")

DEFAULT_MODEL_DIR = "/userdata/npu-hil/models"
_HEX64 = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class RemoteModel:
    """A package's files on the board, ready for a runner: where they are and what the push did."""

    package: ModelPackage
    chip: str  # the package target used (the board's chip or its twin)
    folder: str  # board folder holding this package's files for this chip
    model: str  # board path of the .rknn
    inputs: tuple[str, ...]  # board paths of the input tensors, in model order
    nhwc: bool  # 4-D inputs were pushed NHWC (the runtime's default layout, 4.2.14)
    sha256: str  # of the model file
    pushed: tuple[str, ...] = field(default=())  # files transferred this time
    reused: tuple[str, ...] = field(default=())  # files the board already held with the same sha256


def target_chip(board: Board, package: ModelPackage) -> str:
    """The package target for this board: its chip, or its twin's (rv1109 runs rv1126's model)."""
    for name in [board.chip.name, *sorted(board.chip.family - {board.chip.name})]:
        if name in package.manifest.targets:
            return name
    raise ConfigError(f"model package {package.name} has no target for {board.chip.name} "
                      f"(targets: {', '.join(package.chips)})")


def refuse_if_incompatible(board: Board, package: ModelPackage, chip: str,
                           versions: VersionRecord | None = None) -> str:
    """ProductError naming the reason and manual section when the board cannot load the model; else its sha256."""
    if versions is None:
        from harness.npu.board_versions import probe_board
        versions = probe_board(board)
    path = package.model_file(chip)
    info = read_rknn_file(path)
    # RKNPU1's pre-compile rule reads DRV, i.e. rknn_server's version (model_compat's docstring).
    driver = versions.rknn_server.version if board.npu == "rknpu1" else versions.driver.version
    found = check_model_for_board(info, chip=board.chip.name, npu=board.npu,
                                  runtime_version=versions.runtime.version, driver_version=driver)
    if found:
        reasons = "; ".join(str(item) for item in found)
        codes = ", ".join(str(i.error_code) for i in found if i.error_code is not None)
        raise ProductError(f"refusing to push {path.name} ({package.name}) to {board.name}: {reasons}"
                           + (f" [rknn_init would return {codes}]" if codes else ""),
                           fix="rebuild the model for this board with the matching toolkit and target_platform")
    return info.sha256


def remote_folder(package: ModelPackage, chip: str, base: str = DEFAULT_MODEL_DIR) -> str:
    """One folder per package and chip, so two models never share a file name (4.2.11)."""
    if not base.startswith("/"):
        raise ConfigError(f"board model folder {base!r} must be an absolute path")
    return posixpath.join(base, package.name, chip)


def remote_hashes(board: Board, paths: list[str], timeout: float = 30.0) -> dict[str, str]:
    """sha256 of each board file that exists (one ``sha256sum`` for all); missing files are left out."""
    if not paths:
        return {}
    result = board.shell("sha256sum " + " ".join(shlex.quote(p) for p in paths) + " 2>/dev/null", timeout=timeout)
    hashes = {}
    for line in result.stdout.splitlines():
        digest, _, name = line.partition("  ")
        if len(digest) == 64 and set(digest) <= _HEX64 and name in paths:
            hashes[name] = digest
    return hashes


def push_atomic(board: Board, local: Path, remote: str, *, timeout: float | None = None) -> None:
    """Push under a temporary name in the same folder (verified by sha256), then rename over ``remote``."""
    folder, name = posixpath.split(remote)
    partial = posixpath.join(folder, f".{name}.partial-{os.getpid()}")
    board.shell(f"mkdir -p {shlex.quote(folder)}", timeout=30, check=True)
    try:
        board.push(local, partial, timeout=timeout)
        board.shell(f"mv -f {shlex.quote(partial)} {shlex.quote(remote)}", timeout=30, check=True)
    except BaseException:
        try:
            board.shell(f"rm -f {shlex.quote(partial)}", timeout=15)
        except HarnessError as exc:  # the original failure matters more; the partial name is never used
            log.warning("%s: could not remove %s: %s", board.name, partial, exc)
        raise


def file_sha256(path: Path) -> str:
    """sha256 of a host file, read in blocks (a model can be hundreds of MB): compared with :func:`remote_hashes`."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def input_tensors(package: ModelPackage, *, nhwc: bool) -> dict[str, np.ndarray]:
    """The package's inputs, 4-D ones transposed to NHWC when ``nhwc`` and declared NCHW (rknn_benchmark)."""
    arrays = package.load_inputs()
    for spec in package.manifest.inputs:
        if nhwc and spec.layout == "NCHW":
            arrays[spec.name] = np.ascontiguousarray(arrays[spec.name].transpose(0, 2, 3, 1))
    return arrays


def push_model(board: Board, package: ModelPackage, chip: str | None = None, *,
               folder: str = DEFAULT_MODEL_DIR, versions: VersionRecord | None = None,
               nhwc: bool | None = None, timeout: float | None = None) -> RemoteModel:
    """Check, then push the package's model and inputs for ``chip`` (default: the board's), skipping unchanged files.

    ``nhwc``: push 4-D inputs in NHWC (default: only when the chip's runner is rknn_benchmark, which reads
    4-D .npy files as NHWC; our runner is told the declared layout instead).
    """
    chip = (chip or target_chip(board, package)).lower()
    package.target(chip)  # ConfigError when the package has no such target
    model_sha = refuse_if_incompatible(board, package, chip, versions)
    if nhwc is None:
        nhwc = package.runner_for(chip) == "rknn_benchmark"
    base = remote_folder(package, chip, folder)
    model_local = package.model_file(chip)
    with tempfile.TemporaryDirectory(prefix="npu-hil-inputs-") as tmp:
        files: list[tuple[Path, str, str]] = [(model_local, posixpath.join(base, model_local.name), model_sha)]
        input_paths = []
        for name, array in input_tensors(package, nhwc=nhwc).items():
            local = Path(tmp) / f"input_{name}.npy"
            np.save(local, array)
            remote = posixpath.join(base, f"input_{name}{'_nhwc' if nhwc else ''}.npy")
            files.append((local, remote, file_sha256(local)))
            input_paths.append(remote)
        on_board = remote_hashes(board, [remote for _, remote, _ in files])
        pushed, reused = [], []
        for local, remote, digest in files:
            if on_board.get(remote) == digest:
                reused.append(remote)
                continue
            push_atomic(board, local, remote, timeout=timeout)
            pushed.append(remote)
    log.info("%s: %s/%s: pushed %d file(s) %s, unchanged %d %s", board.name, package.name, chip, len(pushed),
             pushed, len(reused), reused)
    return RemoteModel(package, chip, base, files[0][1], tuple(input_paths), nhwc, model_sha,
                       tuple(pushed), tuple(reused))


def remove_model(board: Board, remote: RemoteModel) -> None:
    """Delete a pushed package folder from the board (a test that wants a cold push starts here)."""
    if not remote.folder.startswith("/") or remote.folder.count("/") < 3:
        raise BoardError(f"refusing to remove suspicious board folder {remote.folder!r}")
    board.shell(f"rm -rf {shlex.quote(remote.folder)}", timeout=30, check=True)
