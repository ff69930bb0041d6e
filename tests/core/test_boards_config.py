"""boards.toml: valid inventories load, and every mistake is one precise line naming file, board, key, found."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.config.loader import load_inventory, parse_inventory
from harness.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_shipped_inventory_loads() -> None:
    inventory = load_inventory(REPO / "boards.toml")
    assert {"sim-rv1126", "sim-rk3588"} <= set(inventory.boards)
    assert inventory.toolkit_for(inventory.get("sim-rv1126"), "rknpu1") == "1.7.1"
    assert inventory.toolkit_for(inventory.get("sim-rk3588"), "rknpu2") == "2.3.2"


REAL = """
[boards.bench-1]
chip = "rv1126"
serial = { port = "/dev/ttyUSB0", baud = 1500000, password = "rockchip" }
adb = { serial = "c3d9b8674f4b94f6" }
ssh = { host = "10.0.0.5", key = "~/.ssh/id", host_key_policy = "accept-new" }
tags = ["bench"]
"""


def test_real_board_entry() -> None:
    spec = parse_inventory(REAL).get("bench-1")
    assert spec.serial.target == "/dev/ttyUSB0" and spec.adb.serial == "c3d9b8674f4b94f6"
    assert spec.ssh.host_key_policy == "accept-new" and spec.ssh.port == 22
    assert not spec.is_simulated


def test_chip_name_picks_the_one_matching_board() -> None:
    assert parse_inventory(REAL).get("rv1126").name == "bench-1"


def test_chip_name_without_a_real_board_names_the_simulated_one() -> None:
    with pytest.raises(ConfigError, match=r"no real rk3588 board .*--board sim-rk3588"):
        parse_inventory(REAL).get("rk3588")


def test_chip_name_never_picks_a_listed_simulated_board() -> None:
    text = REAL + '[boards.sim-rv1126]\nchip = "rv1126"\nsim = { profile = "rv1126" }\n'
    assert parse_inventory(text).get("rv1126").name == "bench-1"
    assert parse_inventory(text).get("sim-rv1126").is_simulated


def test_ambiguous_chip_names_the_candidates() -> None:
    text = REAL + REAL.replace("bench-1", "bench-2")
    with pytest.raises(ConfigError, match="bench-1, bench-2"):
        parse_inventory(text).get("rv1126")


def test_unknown_board_lists_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown board 'nope'.*known boards: bench-1"):
        parse_inventory(REAL).get("nope")


def test_implicit_simulated_boards() -> None:
    spec = parse_inventory("").get("sim-rk3566")
    assert spec.chip == "rk3566" and spec.sim.profile == "rk3566"


@pytest.mark.parametrize("text, expected", [
    ('[boards.b]\nchip = "rv1126"\nserial = { port = "/dev/ttyUSB0", baud = "fast" }',
     r"boards.toml: \[boards.b\]: serial.baud: .*integer.*found 'fast'"),
    ('[boards.b]\nchip = "rv1126"\nadb = { serial = "x" }\nsshh = { host = "h" }',
     r"\[boards.b\]: sshh: unknown key \(a typo\?\)"),
    ('[boards.b]\nchip = "rv9999"\nadb = { serial = "x" }', r"chip: unknown chip 'rv9999'; known: .*rv1126"),
    ('[boards.b]\nchip = "rv1126"', r"at least one of 'serial', 'adb', 'ssh'"),
    ('[boards.b]\nchip = "rv1126"\nssh = { host = "h", host_key_policy = "yolo" }',
     r"ssh.host_key_policy: .*'strict', 'accept-new' or 'insecure'.*found 'yolo'"),
    ('[boards.b]\nchip = "rv1126"\nadb = { address = "nohostport" }', r"adb.address: expected HOST:PORT"),
    ('[boards.b]\nchip = "rv1126"\nsim = { profile = "rk9" }', r"sim.profile: unknown profile 'rk9'"),
    ('[board.b]\nchip = "rv1126"', r"unknown top-level table\(s\) board"),
    ('[boards.b]\nchip = "rv1126\n', r"not valid TOML: .*line 2"),
])
def test_bad_inventory_is_one_precise_line(text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        parse_inventory(text)


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_inventory("/nonexistent/boards.toml")


def test_tag_selection() -> None:
    inventory = parse_inventory(REAL + REAL.replace("bench-1", "other").replace('"bench"', '"x"'))
    assert [s.name for s in inventory.select(tags=["bench"])] == ["bench-1"]
    assert {s.name for s in inventory.select(tags=["chip=rv1126"])} == {"bench-1", "other"}
    with pytest.raises(ConfigError, match="no board .* has tag"):
        inventory.select(tags=["nightly"])


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60)


def test_cli_check_reports_line_and_column(tmp_path: Path) -> None:
    (tmp_path / "boards.toml").write_text('[boards.b]\nchip = "rv1126"\nadb = { serial = "x" \n')
    result = _cli("boards", "check", cwd=tmp_path)
    assert result.returncode == 2
    assert "line 3" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_cli_list(tmp_path: Path) -> None:
    (tmp_path / "boards.toml").write_text(REAL)
    result = _cli("boards", "list", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert '"bench-1"' in result.stdout and '"rv1126"' in result.stdout


def test_default_board_is_the_one_named_in_defaults() -> None:
    text = '[defaults]\nboard = "sim-rk3588"\n' + REAL
    assert parse_inventory(text).default_board().name == "sim-rk3588"
    assert parse_inventory(REAL).default_board() is None


def test_default_board_that_fits_no_board_says_where_it_came_from() -> None:
    with pytest.raises(ConfigError, match=r"\[defaults\] board = rv9999: unknown board 'rv9999'"):
        parse_inventory('[defaults]\nboard = "rv9999"\n' + REAL).default_board()
