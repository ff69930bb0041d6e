"""The ``.rknn`` container: read Rockchip's layouts, and pack models for the simulated board.

The simulated board's NPU runs models packed like an RKNPU2 header-v6 file: ``RKNN\\0\\0\\0\\0``, u64 header
version, u64 payload length, zeros to 0x40, the payload (here an ONNX model instead of Rockchip's FlatBuffer),
then a u64 length and the JSON trailer Rockchip's toolkit writes (``target_platform``, ``version``, ...),
with ``"sim_payload": "onnx"`` added so the simulator knows what it holds.
"""

from __future__ import annotations

import json
import struct
from typing import Any

MAGIC = b"RKNN\0\0\0\0"
SIM_PAYLOAD_KEY = "sim_payload"
_SIM_PAYLOAD_OFFSET = 0x40


class RknnFormatError(ValueError):
    """The bytes are not a model container this code can read."""


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
    if not isinstance(trailer, dict) or trailer.get(SIM_PAYLOAD_KEY) != "onnx":
        raise RknnFormatError("not a simulator package (no ONNX payload)")
    return data[_SIM_PAYLOAD_OFFSET:end], trailer
