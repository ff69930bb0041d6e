"""The version matrices: shipped data equals its sources, typos are refused, and every row is checked against
boards that print Rockchip's real version strings (one consistent board per row, one mismatch per component)."""

from __future__ import annotations

import json
import tomllib
from importlib.resources import files

import pytest
from version_corpus import facts_rknpu2_releases, manual_rknpu1_table, rknpu1_board, rknpu2_board

from harness.errors import ConfigError
from harness.npu.matrix import check, load_matrix, parse_matrix
from harness.npu.probes import probe_versions
from harness.npu.versions import at_least, same_version

RKNPU1 = load_matrix("rknpu1")
RKNPU2 = load_matrix("rknpu2")
NPU1_PATHS = dict(runtime_lib="/usr/lib/librknn_runtime.so", server_bin="/usr/bin/rknn_server")
NPU2_PATHS = dict(runtime_lib="/usr/lib/librknnrt.so", server_bin="/usr/bin/rknn_server")


def probe1(board):
    return probe_versions(board, npu="rknpu1", **NPU1_PATHS)


def probe2(board):
    return probe_versions(board, npu="rknpu2", **NPU2_PATHS)


def shipped_text(npu: str) -> str:
    return files("harness.data").joinpath(f"{npu}_matrix.toml").read_text(encoding="utf-8")


# ------------------------------------------------------------------- the data equals its sources


def test_rknpu1_rows_equal_the_manual_table_as_written():
    manual = manual_rknpu1_table()
    assert len(manual) == 11, "the manual's 4.1.3 table has 11 rows"
    shipped = {r.toolkit: r for r in RKNPU1.releases}
    for toolkit, servers, drivers, runtimes in manual:
        row = shipped[toolkit]
        assert list(row.accepted["rknn_server"]) == servers, toolkit
        assert list(row.accepted["driver"]) == drivers, toolkit  # irregular strings kept as written
        assert list(row.accepted["runtime"]) == runtimes, toolkit


def test_rknpu1_rows_beyond_the_manual():
    assert RKNPU1.known()[-2:] == ["1.7.3", "1.7.5"]
    for toolkit in ("1.7.3", "1.7.5"):
        row = RKNPU1.release(toolkit)
        assert row.accepted == {"rknn_server": (toolkit,), "runtime": (toolkit,), "driver": ("6.4.6.5.351518",)}


def test_rknpu2_releases_equal_the_facts_list():
    assert RKNPU2.known() == facts_rknpu2_releases()
    for row in RKNPU2.releases:
        assert same_version(row.accepted["runtime"][0], row.toolkit)
        assert same_version(row.accepted["rknn_server"][0], row.toolkit)
    enforced = {r.toolkit: r.driver_min for r in RKNPU2.releases if not r.driver_min_inferred}
    # documented (1.5.2, 1.6.0, 2.0.0b0) and implied forward from 2.0.0b0 (a newer runtime needs no older driver)
    assert enforced == {"1.5.2": "0.8.8", "1.6.0": "0.9.2", "2.0.0b0": "0.9.2", "2.1.0": "0.9.2",
                        "2.2.0": "0.9.2", "2.3.0": "0.9.2", "2.3.2": "0.9.2"}
    inferred = [r.toolkit for r in RKNPU2.releases if r.driver_min_inferred]
    assert inferred == ["1.2.0", "1.3.0", "1.4.0", "1.5.0"]


@pytest.mark.parametrize("mutation, message", [
    (lambda t: t.replace('toolkit = "1.3.2"', 'toolkit = "1.3..2"'), "not a version"),
    (lambda t: t.replace('toolkit = "1.3.2"', 'toolkit = "1.3.0"'), "duplicate"),
    (lambda t: t.replace('toolkit = "1.6.1"', 'toolkit = "1.5.9"'), "out of order"),
    (lambda t: t.replace('driver = ["6.4.0.7915"]', 'driver = ["6.4.0.79l5"]'), "not a version"),
    (lambda t: t.replace('runtime = ["1.4.0"]', 'runtme = ["1.4.0"]'), "runtme"),
    (lambda t: t.replace('rknn_server = ["1.6.1"]', 'rknn_server = []'), "rknn_server"),
    (lambda t: t.replace('npu = "rknpu1"', 'npu = "rknpu3"'), "unknown NPU generation"),
])
def test_a_typo_in_the_rknpu1_matrix_is_refused(mutation, message):
    text = mutation(shipped_text("rknpu1"))
    assert text != shipped_text("rknpu1"), "the mutation must change the file"
    with pytest.raises(ConfigError, match=message):
        parse_matrix(tomllib.loads(text), source="rknpu1_matrix.toml")


