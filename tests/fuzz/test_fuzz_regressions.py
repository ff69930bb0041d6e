"""The bugs the parser fuzzing found, one plain test each: every one used to escape as a bare Python exception
(TypeError, ValueError, RecursionError, AttributeError, UnicodeDecodeError) instead of a one-line project error."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from harness.config.loader import load_inventory, parse_inventory
from harness.errors import ConfigError
from harness.npu.rknn_file import MAGIC, RknnFormatError, read_rknn, unpack_sim_model
from harness.npu.versions import normalize_version, parse_rknpu, same_version
from harness.report.gate import gate
from harness.report.gate_input import load_run
from harness.report.results import ResultsFormatError, load_results, write_merged

BOARD = '[boards.b]\nchip = "rv1126"\nadb = { serial = "x" }\n'
HUGE = "1." + "9" * 5000  # int() refuses more than 4300 digits with a ValueError


@pytest.mark.parametrize("text, message", [
    ("defaults = 1\n", r"\[defaults\]: expected a table, found 1"),            # was TypeError (** of an int)
    (BOARD + 'name = "c"\n', r"\[boards.b\]: name: unknown key"),              # was TypeError (name given twice)
    ("x = " + "[" * 2000 + "]" * 2000 + "\n", "nested too deeply"),           # was RecursionError in tomllib
    (BOARD + "power = { type = [] }\n", "power.type: expected a string"),    # was TypeError (unhashable type)
    ("x = " + "9" * 5000 + "\n", "a number too long"),                       # was ValueError in tomllib's int()
])
def test_inventory_faults_are_config_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_inventory(text)


def test_a_newline_in_an_unknown_power_key_stays_on_one_line() -> None:  # found by a 3000-example run
    with pytest.raises(ConfigError) as caught:
        parse_inventory(BOARD + 'power = { type = "command", on_cmd = "a", off_cmd = "b", "\\n" = [] }\n')
    assert "\n" not in str(caught.value) and "unknown key(s) \\n for type 'command'" in str(caught.value)


def test_a_newline_in_a_quoted_key_keeps_one_line_per_fault() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_inventory('[defaults]\n"a\\nb" = 1\n[boards."x\\ny"]\nchip = 5\nadb = { serial = "s" }\n')
    lines = str(caught.value).split("\n")
    assert len(lines) == 2 and all(line.startswith("boards.toml: ") for line in lines), lines
    assert "a\\nb: unknown key" in lines[0] and "[boards.x\\ny]: chip" in lines[1]


def test_a_boards_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "boards.toml"
    path.write_bytes('[boards.b]\nchip = "rv1126"\ndescription = "Bänk"\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match=f"boards file {path} is not UTF-8 text"):  # was UnicodeDecodeError
        load_inventory(path)


def test_versions_with_more_digits_than_int_takes() -> None:
    assert normalize_version(HUGE) is None  # was ValueError from packaging's int()
    assert same_version(HUGE, HUGE) and not same_version(HUGE, "1.9")
    assert parse_rknpu(f"RKNPU driver: v{HUGE}").written == "v" + HUGE  # kept as written, not lost


def test_a_deeply_nested_rknn_trailer() -> None:
    nested = b'{"version": "1.6.0", "x": ' + b"[" * 900 + b"]" * 900 + b"}"
    data = MAGIC + struct.pack("<QQ", 2, 0) + struct.pack("<Q", len(nested)) + nested
    with pytest.raises(RknnFormatError, match="no readable JSON trailer"):  # was RecursionError in to_dict()
        read_rknn(data).to_dict()
    body = b"[" * 100_000
    sim = MAGIC + struct.pack("<QQ", 6, 0) + bytes(0x40 - 24) + struct.pack("<Q", len(body)) + body
    with pytest.raises(RknnFormatError, match="nested too deeply"):  # was RecursionError from json
        unpack_sim_model(sim)


@pytest.mark.parametrize("content", [b"\x80", b"{", "[" * 100_000, '{"schema_version": 1, "n": ' + "1" * 5000 + "}"])
def test_unreadable_results_json(tmp_path: Path, content) -> None:
    path = tmp_path / "results.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ResultsFormatError, match="is not valid JSON"):  # was a bare ValueError/RecursionError
        load_results(path)
    run = load_run(tmp_path)  # the gate: an interrupted run, not a crash
    assert not run.complete and "unreadable" in run.problem


@pytest.mark.parametrize("part", [{"boards": [1]}, {"boards": {"b": 1}}, {"tests": "abc"}, {"tests": [1]},
                                  {"tests": [{"outcome": []}]}, {"host": "h"}, {"started": 1}])
def test_worker_parts_of_the_wrong_shape(tmp_path: Path, part: dict) -> None:
    (tmp_path / "results.gw0.json").write_text(json.dumps({"schema_version": 1, "run_id": "r", **part}))
    run = load_run(tmp_path)  # was AttributeError/TypeError inside merge_results
    assert not run.complete and "unreadable: results.gw0.json" in run.problem
    merged = write_merged(tmp_path, run_id="r", exitstatus=0)  # the xdist controller's merge, same
    assert merged["complete"] is False and "results.gw0.json" in merged["problems"][0]


@pytest.mark.parametrize("board", [{"versions": {"driver": "0.9.8"}}, {"matrix": {"mismatches": ["driver"]}},
                                   {"matrix": {"expected": [1]}}])
def test_board_entries_the_gate_cannot_read(tmp_path: Path, board: dict) -> None:
    (tmp_path / "results.json").write_text(json.dumps({"schema_version": 1, "run_id": "r", "complete": True,
                                                       "boards": {"b": board}}))
    with pytest.raises(ConfigError, match="not a results file: boards.b"):  # was AttributeError in gate.py
        gate([tmp_path])


@pytest.mark.parametrize("mismatches", [[None], [1], "driver"])
def test_matrix_mismatches_that_are_not_objects(tmp_path: Path, mismatches) -> None:  # found by a 3000-example run
    board = {"chip": "rk3588", "matrix": {"ok": False, "mismatches": mismatches}}
    (tmp_path / "results.json").write_text(json.dumps({"schema_version": 1, "run_id": "r", "complete": True,
                                                       "boards": {"b": board}, "tests": []}))
    with pytest.raises(ConfigError, match="matrix.mismatches must be a list of objects"):  # was AttributeError
        gate([tmp_path])


def test_a_newline_in_a_results_key_keeps_the_error_on_one_line(tmp_path: Path) -> None:  # found by a long run
    test = {"nodeid": "t", "outcome": "failed", "latency": [{"model": "m", "stats": {"\n": []}}]}
    (tmp_path / "results.json").write_text(json.dumps({"schema_version": 1, "run_id": "r", "complete": True,
                                                       "tests": [test]}))
    with pytest.raises(ConfigError) as caught:
        load_run(tmp_path)
    assert "\n" not in str(caught.value) and "stats.\\n" in str(caught.value)
