"""Timing helpers shared by the bench scripts (imported as ``_common``: a script's own folder is on sys.path).

Why: every bench reports a best-of-N or a median of repeated runs of the same action; one definition keeps the
figures of different scripts measured the same way (``time.perf_counter``, nothing else in the loop).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def timings(action: Callable[[], object], runs: int) -> list[float]:
    """Wall-clock seconds of each of ``runs`` calls of ``action``."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return times


def best_seconds(action: Callable[[], object], runs: int) -> float:
    """The fastest of ``runs`` calls, in seconds (the least disturbed by other work on a shared machine)."""
    return min(timings(action, runs))


def median_ms(action: Callable[[], object], runs: int) -> float:
    """The median of ``runs`` calls, in milliseconds (for short round trips, where one outlier is noise)."""
    return statistics.median(timings(action, runs)) * 1000
