"""Version comparison on the simulated board, as the board's own libraries compare version strings.

Why its own: the harness compares versions with ``packaging`` (:mod:`harness.npu.versions`) to judge a board;
the simulated runtime deciding "is this driver new enough" with that same code would mirror any bug of it.
Rockchip's libraries compare dotted numbers component by component, so this does too: ``6.3.3.03718`` equals
``6.3.3.3718`` (numbers, not text), ``1.5`` equals ``1.5.0``, a leading ``v`` is ignored, and a pre-release
tail (``2.0.0b0``, ``1.3.0rc1``) sorts before the release itself. Anything after that (``-source_code``,
`` (build ...)``) is ignored. Text with no leading number is no version: it equals nothing and is never
"at least" anything.
"""

from __future__ import annotations

import re

_VERSION = re.compile(r"^\s*[vV]?(\d+(?:\.\d+)*)(?:[-_.]?(a|alpha|b|beta|rc|pre)(\d*))?")
_PRE_RANK = {"a": 0, "alpha": 0, "b": 1, "beta": 1, "pre": 2, "rc": 2}

Key = tuple[tuple[int, ...], tuple[int, int]]


def version_key(text: str | None) -> Key | None:
    """An orderable key for ``text``, or None when it does not start with a version."""
    match = _VERSION.match(text or "")
    if match is None:
        return None
    numbers = [int(part) for part in match.group(1).split(".")]
    while len(numbers) > 1 and numbers[-1] == 0:
        numbers.pop()
    tag = match.group(2)
    release = (0, _PRE_RANK[tag.lower()] * 1000 + int(match.group(3) or 0)) if tag else (1, 0)
    return tuple(numbers), release


def same(a: str | None, b: str | None) -> bool:
    """True when both are versions and equal as numbers."""
    ka, kb = version_key(a), version_key(b)
    return ka is not None and ka == kb


def at_least(found: str | None, minimum: str) -> bool:
    """``found >= minimum``; False when either is not a version."""
    kf, km = version_key(found), version_key(minimum)
    return kf is not None and km is not None and kf >= km
