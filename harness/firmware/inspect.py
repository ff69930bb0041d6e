"""What firmware a board runs, and what an update.img holds: the two sides an update is judged by.

A board is read with the manual's own commands over whichever link answers (RK_VERSION from /etc/version, the
kernel from /proc/version, the NPU stack through :func:`harness.npu.board_versions.probe_board`) plus the
partition table where the board lets us read it. Partitions are optional on purpose: a minimal rootfs may
have no /proc/partitions or /dev/block/by-name, and that is not a failure of the board.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.firmware.rkfw import read_update_image
from harness.npu.board_versions import probe_board

if TYPE_CHECKING:
    from harness.board import Board

PARTITIONS_FILE = "/proc/partitions"
BY_NAME_DIR = "/dev/block/by-name"


def parse_proc_partitions(text: str) -> list[dict[str, Any]]:
    """Rows of /proc/partitions (``major minor #blocks name``); header and odd lines are skipped."""
    rows = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 4 or not all(p.isdigit() for p in parts[:3]):
            continue
        major, minor, blocks, name = parts
        rows.append({"name": name, "major": int(major), "minor": int(minor), "size_kib": int(blocks)})
    return rows


def read_partitions(board: Board, timeout: float = 15.0) -> dict[str, Any]:
    """The block devices and the named partitions, each None when the board does not show them."""
    table = board.shell(f"cat {shlex.quote(PARTITIONS_FILE)}", timeout=timeout)
    quoted = shlex.quote(BY_NAME_DIR)
    names = board.shell(f"[ -d {quoted} ] && ls -1 {quoted}", timeout=timeout)
    return {
        "block_devices": parse_proc_partitions(table.stdout) if table.ok else None,
        "by_name": sorted(n for n in names.stdout.split() if n) if names.ok else None,
    }


def inspect_board(board: Board, *, timeout: float = 30.0) -> dict[str, Any]:
    """A board's firmware release, kernel, NPU versions and partitions, as one JSON-ready dict."""
    record = probe_board(board, timeout=timeout)
    return {
        "kind": "board",
        "board": board.name,
        "chip": board.chip.name,
        "rk_version": record.rk_version.version,
        "kernel": record.kernel.version,
        "npu": record.to_dict(),
        "partitions": read_partitions(board, timeout=timeout),
    }


def inspect_image(path: str | Path, *, chip: str | None = None) -> dict[str, Any]:
    """An update.img's header, MD5 verdict and manifest (ConfigError for a bad image or another chip's)."""
    return {"kind": "image", **read_update_image(path, chip=chip).to_dict()}
