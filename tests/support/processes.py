"""Host processes seen through /proc, and waiting for a condition with a deadline.

Why: a simulated board's commands are ordinary host processes (in a user namespace), so tests prove that a
timeout, a closed channel or ``sim down`` left nothing running by looking at /proc, never by killing by name.
Every wait here has a deadline, so a broken board fails a test instead of hanging it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path


def _command_lines() -> list[tuple[int, bytes]]:
    """(PID, raw NUL-separated command line) of every process but this one; vanished ones are skipped."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            found.append((int(entry.name), (entry / "cmdline").read_bytes()))
        except OSError:
            continue
    return found


def _joined(raw: bytes) -> bytes:
    """A raw command line with its arguments joined by spaces, as ``ps`` shows it."""
    return raw.replace(b"\0", b" ")


def processes_matching(marker: str) -> list[int]:
    """Host PIDs whose command line (arguments joined by spaces) contains ``marker``, e.g. ``"sleep 31337"``."""
    return [pid for pid, raw in _command_lines() if marker.encode() in _joined(raw)]


def processes_mentioning(text: str) -> list[str]:
    """``"PID: cmdline"`` of every live process whose command line contains ``text`` (e.g. a test's folder)."""
    return [f"{pid}: {_joined(raw).decode(errors='replace').strip()}"
            for pid, raw in _command_lines() if text.encode() in raw]


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (a reaped-later child of ours is already dead)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def leftovers(pids: list[int], folder: Path, timeout: float = 10.0) -> list[str]:
    """What is still running after ``timeout``: any of ``pids``, or any process that mentions ``folder``."""
    deadline = time.monotonic() + timeout
    while True:
        left = [f"{pid}: still alive" for pid in pids if alive(pid)] + processes_mentioning(str(folder))
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.05)


def wait_until(predicate: Callable[[], object], deadline_s: float = 15.0) -> bool:
    """True as soon as ``predicate()`` is truthy; after ``deadline_s`` seconds, its last answer (as a bool)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())
