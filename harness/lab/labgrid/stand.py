"""A whole labgrid lab on one host's loopback: coordinator, exporter, adb server and simulated boards as places.

Why: the harness's remote places (labgrid) must be tested, demonstrated and benchmarked without a rack of boards.
``lab_up`` builds the same stand a real lab has -- a ``labgrid-coordinator``, a lab host running
``labgrid-exporter`` (which serves consoles through ser2net) and one adb server, boards exported as places with
tags -- but every board is a simulated one (:mod:`harness.sim.api`) and everything listens on 127.0.0.1 only.
Every process is recorded (PID + start time) in ``LAB_DIR/stand.json`` and logs into ``LAB_DIR/logs/``;
``lab_down`` stops them by PID. How each place exports its adb endpoint: see :mod:`.exporter_yaml`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, HarnessError
from harness.lab.labgrid import exporter_yaml
from harness.lab.labgrid import stand_files as files
from harness.lab.labgrid import stand_procs as procs
from harness.lab.labgrid.stand_adb import connect_boards, start_adb_server
from harness.lab.labgrid.stand_procs import StepFailed
from harness.links.ports import free_port, port_in_use
from harness.sim import api as sim_api
from harness.sim import profile as sim_profile
from harness.sim import state as sim_state

HOST = "127.0.0.1"
DEFAULT_EXPORTER = "lab-host-a"
RESOURCES = ("console", "ssh", "adb")
_RESOURCE_LINE = re.compile(r"Resource '([^']+)' \(([^/]+)/([^/]+)/")


@dataclass
class LabStand:
    """A running stand as ``lab_up`` built it (``load_stand`` reads it back from the state file)."""

    lab_dir: Path
    coordinator: str  # "127.0.0.1:PORT"
    exporter: str  # exporter name, e.g. "lab-host-a"
    places: list[str]  # e.g. ["rv1126-01", "rk3588-02"]
    boards_file: Path
    adb_server: str = ""  # "127.0.0.1:PORT" of the lab host's adb server
    state: dict[str, Any] | None = None  # the raw state file (PIDs, ports, sim home)


def place_names(boards: int, profiles: Sequence[str]) -> list[tuple[str, str]]:
    """(place name, profile) for places 1..boards: place i uses profiles[(i-1) % len], named f"{profile}-{i:02d}"."""
    if boards < 1:
        raise ConfigError(f"a lab stand needs at least one board, not {boards}")
    if not profiles:
        raise ConfigError("give at least one board profile")
    return [(f"{profiles[(i - 1) % len(profiles)]}-{i:02d}", profiles[(i - 1) % len(profiles)])
            for i in range(1, boards + 1)]


def _logs(lab_dir: Path) -> Path:
    return lab_dir / "logs"


def _running(state: dict[str, Any]) -> list[str]:
    """Names of the recorded processes that still run."""
    named = [(k, state.get(f"{k}_proc")) for k in ("exporter", "coordinator", "adb")]
    named += [(f"board {b['place']}", b.get("supervisor")) for b in state.get("boards", [])]
    return [f"{name} (pid {proc['pid']})" for name, proc in named if procs.alive(proc)]


def _load_profiles(names: Sequence[str]) -> dict[str, sim_profile.Profile]:
    try:
        return {name: sim_profile.load(name) for name in set(names)}
    except sim_profile.UnknownProfile as exc:
        raise ConfigError(str(exc)) from None


def lab_up(boards: int, *, lab_dir: Path, coordinator_port: int | None = None,
           profiles: Sequence[str] = ("rv1126", "rk3588"), timeout: float = 60.0, adb_port: int | None = None,
           exporter_name: str = DEFAULT_EXPORTER) -> LabStand:
    """Start a stand of ``boards`` simulated boards as labgrid places; on any failure, tear down what started.

    ``coordinator_port``/``adb_port`` None: a free ephemeral port each. Boards go into the simulator home
    (NPU_HIL_SIM_HOME), named like their places; they outlive this process, as do all the stand's processes.
    """
    lab_dir = Path(lab_dir).resolve()
    plan = place_names(boards, profiles)
    profs = _load_profiles([p for _, p in plan])
    old = files.read_state(lab_dir)
    if old and _running(old):
        raise ConfigError(f"a lab stand is already running in {lab_dir}: {', '.join(_running(old))}",
                          fix=f"npu-hil lab down --dir {lab_dir}")
    if old:
        lab_down(lab_dir)  # stale state of a stand whose processes are gone: clear leftovers (ser2net, boards)
    port = coordinator_port or free_port()
    if port_in_use(HOST, port):
        raise ConfigError(f"port {HOST}:{port} is in use (another coordinator?)", fix="choose another --port")
    for tool in ("labgrid-coordinator", "labgrid-exporter", "labgrid-client", "ser2net"):
        procs.find_tool(tool)
    lab_dir.mkdir(parents=True, exist_ok=True)
    _logs(lab_dir).mkdir(exist_ok=True)
    for stale in ("places.yaml", "resources.yaml"):  # the coordinator's memory of an earlier stand
        (lab_dir / stale).unlink(missing_ok=True)
    state: dict[str, Any] = {"lab_dir": str(lab_dir), "coordinator": f"{HOST}:{port}", "exporter": exporter_name,
                             "places": [name for name, _ in plan], "sim_home": str(sim_state.home()),
                             "boards": [], "started": time.time()}
    files.write_state(lab_dir, state)
    try:
        _build(state, lab_dir, plan, profs, adb_port, deadline=time.monotonic() + timeout)
    except BaseException:
        lab_down(lab_dir)
        raise
    return load_stand(lab_dir)


def _build(state: dict[str, Any], lab_dir: Path, plan: list[tuple[str, str]],
           profs: dict[str, sim_profile.Profile], adb_port: int | None, deadline: float) -> None:
    def left() -> float:
        return max(1.0, deadline - time.monotonic())

    logs, coordinator = _logs(lab_dir), state["coordinator"]
    host, port = coordinator.rsplit(":", 1)
    log = logs / "coordinator.log"
    state["coordinator_proc"] = procs.spawn([procs.find_tool("labgrid-coordinator"), "--listen", coordinator],
                                            log=log, cwd=lab_dir)
    files.write_state(lab_dir, state)
    procs.wait_listening(host, int(port), state["coordinator_proc"], step="start coordinator", log=log,
                         timeout=min(15.0, left()))

    # boards boot while the places are created: both only wait on other processes
    endpoints: dict[str, dict[str, Any]] = {}

    def board(place: str, profile: str) -> None:
        try:
            endpoints[place] = sim_api.up(profile, name=place, timeout=min(30.0, left()))
        except HarnessError as exc:
            raise StepFailed(f"start board {place}", str(exc), sim_state.board_dir(place) / "supervisor.log") from None

    def place_create(place: str, profile: str) -> None:
        plog, prof = logs / "places.log", profs[profile]
        procs.run_client(coordinator, ["-p", place, "create"], step=f"create place {place}", log=plog, timeout=left())
        procs.run_client(coordinator, ["-p", place, "add-match", f"{state['exporter']}/{place}/*"],
                         step=f"create place {place}", log=plog, timeout=left())
        procs.run_client(coordinator, ["-p", place, "set-tags", f"soc={prof.chip}", f"npu={prof.npu}",
                                       f"board={place}"], step=f"create place {place}", log=plog, timeout=left())

    jobs: list[tuple[Callable[..., None], str, str]] = [(board, p, prof) for p, prof in plan]
    jobs += [(place_create, p, prof) for p, prof in plan]
    try:
        with ThreadPoolExecutor(max_workers=min(len(jobs), 8)) as pool:
            futures = [pool.submit(fn, p, prof) for fn, p, prof in jobs]
            errors = [f.exception() for f in futures if f.exception() is not None]
    finally:  # record every board that started, even if another failed
        state["boards"] = [_board_record(p, prof, endpoints[p]) for p, prof in plan if p in endpoints]
        files.write_state(lab_dir, state)
    if errors:
        raise errors[0]

    adb = start_adb_server(state, lab_dir, adb_port, left())
    connect_boards(adb, [endpoints[p]["adb"]["serial"] for p, _ in plan], logs / "adb-server.log", left())

    exports = [exporter_yaml.PlaceExport.from_sim_endpoints(p, endpoints[p], (HOST, adb.port)) for p, _ in plan]
    exporter_yaml.write(lab_dir / "exporter.yaml", exports)
    files.write_known_hosts(lab_dir, [(e["ssh"]["host"], e["ssh"]["port"], e["ssh"]["host_key"])
                                      for e in endpoints.values() if e["ssh"].get("host_key")])
    _start_exporter(state, lab_dir, left())

    listed = procs.run_client(coordinator, ["places"], step="list places", log=logs / "places.log", timeout=left())
    missing = [p for p, _ in plan if p not in listed.split()]
    if missing:
        raise StepFailed("list places", f"the coordinator does not list {', '.join(missing)}", logs / "places.log")
    toolkit = {prof.npu: prof.versions.runtime for prof in profs.values()}
    files.write_boards_toml(lab_dir, coordinator, [{"name": p, "chip": profs[prof].chip} for p, prof in plan], toolkit)
    state["ready"] = time.time()
    files.write_state(lab_dir, state)


def _board_record(place: str, profile: str, endpoints: dict[str, Any]) -> dict[str, Any]:
    sup = endpoints.get("supervisor_pid")
    board_pid = (endpoints.get("status") or {}).get("board_pid")
    return {"place": place, "profile": profile, "supervisor": procs.ref(sup) if sup else None,
            "board": procs.ref(board_pid) if board_pid else None, "adb_serial": endpoints["adb"]["serial"],
            "ssh": f"{endpoints['ssh']['host']}:{endpoints['ssh']['port']}", "console": endpoints["console"]["path"]}


def _start_exporter(state: dict[str, Any], lab_dir: Path, timeout: float) -> None:
    log = _logs(lab_dir) / "exporter.log"
    argv = [procs.find_tool("labgrid-exporter"), "-c", state["coordinator"], "-n", state["exporter"],
            "--hostname", HOST, str(lab_dir / "exporter.yaml")]
    state["exporter_proc"] = procs.spawn(argv, log=log, cwd=lab_dir)
    files.write_state(lab_dir, state)
    wait_resources(state, timeout=min(30.0, timeout))


def available_resources(state: dict[str, Any], *, timeout: float = 15.0) -> dict[str, set[str]]:
    """Per exporter group (= place), the names of its resources the coordinator lists as available."""
    out = procs.run_client(state["coordinator"], ["-v", "resources", "-e", state["exporter"]], step="list resources",
                           log=Path(state["lab_dir"]) / "logs" / "places.log", timeout=timeout)
    found: dict[str, set[str]] = {}
    for name, _exporter, group in _RESOURCE_LINE.findall(out):
        found.setdefault(group, set()).add(name)
    return found


def wait_resources(state: dict[str, Any], *, timeout: float) -> None:
    """Wait (bounded) until every place's console, ssh and adb are visible and available at the coordinator."""
    log = Path(state["lab_dir"]) / "logs" / "exporter.log"
    deadline = time.monotonic() + timeout
    while True:
        if procs.exited(state["exporter_proc"]):
            raise StepFailed("start exporter", "labgrid-exporter exited", log)
        found = available_resources(state, timeout=max(2.0, deadline - time.monotonic()))
        missing = [f"{p}/{r}" for p in state["places"] for r in RESOURCES if r not in found.get(p, set())]
        if not missing:
            return
        if time.monotonic() >= deadline:
            raise StepFailed("wait for resources", f"not available after {timeout:.0f} s: {', '.join(missing)}", log)
        time.sleep(0.3)


