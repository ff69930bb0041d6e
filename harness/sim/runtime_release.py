"""What each simulated NPU runtime release carries about the kernel driver it was built against.

Why here and not the harness's version matrix: on a real board this knowledge is compiled into the runtime
library (librknn_runtime carries the galcore HAL version of its release and refuses another driver;
librknnrt warns below the driver it recommends), not looked up in the lab's matrix. The simulator keeps its
own table, so a wrong row in the harness's matrix data or a bug in its loader is not mirrored by the board.

Sources: the RKNN-Toolkit 1.7.1 troubleshooting manual, section 4.1.3 (runtime -> galcore of each release,
toolkit 1.0.0 to 1.7.1), and the rknpu 1.7.3/1.7.5 release files; librknnrt 1.5.2 and 1.6.0 print
``recommend to upgrade the driver to the new version: >= 0.8.8`` on driver 0.8.2 (the warning of other
releases is not documented; the simulated runtime prints the same minimum for every release).
"""

from __future__ import annotations

from harness.sim.vercmp import same

#: RKNPU1: librknn_runtime version -> the galcore (HAL) version built into it.
RKNPU1_HAL = {"0.9.8": "6.3.3.3718", "0.9.9": "6.3.3.3718", "1.0.0": "6.3.3.03718", "1.1.0": "6.4.0.213404",
              "1.2.0": "6.4.0.213404", "1.3.0": "6.4.0.227915", "1.3.2": "6.4.0.7915", "1.4.0": "6.4.0.27915",
              "1.6.0": "6.4.3.5.293908", "1.6.1": "6.4.3.5.293908", "1.7.0": "6.4.6.5.351518",
              "1.7.1": "6.4.6.5.351518", "1.7.3": "6.4.6.5.351518", "1.7.5": "6.4.6.5.351518"}
#: RKNPU2: the driver librknnrt recommends (it warns below it, and runs).
RKNPU2_RECOMMENDED_DRIVER = "0.8.8"


def hal_version(runtime: str) -> str | None:
    """The galcore version an RKNPU1 runtime was built with; None for a release this table does not know."""
    return next((hal for version, hal in RKNPU1_HAL.items() if same(runtime, version)), None)
