"""Start, stop and steer simulated boards: the Python API behind ``npu-hil sim`` and the pytest fixtures.

This module is the only door from the harness into the simulator: it starts a supervisor process and talks
to it over its loopback control port; everything else reaches the board through the board's own protocols.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from typing import Any

from harness.errors import BoardError, ConfigError, MissingExtra, require_extra
from harness.sim import faults as faults_mod
from harness.sim import state
from harness.sim.profile import COMPONENTS, UnknownProfile
from harness.sim.profile import load as load_profile

#: States a board settles in after power-on (a boot-looping board passes through "boot-loop" every boot).
READY_STATES = {"running", "halted", "recovery", "loader", "boot-loop"}
FAILED_STATES = {"failed", "crashed", "down"}


class SimError(ConfigError):
    """Bad input to the simulator (unknown profile or fault, name in use, no such board)."""


def _supervisor_pid(name: str) -> int | None:
    endpoints = state.read_json(state.board_dir(name) / "endpoints.json") or {}
    pid = endpoints.get("supervisor_pid")
    try:
        pid = pid or int((state.board_dir(name) / "supervisor.pid").read_text())
    except (FileNotFoundError, ValueError):
        return None
    return pid if state.pid_alive(pid) else None


def up(profile: str, *, name: str | None = None, faults: list[str] = (), versions: dict[str, str] | None = None,
       owner_pid: int | None = None, timeout: float = 20.0, fresh: bool = False) -> dict[str, Any]:
    """Start a simulated board and wait until it has booted; returns its endpoints (and status).

    ``faults`` are ``NAME[=VALUE]`` strings; ``versions`` overrides component versions (rknn_server, driver,
    runtime); ``owner_pid`` makes the board shut itself down when that process dies; ``fresh`` wipes a previous
    board of the same name (its /userdata included).
    """
    try:
        require_extra("onnxruntime", "sim", "a simulated board's NPU")
        require_extra("onnx", "sim", "a simulated board's NPU")
    except MissingExtra as exc:
        raise SimError(str(exc)) from None
    try:
        prof = load_profile(profile)
        active = faults_mod.parse_all(list(faults))
        if versions:
            prof.with_versions(versions)
        board_name = name or prof.name
        folder = state.board_dir(board_name)
    except (UnknownProfile, faults_mod.UnknownFault, ValueError) as exc:
        raise SimError(str(exc)) from None
    if _supervisor_pid(board_name):
        raise SimError(f"a simulated board named {board_name!r} is already running; "
                       f"stop it with `npu-hil sim down {board_name}` or choose another --name")
    if fresh and folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in ("status.json", "endpoints.json", "supervisor.pid"):
        (folder / stale).unlink(missing_ok=True)
    state.write_json(folder / "config.json", {"name": board_name, "profile": profile, "faults": active,
                                              "versions": dict(versions or {}), "owner_pid": owner_pid})
    with open(folder / "supervisor.out", "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "harness.sim.supervisor", str(folder)],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = state.read_json(folder / "status.json") or {}
        if status.get("state") in READY_STATES:
            endpoints = state.read_json(folder / "endpoints.json") or {}
            return {**endpoints, "status": status}
        if status.get("state") in FAILED_STATES or proc.poll() is not None:
            _kill(proc.pid)
            raise BoardError(f"simulated board {board_name!r} failed to start: "
                             f"{status.get('error') or status.get('state') or 'supervisor exited'}; "
                             f"see {folder}/supervisor.log and board.log")
        time.sleep(0.02)
    down(board_name)
    raise BoardError(f"simulated board {board_name!r} did not boot within {timeout:.0f} s; see {folder}/board.log")


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def control(name: str, request: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
    """Send one request to a board's supervisor over its control port."""
    endpoints = state.read_json(state.board_dir(name) / "endpoints.json")
    if not endpoints or not _supervisor_pid(name):
        raise SimError(f"no simulated board named {name!r} is running (see `npu-hil sim list`)")
    host, _, port = endpoints["control"].rpartition(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as conn:
        conn.sendall((json.dumps(request) + "\n").encode())
        reply = json.loads(conn.makefile().readline() or '{"ok": false, "error": "no reply"}')
    if not reply.get("ok"):
        raise SimError(f"{name}: {reply.get('error')}")
    return reply


def down(name: str, timeout: float = 10.0) -> bool:
    """Stop a board and every process it runs; True if one was running. Its folder (and /userdata) stays."""
    pid = _supervisor_pid(name)
    if not pid:
        return False
    status = state.read_json(state.board_dir(name) / "status.json") or {}
    try:
        control(name, {"op": "down"}, timeout=5)
    except (OSError, SimError, ValueError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while state.pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    if state.pid_alive(pid):
        _kill(pid)
    board_pid = status.get("board_pid")
    if board_pid and state.pid_alive(board_pid):
        _kill(board_pid)
    return True


def fault(name: str, spec: str, *, clear: bool = False) -> dict[str, Any]:
    try:
        if clear:
            return control(name, {"op": "clear", "fault": spec or None})["faults"]
        faults_mod.parse(spec)
    except faults_mod.UnknownFault as exc:
        raise SimError(str(exc)) from None
    return control(name, {"op": "fault", "fault": spec})["faults"]


def power(name: str, action: str) -> str:
    if action not in ("on", "off", "cycle"):
        raise SimError(f"power action must be on, off or cycle, not {action!r}")
    return control(name, {"op": "power", "action": action})["power"]


def status(name: str) -> dict[str, Any]:
    return control(name, {"op": "status"})


def endpoints(name: str) -> dict[str, Any]:
    data = state.read_json(state.board_dir(name) / "endpoints.json")
    if not data or not _supervisor_pid(name):
        raise SimError(f"no simulated board named {name!r} is running (see `npu-hil sim list`)")
    return data


def list_boards() -> list[dict[str, Any]]:
    boards = []
    home = state.home()
    for folder in sorted(home.iterdir()) if home.is_dir() else []:
        config = state.read_json(folder / "config.json")
        if not config:
            continue
        running = _supervisor_pid(folder.name) is not None
        status_data = state.read_json(folder / "status.json") or {}
        boards.append({"name": folder.name, "profile": config.get("profile"), "running": running,
                       "state": status_data.get("state") if running else "down", "faults": config.get("faults"),
                       "endpoints": state.read_json(folder / "endpoints.json") if running else None})
    return boards


def wait_state(name: str, wanted: set[str], timeout: float) -> str:
    """Wait until the board's status is one of ``wanted`` (e.g. after a reboot); returns the state."""
    deadline = time.monotonic() + timeout
    current = None
    while time.monotonic() < deadline:
        current = (state.read_json(state.board_dir(name) / "status.json") or {}).get("state")
        if current in wanted:
            return current
        time.sleep(0.02)
    raise BoardError(f"simulated board {name!r} stayed {current!r}, not {sorted(wanted)} within {timeout:.0f} s")


__all__ = ["up", "down", "fault", "power", "status", "endpoints", "list_boards", "wait_state", "control",
           "SimError", "COMPONENTS"]
