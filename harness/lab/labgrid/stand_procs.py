"""Processes of a lab stand: start them detached with a log, know them by PID (+ start time), stop them by PID.

Why: the stand's processes (coordinator, exporter, adb server, simulated boards) must outlive ``npu-hil lab up``
and be stopped later by another process (``npu-hil lab down``) that only has the state file. A PID alone can be
reused by an unrelated process by then, so every recorded process carries its kernel start time and is only
signalled while both still match. Nothing here kills by name.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from harness.errors import BoardError, ConfigError

#: Popen objects of children started by this process, so stopping one also reaps it (no zombie left behind).
_CHILDREN: dict[int, subprocess.Popen] = {}


class StepFailed(BoardError):
    """One step of ``lab up`` (or ``restart_exporter``) failed; the message names the step and the log to read."""

    def __init__(self, step: str, detail: str, log: Path | None = None) -> None:
        where = f"; see {log}" if log else ""
        super().__init__(f"lab stand: step '{step}' failed: {detail}{where}")
        self.step = step


def find_tool(name: str) -> str:
    """A labgrid/ser2net/adb executable: next to this interpreter (the venv's bin) first, then PATH, then sbin."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if not found:
        hint = "pip install 'npu-hil[lab]'" if name.startswith("labgrid") else f"sudo apt-get install {name}"
        raise ConfigError(f"{name} is not installed", fix=hint)
    return found


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat); None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else int(fields[19])


def ref(pid: int) -> dict[str, int]:
    """What the state file records for a process: its PID and start time."""
    return {"pid": pid, "start": start_time(pid) or 0}


def alive(proc: dict[str, int] | None) -> bool:
    """True while the recorded process still runs (same PID *and* same start time, not a zombie)."""
    return bool(proc) and start_time(proc["pid"]) == proc.get("start")


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (e.g. the ser2net processes an exporter started)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return found


def group_members(proc: dict[str, int]) -> list[int]:
    """Processes still in the recorded process's group (it was started as a session and group leader), started
    after it: the ser2net children an exporter left behind when it crashed, found by the recorded PID alone."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        pid = int(stat.parent.name)
        if pid != proc["pid"] and int(fields[2]) == proc["pid"] and fields[0] != "Z" \
                and int(fields[19]) >= proc.get("start", 0):
            found.append(pid)
    return found


def spawn(argv: Sequence[str], *, log: Path, cwd: Path, env: dict[str, str] | None = None) -> dict[str, int]:
    """Start ``argv`` in its own session (it outlives us), output appended to ``log``; returns its :func:`ref`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(list(argv), cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    _CHILDREN[proc.pid] = proc
    return ref(proc.pid)


def exited(proc: dict[str, int]) -> bool:
    """True if a process we started has ended (reaping it if it is our child)."""
    child = _CHILDREN.get(proc["pid"])
    if child is not None and child.poll() is not None:
        return True
    return not alive(proc)


def _wait_gone(proc: dict[str, int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if exited(proc):
            return True
        time.sleep(0.02)
    return exited(proc)


def stop(proc: dict[str, int] | None, timeout: float = 5.0) -> None:
    """SIGTERM the recorded process, SIGKILL it after ``timeout``; a process already gone is fine."""
    if not proc or not alive(proc):
        _reap(proc)
        return
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 2.0)):
        try:
            os.kill(proc["pid"], sig)
        except ProcessLookupError:
            break
        if _wait_gone(proc, wait):
            break
    _reap(proc)


def _reap(proc: dict[str, int] | None) -> None:
    child = _CHILDREN.pop(proc["pid"], None) if proc else None
    if child is not None:
        try:
            child.wait(1.0)
        except subprocess.TimeoutExpired:
            pass




def wait_listening(host: str, port: int, proc: dict[str, int], *, step: str, log: Path, timeout: float) -> None:
    """Poll until ``host:port`` accepts a connection; fail the step early if ``proc`` exits meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError:
            pass
        if exited(proc):
            raise StepFailed(step, f"process {proc['pid']} exited before listening on {host}:{port}", log)
        if time.monotonic() >= deadline:
            raise StepFailed(step, f"nothing listens on {host}:{port} after {timeout:.0f} s", log)
        time.sleep(0.05)


def run_client(coordinator: str, args: Sequence[str], *, step: str, log: Path, timeout: float = 15.0) -> str:
    """``labgrid-client -x COORDINATOR ARGS`` with a deadline; its stdout, or StepFailed with its stderr."""
    argv = [find_tool("labgrid-client"), "-x", coordinator, *args]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LG_")}
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env,
                              stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired:
        raise StepFailed(step, f"`labgrid-client {' '.join(args)}` took over {timeout:.0f} s", log) from None
    with open(log, "a") as out:
        out.write(f"$ labgrid-client -x {coordinator} {' '.join(args)}  -> {done.returncode}\n"
                  f"{done.stdout}{done.stderr}")
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise StepFailed(step, f"`labgrid-client {' '.join(args)}` exited {done.returncode}: {last}", log)
    return done.stdout
