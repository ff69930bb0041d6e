"""Name the likely cause of a failure from what the board and the host printed.

Why: Rockchip's errors name an effect (``RKNN_ERR_MODEL_INVALID``), not a cause; the troubleshooting manual
maps effects to causes, and engineers do that mapping by hand. The mapping is data
(``harness/data/signatures.toml``: regex, cause, fix, manual section, whose fault); this module matches it
against command output, dmesg and runtime logs and orders the hits so the most precise cause comes first
(``msg_load_ack fail`` before the generic ``RKNN_ERR_MODEL_INVALID`` it ends in).

The loader validates the data (unique ids, regexes compile, classes known, every example line matches its
own regex), so a broken signature fails loudly at load, not silently at the moment it was needed.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import asdict, dataclass
from functools import cache
from importlib.resources import files
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from harness.errors import ConfigError

Kind = Literal["product", "infrastructure", "config"]

#: A matched line longer than this is cut in reports (a minified JSON log line can be megabytes).
LINE_LIMIT = 300


class Signature(BaseModel):
    """One failure signature as written in signatures.toml (``class`` is a Python keyword: ``kind`` here)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    id: str = Field(min_length=1, pattern=r"^[a-z0-9][a-z0-9-]*$")
    regex: str = Field(min_length=1)
    cause: str = Field(min_length=1)
    fix: str = Field(min_length=1)
    section: str = Field(min_length=1)
    kind: Kind = Field(alias="class")
    specificity: int = Field(ge=0, le=100)
    examples: tuple[str, ...] = Field(min_length=1)

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value, re.IGNORECASE)
        except re.error as exc:
            raise ValueError(f"bad regex: {exc}") from None
        return value

    @property
    def pattern(self) -> re.Pattern[str]:
        return _compiled(self.regex)


@cache
def _compiled(regex: str) -> re.Pattern[str]:
    return re.compile(regex, re.IGNORECASE)


@dataclass(frozen=True)
class Diagnosis:
    """A signature that matched: what is likely wrong, whose fault, how to fix it, and the line that said so."""

    id: str
    cause: str
    fix: str
    section: str
    kind: str
    line: str
    specificity: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def where(self) -> str:
        """``manual 4.1.2``, or ``not in the manual``."""
        return "not in the manual" if self.section in ("", "-") else f"manual {self.section}"

    def __str__(self) -> str:
        return f"[{self.kind}] {self.cause} ({self.where}; fix: {self.fix}) <- {self.line!r}"


def parse_signatures(data: dict[str, Any], *, source: str) -> tuple[Signature, ...]:
    """Validate parsed TOML into signatures; ConfigError naming the signature for anything wrong."""
    rows = data.get("signature")
    if not isinstance(rows, list) or not rows:
        raise ConfigError(f"{source}: no [[signature]] entries")
    unknown_top = set(data) - {"signature"}
    if unknown_top:
        raise ConfigError(f"{source}: unknown top-level keys {sorted(unknown_top)}")
    signatures: list[Signature] = []
    seen: set[str] = set()
    for index, row in enumerate(rows, start=1):
        name = row.get("id", f"#{index}") if isinstance(row, dict) else f"#{index}"
        try:
            signature = Signature.model_validate(row)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'entry'}: {e['msg']}" for e in exc.errors())
            raise ConfigError(f"{source}: signature {name}: {problems}") from None
        if signature.id in seen:
            raise ConfigError(f"{source}: signature {signature.id}: duplicate id")
        seen.add(signature.id)
        for example in signature.examples:
            if not signature.pattern.search(example):
                raise ConfigError(f"{source}: signature {signature.id}: its regex does not match its own "
                                  f"example {example!r}")
        signatures.append(signature)
    return tuple(signatures)


@cache
def load_signatures() -> tuple[Signature, ...]:
    """The shipped signatures (``harness/data/signatures.toml``), validated once per process."""
    text = files("harness.data").joinpath("signatures.toml").read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"harness/data/signatures.toml: {exc}") from None
    return parse_signatures(data, source="harness/data/signatures.toml")


def _lines(texts: tuple[object, ...]) -> list[str]:
    lines: list[str] = []
    for text in texts:
        if text is None:
            continue
        if isinstance(text, (bytes, bytearray)):
            text = bytes(text).decode("utf-8", errors="replace")
        for line in str(text).replace("\r", "\n").split("\n"):
            line = line.strip()
            if line:
                lines.append(line)
    return lines


def _cut(line: str) -> str:
    return line if len(line) <= LINE_LIMIT else line[: LINE_LIMIT - 3] + "..."


def diagnose(*texts: object, signatures: tuple[Signature, ...] | None = None) -> list[Diagnosis]:
    """Every signature found in ``texts`` (output, dmesg, logs), most specific first, one per signature.

    Each diagnosis carries the first line that matched. Ties in specificity keep the data file's order.
    """
    table = load_signatures() if signatures is None else signatures
    lines = _lines(texts)
    found: list[tuple[int, int, Diagnosis]] = []
    for order, signature in enumerate(table):
        pattern = signature.pattern
        line = next((line for line in lines if pattern.search(line)), None)
        if line is not None:
            found.append((-signature.specificity, order, Diagnosis(
                signature.id, signature.cause, signature.fix, signature.section, signature.kind, _cut(line),
                signature.specificity)))
    return [diagnosis for _, _, diagnosis in sorted(found, key=lambda item: item[:2])]


def format_diagnoses(diagnoses: list[Diagnosis], *, limit: int = 3) -> str:
    """A few lines for a failure message: the most likely causes with fix, manual section and evidence."""
    if not diagnoses:
        return "no known failure signature matched"
    out = []
    for number, diagnosis in enumerate(diagnoses[:limit], start=1):
        out.append(f"{number}. likely cause [{diagnosis.kind}]: {diagnosis.cause} ({diagnosis.where})")
        out.append(f"   fix: {diagnosis.fix}")
        out.append(f"   seen: {diagnosis.line}")
    if len(diagnoses) > limit:
        out.append(f"   (+{len(diagnoses) - limit} less specific: "
                   f"{', '.join(d.id for d in diagnoses[limit:])})")
    return "\n".join(out)
