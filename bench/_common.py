"""Timing helpers shared by the bench scripts (imported as ``_common``: a script's own folder is on sys.path).

Why: every bench reports a best-of-N or a median of repeated runs of the same action; one definition keeps the
figures of different scripts measured the same way (``time.perf_counter``, nothing else in the loop).
"""

from __future__ import annotations

import statistics
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path


def timed(action: Callable[[], object]) -> float:
    """Wall-clock seconds of one call of ``action``."""
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def timings(action: Callable[[], object], runs: int) -> list[float]:
    """Wall-clock seconds of each of ``runs`` calls of ``action``."""
    return [timed(action) for _ in range(runs)]


def best_seconds(action: Callable[[], object], runs: int) -> float:
    """The fastest of ``runs`` calls, in seconds (the least disturbed by other work on a shared machine)."""
    return min(timings(action, runs))


def median_ms(action: Callable[[], object], runs: int) -> float:
    """The median of ``runs`` calls, in milliseconds (for short round trips, where one outlier is noise)."""
    return statistics.median(timings(action, runs)) * 1000


def release_notice_seconds(holder_argv: list[str], cwd: Path, acquire: Callable[[], object],
                           release: Callable[[], object], settle: float) -> float:
    """How long a waiting run needs to notice a released board lock or place.

    ``holder_argv`` starts a process that takes the lock, prints ``held``, waits for a line on stdin, releases and
    prints ``released <time.time()>`` (t0). Meanwhile ``acquire`` (a blocking wait in this process) returns at t1;
    ``settle`` seconds pass first so the waiter is polling when the holder lets go. Returns t1 - t0.
    """
    holder = subprocess.Popen(holder_argv, cwd=cwd, text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdin is not None
        if holder.stdout.readline().strip() != "held":
            raise SystemExit("the holder process did not take the lock")
        got: dict[str, float] = {}

        def wait() -> None:
            acquire()
            got["t1"] = time.time()

        thread = threading.Thread(target=wait)
        thread.start()
        time.sleep(settle)
        holder.stdin.write("release\n")
        holder.stdin.flush()
        t0 = float(holder.stdout.readline().split()[1])
        thread.join(timeout=120)
        release()
        if "t1" not in got:
            raise SystemExit("the waiter never got the lock")
        return got["t1"] - t0
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.wait(timeout=10)


def down_all(home: Path) -> None:
    """``api.down`` every simulated board of one simulator home (by supervisor PID; the API reads the home from
    NPU_HIL_SIM_HOME, set here)."""
    import os

    from harness.sim import api

    os.environ["NPU_HIL_SIM_HOME"] = str(home)
    for folder in home.iterdir() if home.is_dir() else []:
        if (folder / "config.json").exists():
            api.down(folder.name)
