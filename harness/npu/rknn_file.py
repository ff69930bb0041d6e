"""The ``.rknn`` container: read Rockchip's layouts, and pack models for the simulated board.

Reading (:func:`read_rknn`): every layout Rockchip has shipped starts ``RKNN\\0\\0\\0\\0``, u64 header
version, u64 length; where the payload and the JSON trailer sit differs per layout (see
``reference/rockchip-facts.md``, ".rknn file header"). The trailer, not the folder a file was filed in, says
which chips a model is for: "model folders lie". A layout this code does not know still yields what its
trailer says (found by :func:`harness.npu.rknn_trailer.scan_for_trailer`), flagged with a warning; bytes
with no trailer at all raise :class:`RknnFormatError`, never any other exception.

Packing for the simulator: the simulated board's NPU runs models packed like an RKNPU2 header-v6 file:
``RKNN\\0\\0\\0\\0``, u64 header version, u64 payload length, zeros to 0x40, the payload (here an ONNX model
instead of Rockchip's FlatBuffer), then a u64 length and the JSON trailer Rockchip's toolkit writes
(``target_platform``, ``version``, ...), with ``"sim_payload": "onnx"`` added so the simulator knows what it
holds.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.npu.rknn_trailer import read_trailer_at, scan_for_trailer

MAGIC = b"RKNN\0\0\0\0"
SIM_PAYLOAD_KEY = "sim_payload"
_SIM_PAYLOAD_OFFSET = 0x40


class RknnFormatError(ConfigError, ValueError):
    """The bytes are not a model container this code can read.

    A ConfigError because a corrupt model file is the user's input being wrong (the CLI prints one line),
    and a ValueError because callers of :func:`unpack_sim_model` have always caught it as one.
    """


def pack_sim_model(onnx_bytes: bytes, *, target_platforms: list[str], toolkit_version: str,
                   header_version: int = 6, extra: dict[str, Any] | None = None) -> bytes:
    """Wrap an ONNX model in an RKNN-style container for the simulated board's runtime."""
    trailer: dict[str, Any] = {
        "target_platform": [p.lower() for p in target_platforms],
        "version": toolkit_version,
        "ori_network_platform": "ONNX",
        SIM_PAYLOAD_KEY: "onnx",
    }
    trailer.update(extra or {})
    header = MAGIC + struct.pack("<QQ", header_version, len(onnx_bytes))
    header += b"\0" * (_SIM_PAYLOAD_OFFSET - len(header))
    body = json.dumps(trailer, sort_keys=True).encode()
    return header + onnx_bytes + struct.pack("<Q", len(body)) + body


def unpack_sim_model(data: bytes) -> tuple[bytes, dict[str, Any]]:
    """The ONNX payload and JSON trailer of a simulator package; RknnFormatError for anything else."""
    if len(data) < _SIM_PAYLOAD_OFFSET + 8 or not data.startswith(MAGIC):
        raise RknnFormatError("not an RKNN container")
    (payload_len,) = struct.unpack_from("<Q", data, 0x10)
    end = _SIM_PAYLOAD_OFFSET + payload_len
    if end + 8 > len(data):
        raise RknnFormatError("payload runs past the end of the file")
    (trailer_len,) = struct.unpack_from("<Q", data, end)
    try:
        trailer = json.loads(data[end + 8:end + 8 + trailer_len])
    except (ValueError, UnicodeDecodeError) as exc:
        raise RknnFormatError(f"unreadable JSON trailer: {exc}") from None
    except RecursionError:
        raise RknnFormatError("unreadable JSON trailer: nested too deeply") from None
    if not isinstance(trailer, dict) or trailer.get(SIM_PAYLOAD_KEY) != "onnx":
        raise RknnFormatError("not a simulator package (no ONNX payload)")
    return data[_SIM_PAYLOAD_OFFSET:end], trailer


# ---------------------------------------------------------------------------------------------- reading

