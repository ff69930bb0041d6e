"""Check a board's NPU versions against the release matrix of its toolkit (manual 4.1.3).

Why it matters: a board whose rknn_server, driver and runtime come from different releases fails at
``rknn_init`` with errors that name none of them (RKNN_ERR_DEVICE_UNAVAILABLE, ``driver open fail! ret = -9``,
RKNN_ERR_MODEL_INVALID -6). The check names the component, what was expected, what was found, the symptom it
causes and the fix, citing the manual.

The matrices are data (``harness/data/rknpu{1,2}_matrix.toml``); loading validates them, so a typo in a row
(a non-version, a duplicate or out-of-order release) is refused with the row named instead of producing
silent wrong verdicts. RKNPU1 rows list the exact accepted versions of all three components; RKNPU2 rows list
runtime and server versions and a minimum kernel driver (``driver_min``; ``driver_min_inferred`` marks a
minimum that is an inference, reported as a warning rather than a mismatch).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files
from typing import Any

from packaging.version import Version

from harness.errors import ConfigError
from harness.npu.probes import VersionRecord, check_npu
from harness.npu.versions import normalize_version, same_version, version_key

COMPONENTS = ("rknn_server", "driver", "runtime")


@dataclass(frozen=True)
class Advice:
    """What a mismatch of one component does, and how to fix it."""

    symptom: str
    fix: str
    section: str


@dataclass(frozen=True)
class Release:
    """One row: the component versions that belong to one toolkit release."""

    toolkit: str
    accepted: dict[str, tuple[str, ...]]
    driver_min: str | None = None
    driver_min_inferred: bool = False
    notes: tuple[str, ...] = ()

    def expected(self, component: str) -> str:
        if component == "driver" and self.driver_min:
            return f">= {self.driver_min}" + (" (inferred minimum)" if self.driver_min_inferred else "")
        return " or ".join(self.accepted[component])

    def failures(self, found: dict[str, str | None]) -> list[tuple[str, bool]]:
        """(component, only-an-inferred-minimum) for each found version this row does not accept."""
        failed = []
        for component in COMPONENTS:
            version = found.get(component)
            if component == "driver" and self.driver_min:
                try:
                    fine = version is not None and version_key(version) >= version_key(self.driver_min)
                except ValueError:
                    fine = False
                if not fine:
                    failed.append((component, self.driver_min_inferred and version is not None))
            elif not any(same_version(version, wanted) for wanted in self.accepted[component]):
                failed.append((component, False))
        return failed


@dataclass(frozen=True)
class Feature:
    """A capability that needs at least some version of one component (RKNPU2 release notes)."""

    id: str
    what: str
    component: str
    min: str
    symptom: str
    chips: tuple[str, ...] = ()


@dataclass(frozen=True)
class Matrix:
    npu: str
    driver_name: str
    releases: tuple[Release, ...]
    advice: dict[str, Advice]
    features: tuple[Feature, ...] = ()

    def known(self) -> list[str]:
        return [release.toolkit for release in self.releases]

    def release(self, toolkit: str) -> Release:
        """The row of a toolkit release; ConfigError listing the known releases otherwise.

        A pre-release or local build of a listed release (``1.7.5b1``, ``1.6.0+81f21f4d`` as model trailers
        write it) falls back to that release's row when it has none of its own (``2.0.0b0`` does).
        """
        for release in self.releases:
            if same_version(release.toolkit, str(toolkit)):
                return release
        base = normalize_version(str(toolkit))
        if base is not None:
            base = Version(base).base_version
            for release in self.releases:
                if same_version(release.toolkit, base):
                    return release
        raise ConfigError(
            f"unknown {self.npu} toolkit release {toolkit!r}; known: {', '.join(self.known())}",
            fix=f"pass one of the known releases, or add the release to harness/data/{self.npu}_matrix.toml",
        )


def _need(row: dict[str, Any], key: str, where: str, kind: type) -> Any:
    value = row.get(key)
    if not isinstance(value, kind) or (kind in (str, list) and not value):
        raise ConfigError(f"{where}: '{key}' missing or not a non-empty {kind.__name__}")
    return value


#: Keys each table may hold; anything else is a typo (``driver_min_infered``) that would silently change verdicts.
_ALLOWED = {
    "top": {"npu", "driver_name", "components", "release", "feature"},
    "release": {"toolkit", "rknn_server", "driver", "runtime", "driver_min", "driver_min_inferred", "notes",
                "source"},
    "feature": {"id", "what", "component", "min", "symptom", "chips"},
    "advice": {"symptom", "fix", "section"},
}


def _known_keys(table: Any, kind: str, where: str) -> None:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table, got {type(table).__name__}")
    unknown = sorted(set(table) - _ALLOWED[kind])
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; "
                          f"allowed: {', '.join(sorted(_ALLOWED[kind]))}")


def _version(text: Any, where: str) -> str:
    if not isinstance(text, str) or normalize_version(text) is None:
        raise ConfigError(f"{where}: {text!r} is not a version")
    return text


def parse_matrix(data: dict[str, Any], *, source: str) -> Matrix:
    """Build and validate a matrix from parsed TOML; ConfigError naming the row for anything inconsistent."""
    _known_keys(data, "top", source)
    npu = check_npu(_need(data, "npu", source, str))
    advice = {}
    for component in COMPONENTS:
        entry = _need(data.get("components", {}), component, f"{source} [components]", dict)
        where = f"{source} [components.{component}]"
        _known_keys(entry, "advice", where)
        advice[component] = Advice(*(_need(entry, key, where, str) for key in ("symptom", "fix", "section")))
    releases: list[Release] = []
    for index, row in enumerate(_need(data, "release", source, list), start=1):
        where = f"{source} release #{index}"
        _known_keys(row, "release", where)
        if npu == "rknpu2" and "driver" in row:
            raise ConfigError(f"{where}: RKNPU2 rows give driver_min, not a driver list")
        toolkit = _version(_need(row, "toolkit", where, str), where)
        where = f"{source} release {toolkit}"
        accepted: dict[str, tuple[str, ...]] = {}
        for component in ("rknn_server", "runtime") + (("driver",) if npu == "rknpu1" else ()):
            accepted[component] = tuple(_version(v, f"{where} {component}")
                                        for v in _need(row, component, where, list))
        driver_min = None
        if npu == "rknpu2":
            driver_min = _version(_need(row, "driver_min", where, str), f"{where} driver_min")
        if releases and version_key(toolkit) <= version_key(releases[-1].toolkit):
            problem = "duplicate" if same_version(toolkit, releases[-1].toolkit) else "out of order"
            raise ConfigError(f"{where}: {problem} (after {releases[-1].toolkit}); rows must ascend")
        releases.append(Release(toolkit, accepted, driver_min, bool(row.get("driver_min_inferred", False)),
                                tuple(row.get("notes", ()))))
    features = []
    for index, entry in enumerate(data.get("feature", ()), start=1):
        where = f"{source} feature #{index}"
        _known_keys(entry, "feature", where)
        component = _need(entry, "component", where, str)
        if component not in COMPONENTS:
            raise ConfigError(f"{where}: unknown component {component!r}")
        features.append(Feature(_need(entry, "id", where, str), _need(entry, "what", where, str), component,
                                _version(entry.get("min"), f"{where} min"), _need(entry, "symptom", where, str),
                                tuple(entry.get("chips", ()))))
    return Matrix(npu, _need(data, "driver_name", source, str), tuple(releases), advice, tuple(features))


@cache
def load_matrix(npu: str) -> Matrix:
    """The shipped matrix of an NPU generation (``rknpu1`` or ``rknpu2``), validated."""
    name = f"{check_npu(npu)}_matrix.toml"
    text = files("harness.data").joinpath(name).read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"harness/data/{name}: {exc}") from None
    return parse_matrix(data, source=f"harness/data/{name}")


@dataclass(frozen=True)
class Mismatch:
    """One component that does not belong to the expected release."""

    component: str
    expected: str
    found: str | None
    raw: str
    symptom: str
    fix: str
    section: str


@dataclass(frozen=True)
class MatrixVerdict:
    """The outcome of :func:`check`: ``ok`` when every component belongs to the toolkit's release."""

    npu: str
    toolkit: str
    expected: dict[str, str]
    found: dict[str, str | None]
    mismatches: tuple[Mismatch, ...] = ()
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    board_matches: tuple[str, ...] = ()
    nearest: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "npu": self.npu, "toolkit": self.toolkit,
            "expected": dict(self.expected), "found": dict(self.found),
            "mismatches": [vars(m).copy() for m in self.mismatches],
            "warnings": list(self.warnings), "notes": list(self.notes),
            "board_matches": list(self.board_matches), "nearest": list(self.nearest),
        }

    def explain(self) -> str:
        """A multi-line text for a person: verdict, expected vs found, and per mismatch symptom and fix."""
        state = "OK" if self.ok else f"MISMATCH ({len(self.mismatches)} of {len(COMPONENTS)} components)"
        lines = [f"{self.npu} board vs toolkit {self.toolkit}: {state}"]
        lines.append("  expected: " + " | ".join(f"{c} {self.expected[c]}" for c in COMPONENTS))
        lines.append("  found:    " + " | ".join(f"{c} {self.found[c] or 'unreadable'}" for c in COMPONENTS))
        for m in self.mismatches:
            seen = f"{m.found}" if m.found else "unreadable"
            lines.append(f"  - {m.component}: expected {m.expected}, found {seen}"
                         + (f" (board said: {m.raw[:160]!r})" if m.raw else " (board said nothing)"))
            lines.append(f"    symptom: {m.symptom}")
            lines.append(f"    fix: {m.fix} (manual {m.section})")
        if not self.ok:
            if self.board_matches:
                lines.append(f"  the board is consistent with toolkit {', '.join(self.board_matches)}: "
                             "use that toolkit or update the board")
            elif self.nearest:
                lines.append(f"  the board matches no release; nearest: {', '.join(self.nearest)}")
        lines += [f"  warning: {w}" for w in self.warnings]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def _nearest(matrix: Matrix, found: dict[str, str | None]) -> tuple[str, ...]:
    """Rows agreeing on the most components; if none agrees on any, the rows around the runtime version."""
    scores = {r.toolkit: len(COMPONENTS) - len([f for f in r.failures(found) if not f[1]])
              for r in matrix.releases}
    best = max(scores.values())
    if best > 0:
        return tuple(t for t, score in scores.items() if score == best)
    for component in ("runtime", "rknn_server"):
        found_version = found.get(component)
        if found_version is None or normalize_version(found_version) is None:
            continue
        key = version_key(found_version)
        lowest = {r.toolkit: min(version_key(v) for v in r.accepted[component]) for r in matrix.releases}
        below = [toolkit for toolkit, version in lowest.items() if version < key]
        above = [toolkit for toolkit, version in lowest.items() if version > key]
        return tuple(below[-1:] + above[:1])
    return ()


