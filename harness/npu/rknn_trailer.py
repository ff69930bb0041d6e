"""The JSON trailer of an ``.rknn`` file: a u64 length followed by that many bytes of JSON.

Every RKNN layout Rockchip has shipped keeps the facts a lab needs (``target_platform``, the toolkit
``version``, ``pre_compile``) in such a length-prefixed JSON object, wherever the binary payload sits. So
when a file's header is of a layout we do not know (or is damaged), scanning for "u64 n, then n bytes of
JSON that parse to an object" still recovers those facts; that is why the scan lives apart from the
layout readers that know exact offsets.
"""

from __future__ import annotations

import json
import struct
from typing import Any

_LEN = struct.Struct("<Q")
#: Keys that mark a JSON object as the model's description rather than some other embedded JSON
#: (RKNPU1 files also carry a JSON list of op libraries, and payloads may contain stray objects).
_TRAILER_KEYS = ("target_platform", "version", "ori_network_platform", "pre_compile", "norm_tensor")


#: Deepest nesting a trailer may have. Rockchip's are a few levels deep; a deeper one (a corrupt or hostile
#: file) would exhaust the stack of whoever copies or prints it (``RknnInfo.to_dict``, ``--json``).
MAX_DEPTH = 64


def _shallow(value: Any, limit: int = MAX_DEPTH) -> bool:
    """True when ``value`` nests lists and objects at most ``limit`` deep (iterative: no recursion to overflow)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                return False
            stack.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict) else item))
    return True


def parse_json_object(raw: bytes) -> dict[str, Any] | None:
    """``raw`` decoded as UTF-8 JSON if it is an object at most MAX_DEPTH deep; None for anything else (never
    raises)."""
    try:
        value = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return None
    return value if isinstance(value, dict) and _shallow(value) else None


def read_trailer_at(data: bytes, offset: int) -> tuple[dict[str, Any], int] | None:
    """The JSON object whose u64 length sits at ``offset``, and the offset just past it; None if there is none."""
    if offset < 0 or offset + _LEN.size > len(data):
        return None
    (length,) = _LEN.unpack_from(data, offset)
    start = offset + _LEN.size
    end = start + length
    if length < 2 or end > len(data) or data[start:start + 1] != b"{" or data[end - 1:end] != b"}":
        return None
    trailer = parse_json_object(data[start:end])
    return (trailer, end) if trailer is not None else None


def looks_like_model_trailer(obj: dict[str, Any]) -> bool:
    """True when a JSON object carries at least one key Rockchip's toolkit writes into the model trailer."""
    return any(key in obj for key in _TRAILER_KEYS)


def scan_for_trailer(data: bytes, start: int = 0) -> tuple[int, dict[str, Any]] | None:
    """Find a length-prefixed model trailer anywhere after ``start``: (offset of its u64 length, object).

    Preference, best first: a trailer that ends exactly at the end of the file (where RKNPU2 and
    pre-compiled RKNPU1 files keep it), then the first one found that has model keys, then the first
    JSON object at all. Cost is one cheap bounds check per ``{`` byte, so megabyte payloads are fine.
    """
    first_model: tuple[int, dict[str, Any]] | None = None
    first_any: tuple[int, dict[str, Any]] | None = None
    pos = data.find(b"{", max(start, 0) + _LEN.size)
    while pos != -1:
        found = read_trailer_at(data, pos - _LEN.size)
        if found is not None:
            trailer, end = found
            candidate = (pos - _LEN.size, trailer)
            if looks_like_model_trailer(trailer):
                if end == len(data):
                    return candidate
                first_model = first_model or candidate
            first_any = first_any or candidate
        pos = data.find(b"{", pos + 1)
    return first_model or first_any
