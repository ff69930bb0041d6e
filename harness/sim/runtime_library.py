"""The simulated board's NPU runtime library file: a real ARM shared library for C programs, with the version
strings ``strings`` finds in Rockchip's.

``native/sim_rknn_runtime.c`` (the rknn_* calls forwarded to the simulator, :mod:`harness.sim.npu_api`) is
built with Debian's cross compiler for the board's machine and generation, then written where the board's
runtime lives: ``librknnrt.so`` on RKNPU2; on RKNPU1 the C API is ``librknn_api.so`` beside
``librknn_runtime.so``. The version strings follow the ELF image (the loader maps by program headers, so bytes
after them are inert), as they would sit in the real file's rodata. Without the cross compiler the file is the
version strings alone: ``strings`` still works and dlopen fails ("invalid ELF header"), as with a broken runtime
on a real board.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from harness.sim.native_build import SOURCES, build_cached

#: The C API's declarations, shared with the native runner: the ABI both sides are built to.
DECLS = Path(str(resources.files("harness.npu.runner").joinpath("native")))
COMPILERS = {"armhf": ("arm-linux-gnueabihf-gcc", "gcc-arm-linux-gnueabihf"),
             "aarch64": ("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu")}
#: Where RKNPU1's C API library lives (its runtime, librknn_runtime.so, is the profile's runtime_lib)
RKNPU1_API_LIB = "/usr/lib/librknn_api.so"


def build(arch: str, npu: str) -> bytes | None:
    """The stand-in library for ``arch`` and ``npu`` (rknpu1/rknpu2), or None when it cannot be built here."""
    cc, package = COMPILERS[arch]
    flags = ["-O2", "-Wall", "-std=c99", "-shared", "-fPIC", "-I", str(DECLS)]
    if npu == "rknpu1":
        flags.append("-DNPU_HIL_RKNPU1")
    built = build_cached(cc, flags, SOURCES / "sim_rknn_runtime.c", f"sim_rknn_runtime-{npu}-{arch}.so",
                         headers=(DECLS / "rknn_decls.h",), package=package)
    return built.read_bytes() if built else None
