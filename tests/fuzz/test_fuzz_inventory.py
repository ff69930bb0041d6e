"""boards.toml: any text, and valid inventories with wrong types, unknown keys and strange names, give an
Inventory or a ConfigError whose every line names the file and the fault; never another exception."""

from __future__ import annotations

from fuzzing import FUZZ, FUZZ_SLOW, TOML_VALUES, mutated_document, mutated_text, to_toml, written
from hypothesis import given
from hypothesis import strategies as st

from harness.config.loader import Inventory, load_inventory, parse_inventory
from harness.errors import ConfigError

SOURCE = "fuzz/boards.toml"
#: One board of each kind the README describes: a bench board with every link, a labgrid place, a simulator.
VALID = {
    "defaults": {"toolkit": {"rknpu1": "1.7.1", "rknpu2": "2.3.2"}, "coordinator": "lab-coordinator:20408",
                 "command_timeout": 30.0, "link_order": ["adb", "ssh", "console"]},
    "boards": {
        "rv1126-bench-01": {
            "chip": "rv1126",
            "serial": {"port": "/dev/ttyUSB0", "baud": 1500000, "login": "root", "password": "rockchip"},
            "adb": {"serial": "c3d9b8674f4b94f6"},
            "ssh": {"host": "192.168.1.50", "user": "root", "key": "~/.ssh/id_ed25519",
                    "host_key_policy": "accept-new"},
            "power": {"type": "command", "on_cmd": "relayctl on 3", "off_cmd": "relayctl off 3"},
            "tags": ["bench", "nightly"],
        },
        "rk3588-01": {"chip": "rk3588", "place": "rk3588-01", "place_auth": {"ssh_key": "~/.ssh/lab_ed25519"},
                      "tags": ["nightly"]},
        "sim-mine": {"chip": "rv1126", "sim": {"profile": "rv1126", "faults": []}},
    },
}
NAMES = st.text(max_size=12) | st.sampled_from(["name", "sim-rv1126", "reserved-soc=rk3588", "a.b", "", " ", "ä"])


def check(text: str) -> Inventory | None:
    """Parse; a ConfigError must be one line per fault, each naming the file."""
    try:
        inventory = parse_inventory(text, source=SOURCE)
    except ConfigError as exc:
        lines = str(exc).split("\n")
        assert all(line.startswith(SOURCE + ": ") for line in lines), str(exc)
        return None
    assert isinstance(inventory, Inventory)
    return inventory


def test_the_valid_inventory_parses() -> None:  # the base every mutation below starts from
    inventory = check(to_toml(VALID))
    assert inventory is not None and sorted(inventory.boards) == sorted(VALID["boards"])


@FUZZ
@given(st.text(max_size=300))
def test_any_text(text: str) -> None:
    check(text)


@FUZZ
@given(mutated_text(to_toml(VALID)))
def test_valid_text_with_character_edits(text: str) -> None:
    check(text)


@FUZZ
@given(mutated_document(VALID, TOML_VALUES))
def test_fields_replaced_deleted_or_added(doc: dict) -> None:
    check(to_toml(doc))


@FUZZ
@given(st.dictionaries(NAMES, st.sampled_from(list(VALID["boards"].values())) | TOML_VALUES, max_size=3),
       st.dictionaries(NAMES, TOML_VALUES, max_size=2))
def test_strange_board_names_and_top_level_keys(boards: dict, top: dict) -> None:
    check(to_toml({**top, "defaults": VALID["defaults"], "boards": boards}))


@FUZZ
@given(TOML_VALUES, TOML_VALUES)
def test_defaults_and_boards_of_the_wrong_type(defaults, boards) -> None:
    check(to_toml({"defaults": defaults, "boards": boards}))


@FUZZ
@given(st.lists(NAMES, max_size=3), st.lists(NAMES | st.sampled_from(["soc=rk3588", "chip=RV1126", "nightly"]),
                                              max_size=3))
def test_selecting_boards_by_any_name_or_tag(names: list[str], tags: list[str]) -> None:
    inventory = check(to_toml(VALID))
    try:
        chosen = inventory.select(names, tags)
    except ConfigError as exc:
        assert "\n" not in str(exc)
    else:
        assert all(spec.name for spec in chosen)


@FUZZ_SLOW
@given(st.binary(max_size=200) | st.sampled_from([b"\xff\xfe[boards]", "chip = 'é'".encode("latin-1"),
                                                  to_toml(VALID).encode("utf-16")]))
def test_a_boards_file_of_any_bytes(data: bytes) -> None:
    with written("boards.toml", data) as path:
        try:
            load_inventory(path)
        except ConfigError as exc:
            assert str(path) in str(exc).split("\n")[0]