def load_stand(lab_dir: Path) -> LabStand:
    """The stand recorded in ``lab_dir`` (ConfigError if there is none)."""
    lab_dir = Path(lab_dir).resolve()
    state = files.read_state(lab_dir)
    if not state:
        raise ConfigError(f"no lab stand in {lab_dir}", fix=f"npu-hil lab up --dir {lab_dir}")
    adb = f"{HOST}:{state['adb_port']}" if state.get("adb_port") else ""
    return LabStand(lab_dir=lab_dir, coordinator=state["coordinator"], exporter=state["exporter"],
                    places=list(state["places"]), boards_file=lab_dir / files.BOARDS_NAME, adb_server=adb, state=state)


def _stop_exporter(state: dict[str, Any], timeout: float) -> None:
    """SIGTERM the exporter (it stops its ser2net children), then kill any child that outlived it, also when the
    exporter itself had crashed (its orphans stay in its process group)."""
    proc = state.get("exporter_proc")
    kids = [procs.ref(pid) for pid in procs.children(proc["pid"])] if procs.alive(proc) else []
    kids += [procs.ref(pid) for pid in procs.group_members(proc)] if proc else []
    procs.stop(proc, timeout=timeout)
    for kid in kids:
        procs.stop(kid, timeout=2.0)


def _stop_board(state: dict[str, Any], record: dict[str, Any], timeout: float) -> None:
    """Down a simulated board: through its supervisor if it is in our simulator home, then by PID regardless."""
    home = Path(state.get("sim_home", ""))
    status = sim_state.read_json(home / record["place"] / "status.json") or {}
    current = procs.ref(status["board_pid"]) if status.get("board_pid") else None
    if sim_state.home() == home and procs.alive(record.get("supervisor")):
        try:
            sim_api.down(record["place"], timeout=timeout)
        except HarnessError:
            pass
    for proc in (record.get("supervisor"), record.get("board"), current):
        procs.stop(proc, timeout=timeout)


