"""Flash the board to a new firmware image and back, checking what it reports each time. DESTRUCTIVE.

Runs only with ``--destructive`` (or ``--firmware``): it rewrites the board's partitions. The images are built
here with :func:`harness.firmware.rkfw.build_update_image` (a simulated board installs them; a real board needs
a real update.img through ``--firmware``). The way back is an image of the versions the board ran before, so a
passing run leaves the board as it found it.

    pytest --board sim-rv1126 --destructive suites/test_firmware.py
"""

from __future__ import annotations

import pytest

from harness.board import Board
from harness.firmware.flash import flash, read_rk_version, strategy_from_name
from harness.firmware.rkfw import build_update_image
from harness.npu.board_versions import probe_board

pytestmark = pytest.mark.destructive

#: A consistent older release of each NPU generation (one row of the manual's 4.1.3 matrix each).
OTHER_RELEASE = {
    "rknpu1": {"rknn_server": "1.6.0", "driver": "6.4.3.5.293908", "runtime": "1.6.0"},
    "rknpu2": {"rknn_server": "1.5.2", "driver": "0.8.8", "runtime": "1.5.2"},
}


def _versions(board: Board) -> dict[str, str | None]:
    record = probe_board(board).to_dict()
    return {k: record[k]["version"] for k in ("rknn_server", "driver", "runtime")}


def test_flash_to_a_new_image_and_back(board: Board, request: pytest.FixtureRequest, tmp_path) -> None:
    if not board.simulated:
        pytest.skip("the round trip builds simulator images; flash a real board with --firmware update.img")
    strategy = strategy_from_name(request.config.getoption("--firmware-strategy", default="ota-adb"))
    before_rk, before = read_rk_version(board), _versions(board)
    assert before_rk and all(before.values()), f"{board.name} does not report its versions: {before_rk} {before}"
    other = OTHER_RELEASE[board.npu]
    new = build_update_image(tmp_path / "new.img", chip=board.chip.name, rk_version=f"{before_rk}_NPUHIL_TEST",
                             versions=other, version=(9, 0, 0))
    back = build_update_image(tmp_path / "back.img", chip=board.chip.name, rk_version=before_rk,
                              versions={k: v or "" for k, v in before.items()})

    flashed = flash(board, new, strategy)
    assert (read_rk_version(board), _versions(board)) == (f"{before_rk}_NPUHIL_TEST", other)
    assert flashed.rk_version == f"{before_rk}_NPUHIL_TEST"

    flash(board, back, strategy)
    assert (read_rk_version(board), _versions(board)) == (before_rk, before)
