"""The version matrix check on a live board: probe its NPU stack with the manual's commands, then judge it.

Kept apart from :mod:`harness.npu.probes` (pure: any shell callable) so the probe logic stays testable on
recorded strings; this module only binds it to a :class:`harness.board.Board` and its chip data.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.errors import ConfigError
from harness.npu.matrix import MatrixVerdict, check
from harness.npu.probes import VersionRecord, probe_versions

if TYPE_CHECKING:
    from harness.board import Board


def probe_board(board: "Board", *, timeout: float = 30.0) -> VersionRecord:
    """Read the board's driver, rknn_server, runtime, chip, kernel and firmware versions."""
    return probe_versions(lambda command: board.shell(command, timeout=timeout), npu=board.npu,
                          runtime_lib=board.chip.runtime_lib, server_bin=board.chip.server_bin)


def check_board(board: "Board", toolkit: str | None = None,
                record: VersionRecord | None = None) -> tuple[VersionRecord, MatrixVerdict]:
    """Probe (unless given a record) and check against the toolkit release under test."""
    toolkit = toolkit or board.toolkit
    if not toolkit:
        raise ConfigError(f"no toolkit release to check board {board.name} against: pass --toolkit or set "
                          f"[defaults] toolkit in boards.toml")
    record = record or probe_board(board)
    return record, check(record, npu=board.npu, toolkit=toolkit)
