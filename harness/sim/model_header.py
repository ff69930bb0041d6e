"""The few ``.rknn`` fields the simulated NPU runtime reads at ``rknn_init``, read the way the runtime reads them.

Why a reader of its own: the harness's model reader (``npu-hil model inspect``, the pre-push compatibility
check) judges models for the lab; if the simulated runtime used that same code, a bug in it would be
mirrored on the board and the harness would agree with itself. The runtime needs little: the magic, the
header version, the description JSON (``target_platform``, toolkit ``version``) and whether the payload is
one this simulated NPU can execute. Layouts, all little-endian after ``RKNN\\0\\0\\0\\0``, u64 header version
at 0x08 and u64 length at 0x10:

* header v2 and later (RKNPU2): payload at 0x40, ``length`` bytes, then a u64 size and the JSON; the
  simulator's packages have an ONNX payload there and ``"sim_payload": "onnx"`` in the JSON;
* header v1: payload at 0x18 (RKNPU2 FlatBuffer, or an RKNPU1 pre-compiled ``VPMN`` graph), JSON after it;
* RKNPU1 normal models: length 0, u64 size at 0x18 and the JSON at 0x20.

A file none of these fit is what the real runtime calls an invalid RKNN format (:class:`ModelRefused`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

MAGIC = b"RKNN\0\0\0\0"
SIM_PAYLOAD = "sim_payload"


class ModelRefused(Exception):
    """The runtime cannot parse the model; ``bad_magic`` when it does not even start with the RKNN magic."""

    def __init__(self, message: str, *, bad_magic: bool = False) -> None:
        super().__init__(message)
        self.bad_magic = bad_magic


@dataclass(frozen=True)
class ModelHeader:
    """What rknn_init learns from a model's bytes before it loads the graph."""

    header_version: int
    target_platforms: list[str]  # lower case, as the description lists them (may be empty)
    toolkit_version: str | None
    onnx: bytes | None  # the payload when it is one the simulated NPU executes, else None
    description: dict[str, Any] = field(repr=False)
    sha256: str = ""


def _u64(data: bytes, at: int) -> int | None:
    return int.from_bytes(data[at:at + 8], "little") if 0 <= at and at + 8 <= len(data) else None


def _json_at(data: bytes, at: int) -> dict[str, Any] | None:
    """The JSON object whose u64 size sits at ``at``, or None."""
    size = _u64(data, at)
    if size is None or size < 2 or at + 8 + size > len(data):
        return None
    try:
        value = json.loads(data[at + 8:at + 8 + size].decode("utf-8"))
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def read_model(data: bytes) -> ModelHeader:
    """The header fields of a model's bytes; ModelRefused when the runtime could not parse it."""
    if not data.startswith(MAGIC):
        raise ModelRefused("invalid RKNN_MAGIC", bad_magic=True)
    version, length = _u64(data, 0x08), _u64(data, 0x10)
    if version is None or length is None:
        raise ModelRefused("truncated RKNN header")
    onnx: bytes | None = None
    description = _json_at(data, 0x40 + length) if version >= 2 else None
    if description is not None and description.get(SIM_PAYLOAD) == "onnx":
        onnx = data[0x40:0x40 + length]
    if description is None and version == 1:
        description = _json_at(data, 0x18 + length)
    if description is None and length == 0:
        description = _json_at(data, 0x18)
    if description is None:
        raise ModelRefused("Invalid RKNN format")
    platforms = description.get("target_platform") or []
    if isinstance(platforms, str):
        platforms = [platforms]
    toolkit = description.get("version")
    return ModelHeader(header_version=version,
                       target_platforms=[str(p).strip().lower() for p in platforms if isinstance(p, str)],
                       toolkit_version=toolkit.strip() if isinstance(toolkit, str) else None, onnx=onnx,
                       description=description, sha256=hashlib.sha256(data).hexdigest())