@pytest.mark.parametrize("mutation, message", [
    (lambda t: t.replace('driver_min = "0.9.2"\n\n[[release]]\ntoolkit = "2.0.0b0"',
                         'driver_min = "0.9.x"\n\n[[release]]\ntoolkit = "2.0.0b0"'), "not a version"),
    (lambda t: t.replace('\ndriver_min_inferred = true', '\ndriver_min_infered = true', 1), "driver_min_infered"),
    (lambda t: t.replace('toolkit = "2.0.0b0"', 'toolkit = "1.5.9"'), "out of order"),
    (lambda t: t.replace('toolkit = "2.1.0"', 'toolkit = "2.0.0b0"'), "duplicate"),
    (lambda t: t.replace('component = "runtime"', 'component = "runtim"', 1), "unknown component"),
])
def test_a_typo_in_the_rknpu2_matrix_is_refused(mutation, message):
    text = mutation(shipped_text("rknpu2"))
    assert text != shipped_text("rknpu2"), "the mutation must change the file"
    with pytest.raises(ConfigError, match=message):
        parse_matrix(tomllib.loads(text), source="rknpu2_matrix.toml")


# ------------------------------------------------------------------- every RKNPU1 row


@pytest.mark.parametrize("toolkit", RKNPU1.known())
def test_rknpu1_row_consistent_board_passes(toolkit):
    row = RKNPU1.release(toolkit)
    verdict = check(probe1(rknpu1_board(toolkit_row=row)), npu="rknpu1", toolkit=toolkit)
    assert verdict.ok, verdict.explain()
    assert toolkit in verdict.board_matches or not verdict.mismatches


def _other_version(component: str, row) -> str:
    """A version of ``component`` from another row that this row does not accept (normalized)."""
    for other in RKNPU1.releases:
        for version in other.accepted[component]:
            if not any(same_version(version, mine) for mine in row.accepted[component]):
                return version
    raise AssertionError("no other version")


@pytest.mark.parametrize("component", ["rknn_server", "driver", "runtime"])
@pytest.mark.parametrize("toolkit", RKNPU1.known())
def test_rknpu1_row_each_component_mismatch_is_named(toolkit, component):
    row = RKNPU1.release(toolkit)
    wrong = _other_version(component, row)
    board = rknpu1_board(toolkit_row=row, **{"server" if component == "rknn_server" else component: wrong})
    verdict = check(probe1(board), npu="rknpu1", toolkit=toolkit)
    assert not verdict.ok
    assert [m.component for m in verdict.mismatches] == [component]
    mismatch = verdict.mismatches[0]
    assert same_version(mismatch.found, wrong)
    assert mismatch.section.startswith("4.1")
    assert "RKNN_ERR" in mismatch.symptom
    text = verdict.explain()
    assert component in text and mismatch.expected in text and mismatch.fix in text


def test_manual_driver_spelling_6_3_3_03718_matches_row_1_0_0():
    """1.0.0's driver is written 6.3.3.3718, 1.1.0's 6.3.3.03718: a numeric compare treats them as one."""
    row = RKNPU1.release("1.0.0")
    board = rknpu1_board(toolkit_row=row, driver="6.3.3.03718")
    assert check(probe1(board), npu="rknpu1", toolkit="1.0.0").ok


def test_rknpu1_no_matching_row_names_the_nearest():
    """toolkit 1.5.x boards (server 1.5.0, driver 6.4.3.5.293908) are in no row: the nearest ones are named."""
    row = RKNPU1.release("1.6.0")
    board = rknpu1_board(toolkit_row=row, server="1.5.0", runtime="1.5.0")
    verdict = check(probe1(board), npu="rknpu1", toolkit="1.7.5")
    assert not verdict.ok and not verdict.board_matches
    assert "1.6.0" in verdict.nearest and "1.6.1" in verdict.nearest
    assert "nearest" in verdict.explain()


def test_rknpu1_board_of_another_release_is_named():
    board = rknpu1_board(toolkit_row=RKNPU1.release("1.7.3"))
    verdict = check(probe1(board), npu="rknpu1", toolkit="1.7.5")
    assert {m.component for m in verdict.mismatches} == {"rknn_server", "runtime"}
    assert verdict.board_matches == ("1.7.3",)


def test_unreadable_component_is_a_mismatch_with_the_board_text():
    board = rknpu1_board(toolkit_row=RKNPU1.release("1.7.5"))
    board.files.pop("/usr/lib/librknn_runtime.so")
    verdict = check(probe1(board), npu="rknpu1", toolkit="1.7.5")
    (mismatch,) = verdict.mismatches
    assert mismatch.component == "runtime" and mismatch.found is None
    assert "No such file" in mismatch.raw
    assert "unreadable" in verdict.explain()


def test_unknown_toolkit_lists_known_releases():
    record = probe1(rknpu1_board(toolkit_row=RKNPU1.release("1.7.5")))
    with pytest.raises(ConfigError) as info:
        check(record, npu="rknpu1", toolkit="1.9.9")
    assert "1.9.9" in str(info.value) and "1.0.0" in str(info.value) and "1.7.5" in str(info.value)
    with pytest.raises(ConfigError, match="rknpu2 matrix"):
        check(record, npu="rknpu2", toolkit="1.6.0")
    with pytest.raises(ConfigError, match="unknown NPU generation"):
        check(record, npu="npu9", toolkit="1.7.5")