def _feature_notes(matrix: Matrix, release: Release, chip: str | None) -> tuple[list[str], list[str]]:
    notes, warnings = [], []
    for feature in matrix.features:
        have = min((version_key(v) for v in release.accepted.get(feature.component, (release.toolkit,))))
        if have >= version_key(feature.min):
            continue
        text = (f"release {release.toolkit} lacks {feature.what}: needs {feature.component} >= {feature.min} "
                f"({feature.symptom})")
        if feature.chips:
            if chip in feature.chips:
                warnings.append(text)
        else:
            notes.append(text)
    return notes, warnings


def check(record: VersionRecord, *, npu: str, toolkit: str) -> MatrixVerdict:
    """Compare a board's versions with the row of ``toolkit``; ConfigError if the release is unknown."""
    matrix = load_matrix(check_npu(npu))
    if record.npu != matrix.npu:
        raise ConfigError(f"versions were probed as {record.npu} but checked against the {matrix.npu} matrix")
    release = matrix.release(toolkit)
    found = {c: record.component(c).version for c in COMPONENTS}
    mismatches, warnings = [], []
    for component, inferred_only in release.failures(found):
        parsed = record.component(component)
        if inferred_only:
            warnings.append(f"{matrix.driver_name} driver {parsed.version} is below the inferred minimum "
                            f"{release.driver_min} of release {release.toolkit}: "
                            f"{matrix.advice['driver'].symptom}")
            continue
        advice = matrix.advice[component]
        mismatches.append(Mismatch(component, release.expected(component), parsed.version, parsed.raw,
                                   advice.symptom, advice.fix, advice.section))
    if not record.server_running:
        warnings.append("rknn_server is not running: connected (PC) debugging fails with "
                        "`server connect fail` / RKNN_ERR_DEVICE_UNAVAILABLE (manual 4.1.3); "
                        "on-board runs do not need it")
    notes, chip_warnings = _feature_notes(matrix, release, record.chip.version)
    board_matches: tuple[str, ...] = ()
    nearest: tuple[str, ...] = ()
    if mismatches:
        board_matches = tuple(r.toolkit for r in matrix.releases
                              if not [f for f in r.failures(found) if not f[1]])
        if not board_matches:
            nearest = _nearest(matrix, found)
    return MatrixVerdict(
        npu=matrix.npu, toolkit=release.toolkit,
        expected={c: release.expected(c) for c in COMPONENTS}, found=found,
        mismatches=tuple(mismatches), warnings=tuple(warnings + chip_warnings),
        notes=tuple(list(release.notes) + notes), board_matches=board_matches, nearest=nearest,
    )
