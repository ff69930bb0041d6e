"""What the simulated runtime says: its log lines, as each NPU generation prints them, and its error codes.

Separate from :mod:`harness.sim.npu_runtime` so every board tool (rknn_benchmark, the Lite runner, the C API's
far end) logs and fails with the same words.
"""

from __future__ import annotations

from datetime import datetime
from typing import Callable

#: rknn_api.h error codes the simulated runtime returns, and the names RKNN Toolkit Lite prints for them. The
#: ``-9`` in RKNPU1's ``driver open fail! ret = -9`` log line is the library's internal (transfer) code, not the
#: C API's -9 (RKNN_ERR_OUTPUT_INVALID): rknn_init itself returns -3, which Lite names DEVICE_UNAVAILABLE.
ERROR_NAMES = {-1: "RKNN_ERR_FAIL", -3: "RKNN_ERR_DEVICE_UNAVAILABLE", -5: "RKNN_ERR_PARAM_INVALID",
               -6: "RKNN_ERR_MODEL_INVALID", -13: "RKNN_ERR_TARGET_PLATFORM_UNMATCH"}


class RknnError(Exception):
    """An rknn_* call failed with ``code`` (the runtime's own log lines were already printed)."""

    def __init__(self, code: int) -> None:
        super().__init__(f"{ERROR_NAMES.get(code, 'RKNN error')} ({code})")
        self.code = code


class RuntimeLog:
    """The runtime's log, as each generation prints it: ``E RKNN: [hh:mm:ss.mmm] ...`` (RKNPU2), ``E RKNNAPI: ...``
    (RKNPU1). Info lines appear only at ``level`` >= 3 (RKNN_LOG_LEVEL), as with the real library."""

    def __init__(self, npu: str, write: Callable[[str], None], level: int = 0) -> None:
        self.npu, self.write, self.level = npu, write, level

    def _line(self, tag: str, message: str) -> None:
        if self.npu == "rknpu2":
            self.write(f"{tag} RKNN: [{datetime.now().strftime('%H:%M:%S.%f')[:12]}] {message}")
        else:
            self.write(f"{tag} RKNNAPI: {message}")

    def e(self, message: str) -> None:
        self._line("E", message)

    def w(self, message: str) -> None:
        self._line("W", message)

    def i(self, message: str) -> None:
        if self.level >= 3:
            self._line("I", message)
