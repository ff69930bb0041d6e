"""Stop the simulated boards a pytest subprocess left running in the current simulator home.

Why: the tests that run a whole ``pytest`` (pytester) against simulated boards rely on that run to stop its
boards; a run that died or was killed cannot, so each such test ends by downing whatever still runs in its own
NPU_HIL_SIM_HOME, by the supervisor PID ``api.down`` reads (never by process name). Written once here.
"""

from __future__ import annotations

from harness.sim import api


def down_running_boards() -> None:
    """``api.down`` every board of the current NPU_HIL_SIM_HOME that is still running."""
    for entry in api.list_boards():
        if entry.get("running"):
            api.down(entry["name"])
