"""``suites/test_firmware.py`` run by a real pytest in a subprocess, as a lab runs it: skipped unless asked for.

Flashing is destructive, so the suite must be skipped (saying why) without ``--destructive``, and with it must
flash a simulated RV1126 to a new image and back. ``-p fixtures.firmware`` loads the firmware options and the
destructive gate whether or not the project's conftest.py lists the module yet.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support.sim_leftovers import own_sim_home

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parents[2]
SUITE = REPO / "suites" / "test_firmware.py"
HARD_STOP_S = 300


@pytest.fixture
def lab(pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    with own_sim_home(tmp_path_factory, monkeypatch):
        yield pytester


def run_suite(lab: pytest.Pytester, *extra: str) -> pytest.RunResult:
    return lab.runpytest_subprocess("-p", "no:cacheprovider", "--board", "sim-rv1126",
                                    "--reports-dir", str(lab.path / "reports"), "-rA", *extra, str(SUITE),
                                    timeout=HARD_STOP_S)


def test_firmware_suite_is_skipped_without_destructive(lab):
    result = run_suite(lab)
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*destructive (reflashes the board): run with --destructive*"])


def test_firmware_suite_flashes_and_comes_back_with_destructive(lab):
    result = run_suite(lab, "--destructive")
    result.assert_outcomes(passed=1)


FIXTURE_USER = '''
def test_first(firmware, board):
    print("FLASHED", firmware.rk_version if firmware else None)

def test_second(firmware, board):
    print("FLASHED", firmware.rk_version if firmware else None)
'''


def test_firmware_option_flashes_once_per_board_and_not_again_when_it_already_runs_it(lab):
    from harness.firmware.rkfw import build_update_image

    image = build_update_image(lab.path / "update.img", chip="rv1126", rk_version="RV1126_FIXTURE_V3",
                               versions={"rknn_server": "1.6.0", "driver": "6.4.3.5.293908", "runtime": "1.6.0"})
    lab.makepyfile(test_uses_firmware=FIXTURE_USER)
    args = ("-p", "no:cacheprovider", "-s",
            "--board", "sim-rv1126", "--reports-dir", str(lab.path / "reports"), "--firmware", str(image),
            str(lab.path / "test_uses_firmware.py"))
    first = lab.runpytest_subprocess(*args, "--run-id", "first", timeout=HARD_STOP_S)
    first.assert_outcomes(passed=2)
    assert first.stdout.str().count("FLASHED RV1126_FIXTURE_V3") == 2  # the same result for both tests
    assert updates_run(lab, "first") == 1  # ... from one flash: the board's own command log says so
    again = lab.runpytest_subprocess(*args, "--run-id", "again", timeout=HARD_STOP_S)  # it runs V3 already
    again.assert_outcomes(passed=2)
    assert again.stdout.str().count("FLASHED None") == 2
    assert updates_run(lab, "again") == 0


def updates_run(lab: pytest.Pytester, run_id: str) -> int:
    """How many times updateEngine ran in that run, from the board's links.log (every command is logged)."""
    logs = list((lab.path / "reports" / run_id).rglob("links.log"))
    assert logs, f"no links.log under reports/{run_id}"
    return sum(log.read_text().count("$ updateEngine --image_url=") for log in logs)


def test_firmware_option_with_a_bad_image_fails_the_tests_that_need_it_with_one_line(lab):
    bad = lab.path / "update.img"
    bad.write_bytes(b"PK\x03\x04" + bytes(200))
    lab.makepyfile(test_uses_firmware=FIXTURE_USER)
    result = lab.runpytest_subprocess("-p", "no:cacheprovider",
                                      "--board", "sim-rv1126", "--reports-dir", str(lab.path / "reports"),
                                      "--firmware", str(bad), str(lab.path / "test_uses_firmware.py"),
                                      timeout=HARD_STOP_S)
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(["*board sim-rv1126: flashing update.img failed: *no RKFW magic*"])


def test_a_failed_flash_fails_only_that_boards_tests_and_the_other_board_goes_on(lab):
    from harness.firmware.rkfw import build_update_image

    image = build_update_image(lab.path / "update.img", chip="rv1126", rk_version="RV1126_ONLY_V4",
                               versions={"rknn_server": "1.7.1", "driver": "6.4.6.5.351518", "runtime": "1.7.1"})
    lab.makepyfile(test_uses_firmware=FIXTURE_USER)
    result = lab.runpytest_subprocess("-p", "no:cacheprovider", "-s", "--board", "sim-rv1126", "--board", "sim-rk3588",
                                      "--reports-dir", str(lab.path / "reports"), "--firmware", str(image),
                                      str(lab.path / "test_uses_firmware.py"), timeout=HARD_STOP_S)
    result.assert_outcomes(passed=2, errors=2)  # the rk3588 refuses an rv1126 image; the rv1126 is flashed
    assert result.stdout.str().count("FLASHED RV1126_ONLY_V4") == 2
    result.stdout.fnmatch_lines(["*ERROR*test_first*sim-rk3588*", "*ERROR*test_second*sim-rk3588*"])
    result.stdout.fnmatch_lines(["*board sim-rk3588: flashing update.img failed*"])
