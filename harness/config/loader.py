"""Load ``boards.toml`` and pick boards from it, with errors that name the file, board, key, expected and found.

Every problem is a :class:`harness.errors.ConfigError` with one line per fault, raised before any test runs.
Boards named ``sim-<profile>`` (``sim-rv1126``, ``sim-rk3588``, ...) exist implicitly, so a simulated board needs
no inventory at all.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from harness.config.models import BoardSpec, Defaults
from harness.errors import ConfigError, printable

SIM_PREFIX = "sim-"
#: Names the board a ``--board-tag`` reservation gets, e.g. ``reserved-soc=rk3588``: not a place name, since
#: which place the coordinator hands out is only known once it is acquired.
RESERVED_PREFIX = "reserved-"


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _format_errors(source: str, where: str, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(printable(p) for p in err["loc"]) or "(entry)"
        msg = err["msg"].removeprefix("Value error, ")
        found = "" if err["type"] in ("missing", "value_error") else f", found {_describe(err.get('input'))}"
        if err["type"] == "extra_forbidden":
            msg, found = "unknown key (a typo?)", ""
        lines.append(f"{source}: {where}: {key}: {msg}{found}")
    return "\n".join(lines)


def _implicit_sim(name: str) -> BoardSpec | None:
    from harness.sim.profile import (  # data only: the simulator is not started here
        known_profiles,
        load,
    )

    profile = name.removeprefix(SIM_PREFIX)
    if not name.startswith(SIM_PREFIX) or profile not in known_profiles():
        return None
    chip = load(profile).chip
    return BoardSpec(name=name, chip=chip, sim={"profile": profile}, power={"type": "sim"}, tags=["sim"])


@dataclass
class Inventory:
    """The boards a run may use, and the shared defaults."""

    path: Path | None
    defaults: Defaults = field(default_factory=Defaults)
    boards: dict[str, BoardSpec] = field(default_factory=dict)

    def get(self, name: str) -> BoardSpec:
        if name in self.boards:
            return self.boards[name]
        implicit = _implicit_sim(name)
        if implicit is not None:
            return implicit
        # a chip name selects a real board only: a simulated board is always chosen by its sim- name, so a lab
        # whose inventory lists sim-rv1126 beside its bench RV1126 never runs the simulator by accident
        by_chip = [b for b in self.boards.values() if b.chip == name.lower() and not b.is_simulated]
        if len(by_chip) == 1:
            return by_chip[0]
        where = str(self.path) if self.path else "the built-in inventory"
        if by_chip:
            raise ConfigError(f"--board {name!r} matches several {name} boards in {where}: "
                              f"{', '.join(b.name for b in by_chip)}; name one")
        if _implicit_sim(SIM_PREFIX + name.lower()) is not None:
            raise ConfigError(f"--board {name!r}: no real {name.lower()} board in {where}; add one (see the "
                              f"README, \"A real lab\") or run on a simulated one with "
                              f"--board {SIM_PREFIX}{name.lower()}")
        known = ", ".join(printable(n) for n in sorted(self.boards)) or "none"
        raise ConfigError(f"unknown board {name!r} in {where}; known boards: {known} "
                          f"(simulated: sim-<profile>, e.g. sim-rv1126)")

    def default_board(self) -> BoardSpec | None:
        """The board ``[defaults] board`` names (None when unset); a name that fits no board says where it came
        from."""
        name = self.defaults.board
        if name is None:
            return None
        try:
            return self.get(name)
        except ConfigError as exc:
            raise ConfigError(f"[defaults] board = {printable(name)}: {exc}") from None

    def select(self, names: list[str] = (), tags: list[str] = ()) -> list[BoardSpec]:
        """Boards by name (or chip), then those carrying every one of ``tags`` (``tag`` or ``chip=rk3588``)."""
        chosen: dict[str, BoardSpec] = {}
        for name in names:
            spec = self.get(name)
            chosen[spec.name] = spec
        if tags:
            for spec in self.boards.values():
                if all(_has_tag(spec, t) for t in tags):
                    chosen.setdefault(spec.name, spec)
            if not chosen:
                reservation = self._reservation(tags)
                if reservation is None:
                    raise ConfigError(f"no board in {self.path} has tag(s) {printable(', '.join(tags))}")
                chosen[reservation.name] = reservation
        return list(chosen.values())

    def _reservation(self, tags: list[str]) -> BoardSpec | None:
        """With a coordinator configured, ``--board-tag soc=rk3588`` that no inventory board matches means
        "any labgrid place with these tags": a board that reserves one (None without a coordinator)."""
        if self.default_coordinator() is None:
            return None
        bad = [t for t in tags if "=" not in t]
        if bad:
            raise ConfigError(f"no board in {self.path or 'the inventory'} has tag(s) {printable(', '.join(tags))}; "
                              f"to reserve a labgrid place every --board-tag must be KEY=VALUE (e.g. soc=rk3588), "
                              f"found {printable(', '.join(bad))}")
        filters = dict(t.split("=", 1) for t in tags)
        if "chip" in filters:
            filters["soc"] = filters.pop("chip")
        chip = filters.get("soc", "").lower()
        if not chip:
            raise ConfigError(f"--board-tag {printable(' '.join(tags))}: reserving a labgrid place needs soc=<chip> "
                              f"among the tags (the chip decides the toolkit and the tests)")
        name = RESERVED_PREFIX + ",".join(f"{k}={v}" for k, v in filters.items())
        try:
            spec = BoardSpec(name=name, chip=chip, reserve=filters, tags=list(tags))
        except ValidationError as exc:
            raise ConfigError(_format_errors("--board-tag", name, exc).replace("\n", "; ")) from None
        problems = _check_references("--board-tag", spec)
        if problems:
            where = f"[boards.{printable(name)}]: "
            raise ConfigError(problems[0].replace(where, f"{printable(' '.join(tags))}: "))
        return spec

    def default_coordinator(self) -> str | None:
        from harness.config.models import HOST_PORT

        env = os.environ.get("LG_COORDINATOR") or None
        if env is not None and not self.defaults.coordinator and not HOST_PORT.match(env):
            raise ConfigError(f"LG_COORDINATOR: expected HOST:PORT of a labgrid coordinator, found {env!r}")
        return self.defaults.coordinator or env

    def coordinator_for(self, spec: BoardSpec) -> str:
        """The labgrid coordinator of a place board: its own, [defaults], or LG_COORDINATOR."""
        found = spec.coordinator or self.default_coordinator()
        if not found:
            raise ConfigError(_no_coordinator(str(self.path or "boards.toml"), spec.name))
        return found

    def toolkit_for(self, spec: BoardSpec, npu: str) -> str | None:
        return spec.toolkit or self.defaults.toolkit_for(npu)


def _no_coordinator(source: str, name: str) -> str:
    return (f"{source}: [boards.{printable(name)}]: coordinator: a labgrid place board needs a coordinator: set "
            f"coordinator = \"HOST:PORT\" on the board or in [defaults], or export LG_COORDINATOR")


def _has_tag(spec: BoardSpec, tag: str) -> bool:
    key, sep, value = tag.partition("=")
    if sep and key in ("chip", "soc"):
        return spec.chip == value.lower()
    return tag in spec.tags


def parse_inventory(text: str, source: str = "boards.toml", path: Path | None = None) -> Inventory:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    except RecursionError:  # tomllib recurses once per nested array or inline table
        raise ConfigError(f"{source}: not valid TOML: arrays or tables nested too deeply") from None
    except ValueError as exc:  # tomllib's int() of a number with more than 4300 digits
        raise ConfigError(f"{source}: not valid TOML: {str(exc).split(':')[0].lower()} (a number too long)") from None
    unknown = set(data) - {"defaults", "boards"}
    if unknown:
        raise ConfigError(f"{source}: unknown top-level table(s) {', '.join(printable(k) for k in sorted(unknown))}; "
                          f"expected [defaults] and [boards.NAME]")
    errors: list[str] = []
    defaults = Defaults()
    raw_defaults = data.get("defaults", {})
    if not isinstance(raw_defaults, dict):
        errors.append(f"{source}: [defaults]: expected a table, found {_describe(raw_defaults)}")
    else:
        try:
            defaults = Defaults(**raw_defaults)
        except ValidationError as exc:
            errors.append(_format_errors(source, "[defaults]", exc))
    boards: dict[str, BoardSpec] = {}
    raw_boards = data.get("boards", {})
    if not isinstance(raw_boards, dict):
        raise ConfigError(f"{source}: 'boards' must be tables [boards.NAME], found {_describe(raw_boards)}")
    for name, entry in raw_boards.items():
        label = printable(name)
        if not isinstance(entry, dict):
            errors.append(f"{source}: [boards.{label}]: expected a table, found {_describe(entry)}")
            continue
        if "name" in entry:
            errors.append(f"{source}: [boards.{label}]: name: unknown key (a board's name is its table's name)")
            continue
        try:
            spec = BoardSpec(name=name, **entry)
        except ValidationError as exc:
            errors.append(_format_errors(source, f"[boards.{label}]", exc))
            continue
        errors.extend(_check_references(source, spec))
        if spec.is_place and not (spec.coordinator or defaults.coordinator or os.environ.get("LG_COORDINATOR")):
            errors.append(_no_coordinator(source, name))
        boards[name] = spec
    if errors:
        raise ConfigError("\n".join(errors))
    return Inventory(path=path, defaults=defaults, boards=boards)


def _check_references(source: str, spec: BoardSpec) -> list[str]:
    """Cross-checks pydantic cannot do alone: the chip and the simulator profile must exist."""
    from harness.chips import load_chips
    from harness.sim.profile import known_profiles

    errors = []
    chips = load_chips()
    if spec.chip not in chips:
        errors.append(f"{source}: [boards.{printable(spec.name)}]: chip: unknown chip {spec.chip!r}; "
                      f"known: {', '.join(sorted(chips))}")
    from harness.links.power import make_power

    if not spec.is_simulated:
        try:
            make_power(dict(spec.power), printable(spec.name))  # builds the driver only: no side effects
        except ConfigError as exc:
            errors.append(f"{source}: {exc}")
    if spec.sim and spec.sim.profile.removeprefix(SIM_PREFIX) not in known_profiles() \
            and not spec.sim.profile.endswith(".toml"):
        errors.append(f"{source}: [boards.{printable(spec.name)}]: sim.profile: unknown profile {spec.sim.profile!r}; "
                      f"known: {', '.join(known_profiles())}")
    return errors


def load_inventory(path: Path | str | None) -> Inventory:
    """Load the inventory; ``None`` or a missing default file gives the built-in one (simulated boards only)."""
    if path is None:
        return Inventory(path=None)
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")  # TOML is UTF-8, whatever the locale says
    except UnicodeDecodeError as exc:
        raise ConfigError(f"boards file {path} is not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    except FileNotFoundError:
        raise ConfigError(f"boards file {path} does not exist (pass --boards-file, or create it: see README)") \
            from None
    except OSError as exc:
        raise ConfigError(f"boards file {path} cannot be read: {exc.strerror}") from None
    return parse_inventory(text, source=str(path), path=path)