def lab_down(lab_dir: Path, *, timeout: float = 20.0) -> None:
    """Stop every recorded process by PID: exporter (+ ser2net), coordinator, adb server, boards; then forget it."""
    lab_dir = Path(lab_dir).resolve()
    state = files.read_state(lab_dir)
    if state is None:
        return
    each = max(2.0, timeout / 4)
    _stop_exporter(state, each)
    procs.stop(state.get("coordinator_proc"), timeout=each)
    procs.stop(state.get("adb_proc"), timeout=each)
    with ThreadPoolExecutor(max_workers=min(8, max(1, len(state.get("boards", []))))) as pool:
        list(pool.map(lambda b: _stop_board(state, b, each), state.get("boards", [])))
    files.remove_state(lab_dir)


def restart_exporter(lab_dir: Path, *, timeout: float = 20.0) -> None:
    """Stop just the exporter and start it again; returns once every place's resources are available again."""
    lab_dir = Path(lab_dir).resolve()
    state = load_stand(lab_dir).state or {}
    _stop_exporter(state, timeout=min(10.0, timeout))
    _start_exporter(state, lab_dir, timeout)
    files.write_state(lab_dir, state)


__all__ = ["LabStand", "StepFailed", "available_resources", "lab_down", "lab_up", "load_stand", "place_names",
           "restart_exporter"]
