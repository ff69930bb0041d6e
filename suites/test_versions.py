"""The version matrix (manual 4.1.3): rknn_server, NPU driver and runtime must come from the toolkit release
under test; a mismatch is the usual cause of rknn_init failing with -9 or -6."""

from __future__ import annotations

from harness.report.evidence import record_versions


def test_versions_are_readable(board, board_versions) -> None:
    record_versions(board, board_versions)
    unreadable = {name: board_versions.component(name).raw for name in ("driver", "rknn_server", "runtime")
                  if board_versions.component(name).version is None}
    assert not unreadable, f"versions the manual's commands could not read (raw output kept): {unreadable}"


def test_versions_match_the_matrix(board, board_versions, version_verdict) -> None:
    record_versions(board, board_versions, version_verdict)
    assert version_verdict.ok, "\n" + version_verdict.explain()


def test_rknn_server_is_running(board_versions) -> None:
    assert board_versions.server_running, (
        "rknn_server is not running on the board: connected-mode rknn_init fails with "
        "RKNN_ERR_DEVICE_UNAVAILABLE / 'driver open fail! ret = -9' (manual 4.1.3); start it with restart_rknn.sh")


def test_board_is_the_chip_it_claims(board, board_versions) -> None:
    assert board_versions.chip.version in board.chip.family, (
        f"boards.toml says {board.chip.name}, /proc/device-tree/compatible says {board_versions.chip.raw!r}")