#: Chips whose NPU is the first generation (galcore/VeriSilicon, RKNN Toolkit 1). Any other chip name in a
#: trailer is RKNPU2. Only used to name the NPU of a file whose layout does not already say it.
RKNPU1_PLATFORMS = frozenset({"rk1806", "rk1808", "rk3399pro", "rv1109", "rv1126"})
#: What RKNN Toolkit 1 builds for when ``target_platform`` is not set (manual 4.1.2, cause 3).
RKNPU1_DEFAULT_PLATFORMS = ("rk1806", "rk1808", "rk3399pro")
#: Newest header version seen in Rockchip's files; a newer one is read, with a warning.
NEWEST_KNOWN_HEADER = 6

_HEADER = struct.Struct("<8sQQ")  # magic, header version, length


@dataclass(frozen=True)
class RknnInfo:
    """What an ``.rknn`` file says about itself: enough to decide whether a board can load it."""

    layout: str  # rknpu2-v6, rknpu2-v2, rknpu2-v1, rknpu1-precompiled, rknpu1-v2, sim-onnx, unknown
    header_version: int
    npu: str | None  # "rknpu1", "rknpu2", or None when neither layout nor trailer says
    target_platforms: list[str]  # lower-case, as declared; empty when the trailer has none
    toolkit_version: str | None
    pre_compile: bool | None
    payload_kind: str  # flatbuffer, nbg, onnx, unknown
    payload_offset: int | None
    payload_length: int | None
    trailer_offset: int  # offset of the trailer's u64 length
    trailer: dict[str, Any] = field(repr=False)
    size: int = 0
    sha256: str = ""
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data, for ``--json`` and reports."""
        return asdict(self)


@dataclass(frozen=True)
class _Layout:
    """Where a recognised layout keeps its parts."""

    name: str
    npu: str | None
    payload_kind: str
    payload_offset: int | None
    payload_length: int | None
    trailer_offset: int
    trailer: dict[str, Any]
    trailer_end: int
    must_end_file: bool  # the trailer is the last thing in this layout


def read_rknn_file(path: str | Path) -> RknnInfo:
    """Read a model file from disk; ConfigError (one line, naming the file) if it is missing or unreadable."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"model file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"model path is a directory, not a file: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read model file {path}: {exc.strerror or exc}") from None
    try:
        return read_rknn(data)
    except RknnFormatError as exc:
        raise RknnFormatError(f"{path}: {exc.message}") from None


def read_rknn(data: bytes) -> RknnInfo:
    """Parse an ``.rknn`` file's bytes. Raises only RknnFormatError ("not an RKNN file"/"unknown layout")."""
    if len(data) < _HEADER.size:
        raise RknnFormatError(f"not an RKNN file: only {len(data)} bytes, shorter than the 24-byte header")
    magic, header_version, length = _HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        raise RknnFormatError("not an RKNN file: it does not start with the RKNN magic")
    warnings: list[str] = []
    layout = _known_layout(data, header_version, length)
    if layout is None:
        layout = _scanned_layout(data, header_version)
        warnings.append(f"unknown layout (header version {header_version}); "
                        f"fields read from a JSON trailer found at 0x{layout.trailer_offset:x}")
    elif layout.must_end_file and layout.trailer_end != len(data):
        warnings.append(f"{len(data) - layout.trailer_end} unexpected bytes after the JSON trailer")
    if header_version > NEWEST_KNOWN_HEADER:
        warnings.append(f"header version {header_version} is newer than any this reader knows "
                        f"({NEWEST_KNOWN_HEADER})")
    trailer = layout.trailer
    platforms = _platforms(trailer, warnings)
    npu = _npu(layout, platforms, warnings)
    if not platforms and "target_platform" not in trailer and npu == "rknpu1":
        warnings.append("no target_platform in the trailer: RKNN Toolkit 1 then builds for "
                        + "/".join(RKNPU1_DEFAULT_PLATFORMS) + " only (manual 4.1.2)")
    return RknnInfo(
        layout=layout.name, header_version=header_version, npu=npu, target_platforms=platforms,
        toolkit_version=_toolkit_version(trailer, warnings),
        pre_compile=_pre_compile(trailer, layout.name, warnings),
        payload_kind=layout.payload_kind, payload_offset=layout.payload_offset,
        payload_length=layout.payload_length, trailer_offset=layout.trailer_offset, trailer=trailer,
        size=len(data), sha256=hashlib.sha256(data).hexdigest(), warnings=warnings,
    )


