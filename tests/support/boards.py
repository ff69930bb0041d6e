"""In-process simulated board pieces: a board root with busybox and the context an endpoint runs against.

Why: the tests of one simulated endpoint (SSH server, console) and of the harness's links run that endpoint in
the test process against a real board root; they all need the same root, state folder and fault set, built
one way.
"""

from __future__ import annotations

from pathlib import Path

from harness.sim import profile, rootfs
from harness.sim.context import BoardContext
from harness.sim.faults import FaultSet


def board_context(folder: Path, profile_name: str = "rv1126", *, state_dir: Path | None = None) -> BoardContext:
    """A ``profile_name`` board root built in ``folder/root``, as context ``sim-<profile_name>``.

    Board state and faults live in ``state_dir`` (default ``folder/state``, created when missing).
    """
    prof = profile.load(profile_name)
    root = rootfs.build(folder / "root", prof)
    state = state_dir or folder / "state"
    state.mkdir(parents=True, exist_ok=True)
    return BoardContext(name=f"sim-{profile_name}", profile=prof, root=root, state_dir=state, faults=FaultSet(state))
