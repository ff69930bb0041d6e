"""Lenient parsers for what a board prints about its NPU stack, one per probe output.

Why lenient: the strings come from ``dmesg``, ``strings`` over binaries and runtime logs of a dozen
releases, and their formats drift (``rknn_server version: 2.3.2 (...)`` vs a bare ``1.5.0 (... build: ...)``,
``Galcore version 6.3.3.3718`` vs ``6.3.3.03718``). A parser never raises: text it cannot read gives a
:class:`ParsedVersion` with ``version=None`` and the raw text kept, so a version line the parser has never
seen is reported raw, not dropped.

Normalization (what "equal" means): a version is compared by its normalized string. Numeric components are
compared as numbers (``6.3.3.03718`` == ``6.3.3.3718``, the manual writes both for one driver), a leading
``v`` is dropped, pre-releases are spelled the PEP 440 way (``2.0.0b0``). Normalizing is done by
``packaging.version`` (the library pip itself uses), which also gives the ordering for "at least" checks.
Text that is not a version in that sense (a firmware label such as ``RK_VERSION=V1.2.3_20240101``) is kept as
written, stripped.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass

from packaging.version import InvalidVersion, Version

#: How much of an unreadable output a ParsedVersion keeps (a whole ``dmesg`` would swamp a report).
RAW_LIMIT = 2000

#: A version token: dotted numbers with an optional pre-release tail (``2.0.0b0``, ``1.7.5b1``, ``v0.9.8``).
_VER = r"[vV]?\d+(?:\.\d+)+(?:[-_.]?(?:a|b|rc|alpha|beta|pre|dev|post)\d*)?"


@dataclass(frozen=True)
class ParsedVersion:
    """One component's version as read from the board.

    ``version`` is the normalized version (None when the text held none), ``written`` the token as printed,
    ``raw`` the line it came from (or the whole, possibly truncated, text when nothing matched), ``detail``
    what came with it (commit, build date, driver date, device).
    """

    component: str
    version: str | None
    raw: str
    detail: str = ""
    written: str | None = None

    @property
    def ok(self) -> bool:
        """True when a version was read."""
        return self.version is not None

    def to_dict(self) -> dict[str, str | None]:
        return asdict(self)

    def __str__(self) -> str:
        if self.version is None:
            return f"{self.component}: unreadable ({_shorten(self.raw) or 'no output'})"
        return f"{self.component} {self.version}" + (f" ({self.detail})" if self.detail else "")


def normalize_version(version: str) -> str | None:
    """The normalized form of a version string (see the module docstring), or None if it is no version."""
    text = str(version).strip()
    if text[:1] in ("v", "V") and text[1:2].isdigit():
        text = text[1:]
    try:
        return str(Version(text))
    except ValueError:  # InvalidVersion, or a number too long for int() (over 4300 digits)
        return None


def version_key(version: str) -> Version:
    """An orderable key for ``version``; ``ValueError`` (``InvalidVersion``) when it is not a version."""
    normalized = normalize_version(version)
    if normalized is None:
        raise InvalidVersion(f"not a version: {version!r}")
    return Version(normalized)


def same_version(a: str | None, b: str | None) -> bool:
    """Exact comparison on normalized versions: ``6.3.3.03718`` equals ``6.3.3.3718``; None equals nothing.

    Two non-versions (firmware labels) are equal only when their stripped text is.
    """
    if a is None or b is None:
        return False
    na, nb = normalize_version(a), normalize_version(b)
    if na is not None and nb is not None:
        return Version(na) == Version(nb)
    return na is None and nb is None and str(a).strip() == str(b).strip()


def at_least(found: str | None, minimum: str) -> bool:
    """``found >= minimum`` by version order; False when ``found`` is missing or not a version."""
    try:
        return found is not None and version_key(found) >= version_key(minimum)
    except ValueError:
        return False


# --------------------------------------------------------------------------------------------------------
# helpers


def _text(value: object) -> str:
    """Any probe output as text: bytes are decoded leniently, None is empty."""
    if value is None:
        return ""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", errors="replace")
    return value if isinstance(value, str) else str(value)


def _shorten(text: str, limit: int = 120) -> str:
    one = " ".join(text.split())
    return one if len(one) <= limit else one[: limit - 3] + "..."


def _raw(text: str) -> str:
    text = text.strip()
    return text if len(text) <= RAW_LIMIT else text[:RAW_LIMIT] + f"... [{len(text) - RAW_LIMIT} more chars]"


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.replace("\r", "\n").split("\n") if line.strip()]


def _unread(component: str, text: str) -> ParsedVersion:
    return ParsedVersion(component, None, _raw(text))


def _found(component: str, line: str, token: str, detail: str = "") -> ParsedVersion:
    return ParsedVersion(component, normalize_version(token) or token, _raw(line), detail.strip(), token)


def _first(component: str, text: object, patterns: list[re.Pattern[str]], *, last: bool = False,
           detail: Callable[[re.Match[str]], str] = lambda m: m.groupdict().get("detail") or "") -> ParsedVersion:
    """Try ``patterns`` in priority order over the lines of ``text``; the first pattern that hits wins.

    ``last=True`` takes the last hit of that pattern instead of the first (``dmesg`` after a driver reload
    holds the old and the new version; the newest line is the one in force).
    """
    try:
        body = _text(text)
        lines = _lines(body)
        for pattern in patterns:
            hits = [(line, m) for line in lines if (m := pattern.search(line))]
            if hits:
                line, match = hits[-1] if last else hits[0]
                return _found(component, line, match.group("ver"), detail(match))
        return _unread(component, body)
    except Exception:  # a parser must never take a run down; keep what we were given
        return ParsedVersion(component, None, _raw(_text(text)) if isinstance(text, (str, bytes)) else "")


# --------------------------------------------------------------------------------------------------------
# one parser per probe output

_GALCORE = [re.compile(rf"galcore\s+version[\s:=]*(?P<ver>{_VER})", re.I)]


def parse_galcore(text: object) -> ParsedVersion:
    """RKNPU1 kernel driver from ``dmesg | grep -i galcore``: ``Galcore version 6.4.6.5.351518``."""
    return _first("galcore", text, _GALCORE, last=True)


_RKNPU = [
    re.compile(rf"RKNPU\s+driver\s*[:=]?\s*(?P<ver>{_VER})", re.I),
    re.compile(rf"Initialized\s+rknpu\s+(?P<ver>{_VER})(?P<detail>(?:\s+\d{{8}})?(?:\s+for\s+\S+)?)", re.I),
    re.compile(rf"RKNN\s+Driver\s+Information\s*[,:]\s*version\s*[:=]?\s*(?P<ver>{_VER})", re.I),
    re.compile(rf"\bdriver\s+version\s*[:=]\s*(?P<ver>{_VER})", re.I),
]


def parse_rknpu(text: object) -> ParsedVersion:
    """RKNPU2 kernel driver: ``RKNPU driver: v0.9.8`` (debugfs/procfs), the dmesg ``[drm] Initialized rknpu
    0.9.8 20240828 for fdab0000.npu on minor 1`` line, or what a runtime log reports about the driver."""
    return _first("rknpu", text, _RKNPU, last=True)


_BUILD = r"\((?P<detail>[0-9a-f]{6,40}\s+build\s*[:@][^)]*)\)"
_SERVER = [
    re.compile(rf"rknn_server\s+version\s*[:=]?\s*(?P<ver>{_VER})\s*(?:\((?P<detail>[^)]*)\))?", re.I),
    re.compile(rf"start\s+rknn\s+server\s*,\s*version\s*[:=]?\s*(?P<ver>{_VER})\s*(?:\((?P<detail>[^)]*)\))?",
               re.I),
    re.compile(rf"^(?P<ver>{_VER})\s*{_BUILD}"),
]


def parse_rknn_server(text: object) -> ParsedVersion:
    """rknn_server from ``strings rknn_server | grep ...`` or its start-up log.

    Formats: ``rknn_server version: 2.3.2 (1842325 build@2025-03-30T09:54:34)``; servers <= 1.5.0 and RKNPU1
    only print ``1.7.5 (bb79b30 build: 2023-07-18 10:49:14)``; at start ``start rknn server, version:1.7.5``.
    """
    return _first("rknn_server", text, _SERVER)


_RUNTIME = [
    re.compile(rf"\b(?:librknn_runtime|librknnrt|librknnmrt|rknn_api/rknnrt|rknnrt)\s+version\s*[:=]?\s*"
               rf"(?P<ver>{_VER})\s*(?:\((?P<detail>[^)]*)\))?", re.I),
    re.compile(rf"^(?P<ver>{_VER})\s*\((?P<detail>[0-9a-f]{{6,40}}(?:@|\s+build)[^)]*)\)"),
]


def parse_runtime(text: object) -> ParsedVersion:
    """The NPU user-space runtime from ``strings LIB | grep -i version`` or a runtime log.

    ``librknn_runtime version 1.7.5 (ccb93f1 build: ... base: 1131)`` (RKNPU1), ``librknnrt version: 1.6.0
    (9a7b5d24c@2023-12-13T17:31:11)``, ``librknnmrt version: ...`` (RV1103/RV1106), the bare ``1.2.0
    (9db21b35d@...)`` line, and ``rknn_api/rknnrt version: ...`` from rknn_benchmark. ``librknn_api version``
    (RKNPU1's thin API library) is deliberately not taken for the runtime.
    """
    return _first("runtime", text, _RUNTIME)


_RK_VERSION = re.compile(r"^\s*(?:export\s+)?RK_VERSION\s*=\s*(?P<val>.*?)\s*$")


def parse_rk_version(text: object) -> ParsedVersion:
    """The firmware label ``RK_VERSION=...`` from ``/etc/version`` (what OTA's ``--version_url`` compares).

    The label is kept as written (quotes removed), not normalized: it is a name, not always a version.
    """
    try:
        body = _text(text)
        for line in _lines(body):
            m = _RK_VERSION.match(line)
            if m and (value := m.group("val").strip().strip("'\"").strip()):
                return ParsedVersion("rk_version", value, line, "", value)
        return _unread("rk_version", body)
    except Exception:
        return ParsedVersion("rk_version", None, "")


_KERNEL = re.compile(r"Linux\s+version\s+(?P<rel>(?P<ver>\d+(?:\.\d+)+)\S*)(?P<detail>.*)$", re.I)


def parse_kernel(text: object) -> ParsedVersion:
    """The kernel from ``/proc/version``: version ``5.10.160``, written ``5.10.160-rockchip-rk3588``."""
    try:
        body = _text(text)
        for line in _lines(body):
            if m := _KERNEL.search(line):
                version = normalize_version(m.group("ver")) or m.group("ver")
                return ParsedVersion("kernel", version, line, m.group("detail").strip(), m.group("rel"))
        return _unread("kernel", body)
    except Exception:
        return ParsedVersion("kernel", None, "")


_COMPAT_SPLIT = re.compile(r"[\x00\s]+|(?=rockchip,)", re.I)
_SOC = re.compile(r"^rockchip,(?P<soc>r[kv]\d{3,4}[a-z]*)$", re.I)


def parse_compatible(text: object) -> ParsedVersion:
    """The SoC from ``/proc/device-tree/compatible`` (NUL-separated, most specific first).

    ``rockchip,rk3588-evb1-lp4-v10\\0rockchip,rk3588\\0`` gives ``rk3588``; the board entries are kept in
    ``detail``. Links that drop the NULs (``...v10rockchip,rk3588``) are handled by splitting before each
    ``rockchip,`` (the only vendor whose entries name the SoC).
    """
    try:
        body = _text(text)
        entries = [e for e in _COMPAT_SPLIT.split(body) if e]
        socs = [m.group("soc").lower() for e in entries if (m := _SOC.match(e))]
        if socs:
            return ParsedVersion("chip", socs[-1], " ".join(entries), ", ".join(entries), socs[-1])
        return _unread("chip", body.replace("\x00", " "))
    except Exception:
        return ParsedVersion("chip", None, "")


#: Parser per component name, for callers that hold (component, text) pairs.
PARSERS: dict[str, Callable[[object], ParsedVersion]] = {
    "galcore": parse_galcore,
    "rknpu": parse_rknpu,
    "rknn_server": parse_rknn_server,
    "runtime": parse_runtime,
    "rk_version": parse_rk_version,
    "kernel": parse_kernel,
    "chip": parse_compatible,
}

#: The chip parser under the name of what it returns.
parse_chip = parse_compatible