def _known_layout(data: bytes, header_version: int, length: int) -> _Layout | None:
    """The layout whose markers and trailer both check out, or None."""

    def at(payload_offset: int, name: str, npu: str | None, kind: str) -> _Layout | None:
        found = read_trailer_at(data, payload_offset + length)
        if found is None:
            return None
        return _Layout(name, npu, kind, payload_offset, length, payload_offset + length, found[0], found[1],
                       must_end_file=True)

    if header_version == 1 and data[0x18:0x1C] == b"VPMN":
        return at(0x18, "rknpu1-precompiled", "rknpu1", "nbg")
    if header_version == 1 and data[0x1C:0x20] == b"RKNN":
        return at(0x18, "rknpu2-v1", "rknpu2", "flatbuffer")
    if header_version == 2 and length == 0 and data[0x20:0x21] == b"{":
        found = read_trailer_at(data, 0x18)
        if found is not None:  # the model JSON comes first; op libraries and weights follow it
            end = found[1]
            return _Layout("rknpu1-v2", "rknpu1", "unknown", end, len(data) - end, 0x18, found[0], end,
                           must_end_file=False)
        return None
    if header_version >= 2:
        sim = at(_SIM_PAYLOAD_OFFSET, "sim-onnx", None, "onnx")
        if sim is not None and sim.trailer.get(SIM_PAYLOAD_KEY) == "onnx":
            return sim
        if data[0x44:0x48] == b"RKNN":
            return at(0x40, f"rknpu2-v{header_version}", "rknpu2", "flatbuffer")
    return None


def _scanned_layout(data: bytes, header_version: int) -> _Layout:
    """Fallback for a layout we do not know: whatever length-prefixed JSON trailer the file holds."""
    found = scan_for_trailer(data, start=0x10)
    if found is None:
        raise RknnFormatError(f"unknown layout (header version {header_version}) and no readable JSON trailer: "
                              "not an RKNN model this harness can read, or a truncated/corrupt file")
    offset, trailer = found
    return _Layout("unknown", None, "unknown", None, None, offset, trailer, len(data), must_end_file=False)


def _platforms(trailer: dict[str, Any], warnings: list[str]) -> list[str]:
    """``target_platform`` as lower-case names; old toolkits wrote one string, newer ones a list."""
    value = trailer.get("target_platform")
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        warnings.append(f"target_platform is not a list of chip names: {str(value)[:60]!r}")
        return []
    return [v.strip().lower() for v in value]


def _npu(layout: _Layout, platforms: list[str], warnings: list[str]) -> str | None:
    """The NPU generation: the layout's when it has one, else what the declared chips agree on."""
    implied = {"rknpu1" if p in RKNPU1_PLATFORMS else "rknpu2" for p in platforms}
    if layout.npu is not None:
        if implied and implied != {layout.npu}:
            warnings.append(f"a {layout.npu} layout declares target platforms {platforms}")
        return layout.npu
    return implied.pop() if len(implied) == 1 else None


def _toolkit_version(trailer: dict[str, Any], warnings: list[str]) -> str | None:
    value = trailer.get("version")
    if value is None:
        warnings.append("no toolkit version in the trailer")
        return None
    if not isinstance(value, str):
        warnings.append(f"toolkit version is not a string: {str(value)[:40]!r}")
        return None
    return value.strip()


def _pre_compile(trailer: dict[str, Any], layout_name: str, warnings: list[str]) -> bool | None:
    """RKNPU1's pre-compile flag (0/1 in the trailer); a pre-compiled layout implies it when absent."""
    value = trailer.get("pre_compile")
    if value is None:
        return True if layout_name == "rknpu1-precompiled" else None
    if isinstance(value, bool) or value in (0, 1):
        return bool(value)
    warnings.append(f"pre_compile is neither 0 nor 1: {str(value)[:40]!r}")
    return None
