"""Shared pieces of the parser fuzz tests: one reproducible hypothesis setting, byte and text mutations of valid
inputs, wrong-typed values, and a TOML writer for structured inventories.

Why mutations of valid inputs and not only random bytes: random bytes are refused by the first check (a magic
number, a JSON brace) and never reach the code behind it; a valid file with a few bytes flipped, cut short, or one
field swapped for a wrong type does. Every test here asserts one thing: the parser returns its result or raises a
:class:`harness.errors.HarnessError` (the project's one-line errors), never a ValueError, KeyError, struct.error,
UnicodeDecodeError, TypeError, RecursionError, ... that would surface as a traceback.

``derandomize=True`` and no example database: every run tries the same examples (CI is reproducible and a test
never fails only on one machine); ``deadline=None``: the machine is shared, so one slow example is no failure.

A longer local run: ``NPU_HIL_FUZZ_EXAMPLES=5000 .venv/bin/pytest tests/fuzz`` tries that many examples per
test, new ones each run (``--hypothesis-seed N`` repeats one; a failure prints its reproduction blob); CI keeps
the fixed 200, about 12 s for every parser together.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

LONG_RUN = os.environ.get("NPU_HIL_FUZZ_EXAMPLES")
EXAMPLES = int(LONG_RUN or 200)
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not LONG_RUN, database=None,
                print_blob=bool(LONG_RUN),
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much, HealthCheck.large_base_example])
#: For the tests whose one example writes files or hashes kilobytes.
FUZZ_SLOW = settings(FUZZ, max_examples=max(1, EXAMPLES * 3 // 4))


# ------------------------------------------------------------------------------------------------ bytes
def _flip(data: bytes, draw: Any, hot: list[int]) -> bytes:
    if not data:
        return data
    at = draw(st.sampled_from(hot) if hot and draw(st.booleans()) else st.integers(0, len(data) - 1))
    at = min(max(at, 0), len(data) - 1)
    value = draw(st.binary(min_size=1, max_size=8))
    return data[:at] + value + data[at + len(value):]


@st.composite
def mutated_bytes(draw: Any, base: bytes, hot: list[int] = ()) -> bytes:
    """``base`` after 1-4 edits: overwrites (often at the ``hot`` offsets, where the header fields are),
    truncation, insertion, deletion or duplication of a slice."""
    data, hot = bytes(base), list(hot)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["overwrite", "truncate", "insert", "delete", "duplicate", "u64"]))
        n = len(data)
        if op == "overwrite":
            data = _flip(data, draw, hot)
        elif op == "truncate" and n:
            data = data[:draw(st.integers(0, n - 1))]
        elif op == "insert":
            at = draw(st.integers(0, n))
            data = data[:at] + draw(st.binary(min_size=1, max_size=16)) + data[at:]
        elif op == "delete" and n:
            at = draw(st.integers(0, n - 1))
            data = data[:at] + data[at + draw(st.integers(1, 16)):]
        elif op == "duplicate" and n:
            at = draw(st.integers(0, n - 1))
            data = data[:at] + data[at:at + 64] + data[at:]
        elif op == "u64" and n >= 8:  # a length field set to something striking: 0, 1, huge, near the size
            at = draw(st.sampled_from(hot) if hot else st.integers(0, n - 8))
            at = min(max(at, 0), n - 8)
            value = draw(st.sampled_from([0, 1, 2, n, n - at, 2**31, 2**32 - 1, 2**63, 2**64 - 1])
                         | st.integers(0, 2**64 - 1))
            data = data[:at] + (value % 2**64).to_bytes(8, "little") + data[at + 8:]
    return data


# ------------------------------------------------------------------------------------------------ text
@st.composite
def mutated_text(draw: Any, base: str) -> str:
    """``base`` after 1-4 character edits (delete, insert, replace, cut, repeat a line, a 5000-digit number)."""
    text = base
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["delete", "insert", "replace", "cut", "repeat", "digits"]))
        at = draw(st.integers(0, len(text)))
        if op == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 8)):]
        elif op == "insert":
            text = text[:at] + draw(st.text(max_size=8)) + text[at:]
        elif op == "replace":
            text = text[:at] + draw(st.sampled_from(list("\"'[]{}=.,:\n\r\t\x00\\#v0-9 ") + ["\ufeff", "é"])) \
                + text[at + 1:]
        elif op == "cut":
            text = text[:at]
        elif op == "repeat":
            text = text[:at] + text[at:at + 40] * draw(st.integers(2, 5)) + text[at:]
        else:  # integer parsing has a length limit (4300 digits) that raises ValueError
            text = text[:at] + "1." + "9" * 5000 + text[at:]
    return text


# ------------------------------------------------------------------------------------------------ values
SCALARS = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True)
           | st.text(max_size=12) | st.sampled_from(["", " ", "rv1126", "RK3588", "1.7.1", "-1", "nan", "x:1"]))


def json_values(max_leaves: int = 8) -> st.SearchStrategy[Any]:
    """Any JSON value (NaN included, as Python's json writes it by default)."""
    return st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=max_leaves)


