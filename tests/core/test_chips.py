"""chips.toml loads, agrees with the reference facts and with the rest of the harness, and refuses bad entries."""

from __future__ import annotations

import re
import tomllib
from importlib.resources import files
from pathlib import Path

import pytest
from pydantic import ValidationError

from harness.chips import chip, chip_by_usb_pid, chips_by_usb_pid, load_chips, parse_chips, usb_ids
from harness.errors import ConfigError
from harness.npu.model_compat import NPU_TWINS

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "reference"
PROFILES = Path(__file__).resolve().parents[2] / "harness" / "sim" / "profiles"

EXPECTED = {"rv1126", "rv1109", "rk1808", "rk1806", "rk3399pro", "rk3566", "rk3568", "rk3588", "rk3588s",
            "rk3562", "rk3576", "rv1106", "rv1103"}


def _raw() -> dict:
    return tomllib.loads(files("harness.data").joinpath("chips.toml").read_text())


def test_every_chip_is_there_with_a_valid_npu():
    chips = load_chips()
    assert set(chips) == EXPECTED
    assert {c.npu for c in chips.values()} == {"rknpu1", "rknpu2"}
    assert all(name == c.name for name, c in chips.items())


def test_usb_ids_are_unique_except_between_twins():
    owners: dict[int, set[str]] = {}
    for c in load_chips().values():
        for pid in (c.usb_pid, *c.usb_pid_running):
            owners.setdefault(pid, set()).add(c.name)
    shared = [names for names in owners.values() if len(names) > 1]
    assert shared, "twins share ids: the check below must have something to check"
    for names in shared:
        assert len(names) == 2 and chip(min(names)).twin == max(names)
    gadgets = {usb_ids().adb_pid, usb_ids().ntb_pid}
    assert not gadgets & set(owners), "a gadget id must not be mistaken for a chip in Loader/Maskrom"


def test_twins_are_mutual_and_agree_with_model_compat():
    chips = load_chips()
    twins = {c.family for c in chips.values() if c.twin}
    for c in chips.values():
        if c.twin:
            assert chips[c.twin].twin == c.name and chips[c.twin].npu == c.npu
    # twins here (one die, one USB id) run the same models, so model_compat must group them too; it may group
    # more (RK3399Pro's NPU is an RK1808 behind another SoC, with its own USB id)
    assert twins and all(any(family <= group for group in NPU_TWINS) for family in twins)


def test_usb_ids_match_the_reference_facts():
    """Each 'CHIP[/CHIP] 0xPID' of rockchip-facts.md's USB section is what chips.toml says."""
    facts = (REFERENCE / "rockchip-facts.md").read_text()
    section = facts.split("## USB (vendor 0x2207)")[1].split("\n## ")[0]
    pairs = re.findall(r"((?:R[KV]\w+/)*R[KV]\w+) (0x[0-9a-f]{4})", section)
    assert len(pairs) >= 7
    for names, pid in pairs:
        for name in names.lower().split("/"):
            if name == "rk3399":
                continue  # the plain RK3399 has no NPU; RK3399Pro answers to its id
            assert chip(name).usb_pid == int(pid, 16), name
    assert chip("rk3562").usb_pid_confirmed is False  # the facts call it unconfirmed
    assert set(chip("rk1808").usb_pid_running) == {0x1005, 0x0019}


def test_paths_baud_and_cores():
    chips = load_chips()
    for c in chips.values():
        if c.name in ("rv1106", "rv1103"):
            assert (c.runtime_lib, c.server_bin, c.console_baud) == (
                "/oem/usr/lib/librknnmrt.so", "/oem/usr/bin/rknn_server", 115200)
        else:
            assert c.runtime_lib == {"rknpu1": "/usr/lib/librknn_runtime.so", "rknpu2": "/usr/lib/librknnrt.so"}[c.npu]
            assert (c.server_bin, c.console_baud) == ("/usr/bin/rknn_server", 1500000)
        assert c.compatible == f"rockchip,{c.name}"
    assert {n: c.npu_cores for n, c in chips.items() if c.npu_cores > 1} == {"rk3588": 3, "rk3588s": 3, "rk3576": 2}
    assert chip("rk3588").core_mask_all == 7  # Lite2's CORE_0_1_2


def test_simulator_profiles_agree_with_chips():
    for profile in PROFILES.glob("*.toml"):
        data = tomllib.loads(profile.read_text())
        c = chip(data["chip"])
        assert data.get("console_baud", c.console_baud) == c.console_baud, profile.name
        compatible = data.get("compatible")
        if compatible:
            assert compatible[-1] == c.compatible, profile.name


def test_lookups():
    assert chip(" RK3588 ").name == "rk3588"
    with pytest.raises(ConfigError, match=r"unknown chip 'rk3399'; known chips: rk1806, rk1808, .*rv1126$"):
        chip("rk3399")
    assert chip_by_usb_pid(0x110B).name == "rv1126"
    assert [c.name for c in chips_by_usb_pid(0x350A)] == ["rk3566", "rk3568"]
    assert chip_by_usb_pid(0x1005).name == "rk1808"
    assert chip_by_usb_pid(0x0006) is None and chips_by_usb_pid(0xBEEF) == []


def test_load_chips_returns_a_copy():
    load_chips().pop("rk3588")
    assert "rk3588" in load_chips()
    with pytest.raises(ValidationError, match="frozen"):
        chip("rk3588").npu_cores = 1


def _with(change: dict) -> dict:
    data = _raw()
    for name, fields in change.items():
        data["chips"].setdefault(name, {}).update(fields)
    return data


@pytest.mark.parametrize("change, error", [
    ({"rk3588": {"npu": "rknpu3"}}, r"\[chips.rk3588\]: npu: Input should be 'rknpu1' or 'rknpu2'"),
    ({"rk3588": {"usb_pdi": 1}}, r"\[chips.rk3588\]: usb_pdi: Extra inputs are not permitted"),
    ({"rk3576": {"usb_pid": 0x350B}}, r"USB id 0x350b is shared by rk3576, rk3588, rk3588s, which are not twins"),
    ({"rk3562": {"twin": "rk3576"}}, r"\[chips.rk3562\] names twin 'rk3576', whose twin is None"),
    ({"rk3562": {"twin": "rk9999"}}, r"twin 'rk9999' is not a known chip"),
    ({"rv1109": {"npu": "rknpu2"}}, r"twins rv1109 and rv1126 have different npu values"),
    ({"rk3588": {"compatible": "rk3588"}}, r"\[chips.rk3588\]: compatible: String should match"),
])
def test_bad_entries_are_refused_with_the_entry_named(change, error):
    with pytest.raises(ConfigError, match=error):
        parse_chips(_with(change))


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as info:
        parse_chips(_with({"rk3588": {"npu": "x"}, "rv1126": {"npu_cores": 0}}))
    assert "[chips.rk3588]" in str(info.value) and "[chips.rv1126]" in str(info.value)


def test_unknown_top_level_table_is_refused():
    data = _raw()
    data["chip"] = {}
    with pytest.raises(ConfigError, match="unknown top-level table"):
        parse_chips(data)
