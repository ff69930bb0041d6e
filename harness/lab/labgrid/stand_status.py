"""What a running lab stand looks like right now: its processes, places (tags, holder) and available resources.

Why: ``npu-hil lab status`` answers "is the lab up, who holds which board, and is each board's console/ssh/adb
exported?" from the coordinator itself (through ``labgrid-client``), not from what ``lab up`` once wrote.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.errors import BoardError
from harness.lab.labgrid import stand_procs as procs
from harness.lab.labgrid.client import parse_show
from harness.lab.labgrid.stand import RESOURCES, available_resources, load_stand


def stand_status(lab_dir: Path, *, timeout: float = 15.0) -> dict[str, Any]:
    """The stand in ``lab_dir``: processes (alive or not) and, if the coordinator answers, every place's state."""
    stand = load_stand(lab_dir)
    state = stand.state or {}
    processes = {name: {"pid": state[key]["pid"], "alive": procs.alive(state[key])}
                 for name, key in (("coordinator", "coordinator_proc"), ("exporter", "exporter_proc"),
                                   ("adb server", "adb_proc")) if state.get(key)}
    for board in state.get("boards", []):
        if board.get("supervisor"):
            processes[f"board {board['place']}"] = {"pid": board["supervisor"]["pid"],
                                                    "alive": procs.alive(board["supervisor"])}
    result: dict[str, Any] = {"lab_dir": str(stand.lab_dir), "coordinator": stand.coordinator,
                              "exporter": stand.exporter, "adb_server": stand.adb_server,
                              "boards_file": str(stand.boards_file), "processes": processes, "places": {},
                              "error": None}
    log = stand.lab_dir / "logs" / "places.log"
    try:
        out = procs.run_client(stand.coordinator, ["-v", "places"], step="list places", log=log, timeout=timeout)
        listed = {info.name: info for info in parse_show(out)}
        available = available_resources(state, timeout=timeout)
    except BoardError as exc:
        result["error"] = str(exc)
        return result
    for name in stand.places:
        info = listed.get(name)
        result["places"][name] = {
            "exists": info is not None,
            "tags": info.tags if info else {},
            "acquired": info.acquired if info else None,
            "resources": {r: r in available.get(name, set()) for r in RESOURCES},
        }
    return result
