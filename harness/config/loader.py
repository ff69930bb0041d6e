"""Load ``boards.toml`` and pick boards from it, with errors that name the file, board, key, expected and found.

Every problem is a :class:`harness.errors.ConfigError` with one line per fault, raised before any test runs.
Boards named ``sim-<profile>`` (``sim-rv1126``, ``sim-rk3588``, ...) exist implicitly, so a simulated board needs
no inventory at all.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from harness.config.models import BoardSpec, Defaults
from harness.errors import ConfigError

SIM_PREFIX = "sim-"


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _format_errors(source: str, where: str, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(entry)"
        msg = err["msg"].removeprefix("Value error, ")
        found = "" if err["type"] in ("missing", "value_error") else f", found {_describe(err.get('input'))}"
        if err["type"] == "extra_forbidden":
            msg, found = "unknown key (a typo?)", ""
        lines.append(f"{source}: {where}: {key}: {msg}{found}")
    return "\n".join(lines)


def _implicit_sim(name: str) -> BoardSpec | None:
    from harness.sim.profile import known_profiles, load  # data only: the simulator is not started here

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
        by_chip = [b for b in self.boards.values() if b.chip == name.lower()]
        if len(by_chip) == 1:
            return by_chip[0]
        if not by_chip:
            implicit = _implicit_sim(SIM_PREFIX + name.lower())
            if implicit is not None and not any(b.chip == name.lower() for b in self.boards.values()):
                return implicit
        where = str(self.path) if self.path else "the built-in inventory"
        if by_chip:
            raise ConfigError(f"--board {name!r} matches several {name} boards in {where}: "
                              f"{', '.join(b.name for b in by_chip)}; name one")
        known = ", ".join(sorted(self.boards)) or "none"
        raise ConfigError(f"unknown board {name!r} in {where}; known boards: {known} "
                          f"(simulated: sim-<profile>, e.g. sim-rv1126)")

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
                raise ConfigError(f"no board in {self.path} has tag(s) {', '.join(tags)}")
        return list(chosen.values())

    def toolkit_for(self, spec: BoardSpec, npu: str) -> str | None:
        return spec.toolkit or self.defaults.toolkit_for(npu)


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
    unknown = set(data) - {"defaults", "boards"}
    if unknown:
        raise ConfigError(f"{source}: unknown top-level table(s) {', '.join(sorted(unknown))}; "
                          f"expected [defaults] and [boards.NAME]")
    errors: list[str] = []
    try:
        defaults = Defaults(**data.get("defaults", {}))
    except ValidationError as exc:
        errors.append(_format_errors(source, "[defaults]", exc))
        defaults = Defaults()
    boards: dict[str, BoardSpec] = {}
    raw_boards = data.get("boards", {})
    if not isinstance(raw_boards, dict):
        raise ConfigError(f"{source}: 'boards' must be tables [boards.NAME], found {_describe(raw_boards)}")
    for name, entry in raw_boards.items():
        if not isinstance(entry, dict):
            errors.append(f"{source}: [boards.{name}]: expected a table, found {_describe(entry)}")
            continue
        try:
            spec = BoardSpec(name=name, **entry)
        except ValidationError as exc:
            errors.append(_format_errors(source, f"[boards.{name}]", exc))
            continue
        errors.extend(_check_references(source, spec))
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
        errors.append(f"{source}: [boards.{spec.name}]: chip: unknown chip {spec.chip!r}; "
                      f"known: {', '.join(sorted(chips))}")
    from harness.links.power import make_power

    if not spec.is_simulated:
        try:
            make_power(dict(spec.power), spec.name)  # builds the driver only: no side effects
        except ConfigError as exc:
            errors.append(f"{source}: {exc}")
    if spec.sim and spec.sim.profile.removeprefix(SIM_PREFIX) not in known_profiles() \
            and not spec.sim.profile.endswith(".toml"):
        errors.append(f"{source}: [boards.{spec.name}]: sim.profile: unknown profile {spec.sim.profile!r}; "
                      f"known: {', '.join(known_profiles())}")
    return errors


def load_inventory(path: Path | str | None) -> Inventory:
    """Load the inventory; ``None`` or a missing default file gives the built-in one (simulated boards only)."""
    if path is None:
        return Inventory(path=None)
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"boards file {path} does not exist (pass --boards-file, or create it: see README)") \
            from None
    except OSError as exc:
        raise ConfigError(f"boards file {path} cannot be read: {exc.strerror}") from None
    return parse_inventory(text, source=str(path), path=path)