def test_prerelease_toolkit_uses_its_release_row():
    """Model trailers say 1.7.5b1; that build belongs to the 1.7.5 row."""
    record = probe1(rknpu1_board(toolkit_row=RKNPU1.release("1.7.5")))
    assert check(record, npu="rknpu1", toolkit="1.7.5b1").ok


def test_verdict_serializes_to_json():
    board = rknpu1_board(toolkit_row=RKNPU1.release("1.6.1"), driver="6.4.6.5.351518")
    verdict = check(probe1(board), npu="rknpu1", toolkit="1.6.1")
    data = json.loads(json.dumps(verdict.to_dict()))
    assert data["ok"] is False and data["mismatches"][0]["component"] == "driver"
    assert data["found"]["driver"] == "6.4.6.5.351518"


# ------------------------------------------------------------------- every RKNPU2 row


@pytest.mark.parametrize("source", ["debugfs", "procfs", "dmesg"])
@pytest.mark.parametrize("toolkit", RKNPU2.known())
def test_rknpu2_row_consistent_board_passes(toolkit, source):
    row = RKNPU2.release(toolkit)
    board = rknpu2_board(runtime=row.accepted["runtime"][0], server=row.accepted["rknn_server"][0],
                         driver=row.driver_min, driver_source=source)
    record = probe2(board)
    verdict = check(record, npu="rknpu2", toolkit=toolkit)
    assert verdict.ok, verdict.explain()
    assert same_version(record.driver.version, row.driver_min)


@pytest.mark.parametrize("component", ["rknn_server", "runtime"])
@pytest.mark.parametrize("toolkit", RKNPU2.known())
def test_rknpu2_row_server_or_runtime_mismatch(toolkit, component):
    row = RKNPU2.release(toolkit)
    known = RKNPU2.known()
    wrong = known[known.index(toolkit) - 1]  # the previous release (wraps to the newest for the first)
    versions = {"runtime": row.accepted["runtime"][0], "server": row.accepted["rknn_server"][0]}
    versions["server" if component == "rknn_server" else "runtime"] = wrong
    verdict = check(probe2(rknpu2_board(driver="0.9.8", **versions)), npu="rknpu2", toolkit=toolkit)
    assert [m.component for m in verdict.mismatches] == [component]
    assert same_version(verdict.mismatches[0].found, wrong)
    assert wrong in verdict.board_matches or verdict.nearest


@pytest.mark.parametrize("toolkit", RKNPU2.known())
def test_rknpu2_row_old_driver(toolkit):
    """Below a documented minimum: a mismatch. Below an inferred one: a warning, the board still passes."""
    row = RKNPU2.release(toolkit)
    old = "0.8.2" if row.driver_min == "0.8.8" else "0.8.8"
    assert not at_least(old, row.driver_min)
    board = rknpu2_board(runtime=row.accepted["runtime"][0], server=row.accepted["rknn_server"][0], driver=old)
    verdict = check(probe2(board), npu="rknpu2", toolkit=toolkit)
    if row.driver_min_inferred:
        assert verdict.ok and any("inferred minimum" in w for w in verdict.warnings)
    else:
        assert [m.component for m in verdict.mismatches] == ["driver"]
        assert verdict.mismatches[0].expected.startswith(">= ")


def test_rknpu2_unreadable_runtime_of_sdk_1_5_aarch64():
    """The 1.5.x aarch64 librknnrt shows no version to `strings`: reported unreadable, never guessed."""
    board = rknpu2_board(runtime="1.5.2", server="1.5.2", driver="0.9.8")
    board.files["/usr/lib/librknnrt.so"] = ("GLIBC_2.17", "rknn model version is not supported")
    verdict = check(probe2(board), npu="rknpu2", toolkit="1.5.2")
    assert [(m.component, m.found) for m in verdict.mismatches] == [("runtime", None)]


def test_rknpu2_release_notes_and_chip_warnings():
    board = rknpu2_board(runtime="1.5.0", server="1.5.0", driver="0.9.8", chip="rv1106")
    verdict = check(probe2(board), npu="rknpu2", toolkit="1.5.0")
    assert verdict.ok
    assert any("header version 6" in n for n in verdict.notes)
    assert any("RV1103/RV1106" in w for w in verdict.warnings)
    newer = check(probe2(rknpu2_board(runtime="2.3.2", server="2.3.2", driver="0.9.8", chip="rv1106")),
                  npu="rknpu2", toolkit="2.3.2")
    assert newer.ok and not newer.warnings and not any("header" in n for n in newer.notes)


def test_server_not_running_is_a_warning():
    board = rknpu2_board(runtime="2.3.2", server="2.3.2", driver="0.9.8", server_running=False)
    verdict = check(probe2(board), npu="rknpu2", toolkit="2.3.2")
    assert verdict.ok and any("not running" in w for w in verdict.warnings)
