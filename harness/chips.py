"""Rockchip chips as data: read ``harness/data/chips.toml`` once, validated, into frozen :class:`Chip` records.

Why data and not code (design principle 1): a new chip (or a corrected USB id) is a TOML change that every
layer picks up: the config loader checks board chips against it, the USB link names what it sees with it, the
console link takes its default baud from it. Loading validates the file so a typo (an unknown field, an
``npu = "rknpu3"``, a USB id shared by two unrelated chips) stops the run with the entry named, instead of
a board being driven with wrong facts.
"""

from __future__ import annotations

import tomllib
from functools import cache
from importlib.resources import files
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.errors import ConfigError

NpuGeneration = Literal["rknpu1", "rknpu2"]


class Chip(BaseModel):
    """One chip's facts; frozen, so code holding a Chip cannot change what the next board sees."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    npu: NpuGeneration
    arch: Literal["armhf", "aarch64"]  # the board userspace's machine: what the native runner is built for
    usb_pid: int = Field(ge=0, le=0xFFFF)
    usb_pid_confirmed: bool = True
    usb_pid_running: tuple[int, ...] = ()
    twin: str | None = None
    console_baud: int = Field(gt=0)
    runtime_lib: str
    server_bin: str
    compatible: str = Field(pattern=r"^rockchip,[a-z0-9]+$")
    npu_cores: int = Field(ge=1, le=8)

    @property
    def family(self) -> frozenset[str]:
        """This chip and its twin: the chips that run the same models and answer to the same USB id."""
        return frozenset({self.name, self.twin} - {None})

    @property
    def core_mask_all(self) -> int:
        """The RKNN core mask selecting every NPU core (1, 3, 7): what ``CORE_0_1_2`` is on RK3588."""
        return (1 << self.npu_cores) - 1


class UsbIds(BaseModel):
    """The vendor id and the ids of the gadgets a running board exposes (adb, NTB)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    vendor: int = Field(ge=0, le=0xFFFF)
    adb_pid: int = Field(ge=0, le=0xFFFF)
    ntb_pid: int = Field(ge=0, le=0xFFFF)


def _one_line(where: str, exc: ValidationError) -> str:
    problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'entry'}: {err['msg']}"
                         for err in exc.errors())
    return f"{where}: {problems}"


def parse_chips(data: dict[str, Any], source: str = "chips.toml") -> tuple[dict[str, Chip], UsbIds]:
    """Validate a parsed chips table; ConfigError naming every bad entry (all of them, not just the first)."""
    errors: list[str] = []
    unknown = set(data) - {"usb", "chips"}
    if unknown:
        errors.append(f"{source}: unknown top-level table(s) {', '.join(sorted(unknown))}; expected [usb], [chips.*]")
    try:
        usb = UsbIds(**data.get("usb", {}))
    except (ValidationError, TypeError) as exc:
        errors.append(_one_line(f"{source}: [usb]", exc) if isinstance(exc, ValidationError) else str(exc))
        usb = None
    chips: dict[str, Chip] = {}
    for name, entry in (data.get("chips") or {}).items():
        if not isinstance(entry, dict):
            errors.append(f"{source}: [chips.{name}] must be a table")
            continue
        try:
            chips[name] = Chip(name=name, **entry)
        except ValidationError as exc:
            errors.append(_one_line(f"{source}: [chips.{name}]", exc))
    errors.extend(_cross_check(chips, source))
    if not chips and not errors:
        errors.append(f"{source}: no [chips.*] entries")
    if errors or usb is None:
        raise ConfigError("\n".join(errors))
    return chips, usb


def _cross_check(chips: dict[str, Chip], source: str) -> list[str]:
    """What one entry cannot check alone: twins are mutual and the same NPU; shared USB ids only among twins."""
    errors = []
    for chip in chips.values():
        if chip.twin is None:
            continue
        twin = chips.get(chip.twin)
        if twin is None:
            errors.append(f"{source}: [chips.{chip.name}] twin {chip.twin!r} is not a known chip")
        elif twin.twin != chip.name:
            errors.append(f"{source}: [chips.{chip.name}] names twin {twin.name!r}, whose twin is {twin.twin!r}")
        elif twin.npu != chip.npu:
            errors.append(f"{source}: twins {chip.name} and {twin.name} have different npu values")
    by_pid: dict[int, set[str]] = {}
    for chip in chips.values():
        for pid in (chip.usb_pid, *chip.usb_pid_running):
            by_pid.setdefault(pid, set()).add(chip.name)
    for pid, names in sorted(by_pid.items()):
        if len(names) > 1 and not all(names <= chips[name].family for name in names):
            errors.append(f"{source}: USB id {pid:#06x} is shared by {', '.join(sorted(names))}, which are not twins")
    return errors


@cache
def _load() -> tuple[dict[str, Chip], UsbIds]:
    text = files("harness.data").joinpath("chips.toml").read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"harness/data/chips.toml: {exc}") from None
    return parse_chips(data, "harness/data/chips.toml")


def load_chips() -> dict[str, Chip]:
    """Every known chip by name (a copy: callers may filter it freely)."""
    return dict(_load()[0])


def usb_ids() -> UsbIds:
    """Rockchip's USB vendor id and the gadget ids of a running board."""
    return _load()[1]


def chip(name: str) -> Chip:
    """The chip called ``name`` (case-insensitive); ConfigError listing the known chips otherwise."""
    chips = _load()[0]
    found = chips.get(str(name).strip().lower())
    if found is None:
        raise ConfigError(f"unknown chip {name!r}; known chips: {', '.join(sorted(chips))}")
    return found


def chips_by_usb_pid(pid: int) -> list[Chip]:
    """Every chip answering to USB product id ``pid`` in Maskrom/Loader mode or once running (twins share one)."""
    return [c for c in _load()[0].values() if pid == c.usb_pid or pid in c.usb_pid_running]


def chip_by_usb_pid(pid: int) -> Chip | None:
    """The chip answering to ``pid``; for twins (one id, two chips) the one listed first in chips.toml.

    USB cannot tell twins apart (RK3566 and RK3568 both enumerate as 0x350a): use :func:`chips_by_usb_pid`
    when the difference matters.
    """
    found = chips_by_usb_pid(pid)
    return found[0] if found else None