def _leaves(doc: Any, path: tuple = ()) -> Iterator[tuple]:
    """Every path into a JSON document (dict keys and list indexes), the root excluded."""
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    for key, value in items:
        yield path + (key,)
        yield from _leaves(value, path + (key,))


def _parent(doc: Any, path: tuple) -> Any:
    for key in path[:-1]:
        doc = doc[key]
    return doc


@st.composite
def mutated_document(draw: Any, base: Any, values: st.SearchStrategy[Any] | None = None) -> Any:
    """A deep copy of a JSON-like ``base`` with 1-3 fields replaced by wrong-typed values, deleted, or
    joined by unknown keys."""
    doc = copy.deepcopy(base)
    values = values if values is not None else json_values()
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_leaves(doc))
        if not paths:
            return draw(values)
        path = draw(st.sampled_from(paths))
        parent = _parent(doc, path)
        op = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        if op == "replace":
            parent[path[-1]] = draw(values)
        elif op == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.text(max_size=10))] = draw(values)
        else:
            parent.append(draw(values))
    return doc


# ------------------------------------------------------------------------------------------------ TOML
class Raw(str):
    """A TOML value written verbatim (a date, an odd literal): the writer does not quote it."""


def _toml_str(text: str) -> str:
    body = json.dumps(text, ensure_ascii=False)[1:-1].replace("\x7f", "\\u007f")
    return f'"{body}"'


def toml_value(value: Any) -> str:
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    if isinstance(value, str):
        return _toml_str(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_str(str(k))} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML for {value!r}")


def to_toml(doc: dict[str, Any]) -> str:
    """``doc`` as TOML text: top-level scalars first, then [defaults], then one [boards."NAME"] table per
    board whose value is a table (anything else under boards is written inline, as a wrong type would be)."""
    lines = [f"{_toml_str(k)} = {toml_value(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    for key, table in doc.items():
        if not isinstance(table, dict):
            continue
        if key == "boards":
            inline = {k: v for k, v in table.items() if not isinstance(v, dict)}
            lines.append("[boards]")
            lines += [f"{_toml_str(str(k))} = {toml_value(v)}" for k, v in inline.items()]
            for name, entry in table.items():
                if isinstance(entry, dict):
                    lines.append(f"[boards.{_toml_str(str(name))}]")
                    lines += [f"{_toml_str(str(k))} = {toml_value(v)}" for k, v in entry.items()]
        else:
            lines.append(f"[{_toml_str(key)}]")
            lines += [f"{_toml_str(str(k))} = {toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


TOML_VALUES = st.recursive(
    st.booleans() | st.integers(-2**63, 2**63 - 1) | st.floats(allow_nan=True) | st.text(max_size=12)
    | st.sampled_from(["", "rv1126", "rk3588", "command", "sim", "uhubctl", "none", "/dev/ttyUSB0",
                       "127.0.0.1:5555", "[::1]:22", "strict", "accept-new", "adb", "ssh", "console"])
    | st.sampled_from([Raw("1979-05-27T07:32:00Z"), Raw("07:32:00"), Raw("1979-05-27")]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6)


@contextlib.contextmanager
def written(name: str, data: bytes) -> Iterator[Path]:
    """A file ``name`` holding ``data`` in a fresh temporary folder (hypothesis runs a test many times, so a
    function-scoped tmp_path would be shared by every example)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(data)
        yield path
