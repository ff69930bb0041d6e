"""A whole labgrid lab stand for a test module: ``lab_up`` in a temp folder, ``lab_down`` guaranteed, nothing left.

Why here: the stand's tests and the places' tests (tests/lab/) all need the same real coordinator + exporter +
adb server + simulated boards, and must prove afterwards -- by PID, never by name -- that ``lab_down`` stopped
every process the stand started (ser2net children of the exporter included).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from harness.lab.labgrid import stand_procs
from harness.lab.labgrid.stand import LabStand, lab_down, lab_up
from harness.lab.labgrid.stand_files import read_state
from harness.links.ports import port_in_use
from harness.sim import state as sim_state
from support.processes import alive, leftovers


def stand_pids(lab_dir: Path) -> list[int]:
    """Every PID the stand's state file records, the exporter's children (ser2net) and each board's current OS."""
    state = read_state(lab_dir) or {}
    refs = [state.get(k) for k in ("coordinator_proc", "exporter_proc", "adb_proc")]
    for board in state.get("boards", []):
        refs += [board.get("supervisor"), board.get("board")]
        status = sim_state.read_json(Path(state["sim_home"]) / board["place"] / "status.json") or {}
        if status.get("board_pid"):
            refs.append({"pid": status["board_pid"]})
    pids = [r["pid"] for r in refs if r]
    exporter = state.get("exporter_proc")
    if exporter and alive(exporter["pid"]):
        pids += stand_procs.children(exporter["pid"])
    return pids


@contextmanager
def lab_stand(root: Path, *, boards: int = 2, adb_port: int | None = None,
              profiles: Sequence[str] = ("rv1126", "rk3588"), timeout: float = 90.0) -> Iterator[LabStand]:
    """A running stand under ``root`` (lab in root/lab, boards in simulator home root/simhome, a free coordinator
    port); on exit ``lab_down`` and an assertion that no process it started (or that mentions ``root``) is left.

    NPU_HIL_SIM_HOME points at root/simhome while the stand lives, so its boards cannot collide with others'.
    """
    lab_dir, sim_home = root / "lab", root / "simhome"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NPU_HIL_SIM_HOME", str(sim_home))
        patch.delenv("LG_COORDINATOR", raising=False)
        stand = lab_up(boards, lab_dir=lab_dir, adb_port=adb_port, profiles=profiles, timeout=timeout)
        pids = stand_pids(lab_dir)
        try:
            yield stand
        finally:
            pids += stand_pids(lab_dir)  # restart_exporter and acquired places add processes
            lab_down(lab_dir)
            left = leftovers(pids, root)
            assert not left, f"processes left after lab_down: {left}"


def free_port_in(ports: range) -> int:
    """The first port of ``ports`` nobody listens on (one in TIME_WAIT from an earlier stand counts as free)."""
    for port in ports:
        if not port_in_use("127.0.0.1", port):
            return port
    pytest.fail(f"no free port in {ports.start}-{ports.stop - 1}")


def lab_fixture(*, boards: int = 2, adb_port: int | None = None, adb_ports: range | None = None,
                profiles: Sequence[str] = ("rv1126", "rk3588"), name: str = "lab") -> object:
    """A module-scoped fixture (assign it: ``lab = lab_fixture(adb_ports=range(15190, 15195))``) yielding a
    :class:`LabStand`; ``adb_ports`` picks the first free port of a range when the stand starts."""

    @pytest.fixture(scope="module", name=name)
    def _lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabStand]:
        port = free_port_in(adb_ports) if adb_ports is not None else adb_port
        with lab_stand(tmp_path_factory.mktemp("labstand"), boards=boards, adb_port=port,
                       profiles=profiles) as stand:
            yield stand

    return _lab


def labgrid_client(coordinator: str, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess:
    """``labgrid-client -x COORDINATOR ARGS`` as a user runs it (a real subprocess with a deadline)."""
    tool = stand_procs.find_tool("labgrid-client")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LG_")}
    return subprocess.run([tool, "-x", coordinator, *args], capture_output=True, text=True, timeout=timeout,
                          env=env, stdin=subprocess.DEVNULL, check=False)


def holder_of(coordinator: str, place: str) -> str | None:
    """Who the coordinator says holds ``place`` (asked with a plain labgrid-client, as a person would)."""
    from harness.lab.labgrid.client import parse_show

    done = labgrid_client(coordinator, "-p", place, "show")
    assert done.returncode == 0, done.stderr
    return parse_show(done.stdout)[0].acquired
