"""Build the native runner (``runner/native/npu_hil_runner.c``) with a C compiler: ``npu-hil runner build``.

One source, two ABIs (``rknn_decls.h``): ``rknpu1`` for librknn_api.so (RV1109/RV1126, RK1808) and ``rknpu2``
for librknnrt.so. ``arch="host"`` builds with ``cc`` (or ``CC``); ``armhf`` (RV1109/RV1126, RV1106) and ``aarch64``
(RK3566/RK3568/RK3588, RK1808) build with Debian's cross compilers. With ``stub=True`` it also builds the stand-in
runtime library (``stub_runtime.c``) for the same architecture. An ARM binary runs on this host under Debian's
qemu-user, invoked explicitly (:func:`emulator`; no binfmt_misc, which needs privileges). A missing compiler or
a compile error is one ConfigError / HarnessError line naming the command and the package to install.
"""

from __future__ import annotations

import os
import platform
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from harness.errors import ConfigError, HarnessError

SOURCES = Path(str(resources.files("harness.npu.runner").joinpath("native")))
ABIS = {"rknpu1": ["-DNPU_HIL_RKNPU1"], "rknpu2": []}
#: Board architectures: (cross compiler, its Debian package, qemu-user binary, the cross sysroot qemu reads)
ARCHES = {
    "armhf": ("arm-linux-gnueabihf-gcc", "gcc-arm-linux-gnueabihf", "qemu-arm", "/usr/arm-linux-gnueabihf"),
    "aarch64": ("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu", "qemu-aarch64", "/usr/aarch64-linux-gnu"),
}
#: _FILE_OFFSET_BITS=64: 32-bit readdir fails (EOVERFLOW) on 64-bit directory offsets, as a 64-bit kernel or qemu-user
#: on a 64-bit host gives them; the runner reads /proc with it
CFLAGS = ["-O2", "-Wall", "-Wextra", "-std=c99", "-D_FILE_OFFSET_BITS=64"]
COMPILE_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Built:
    abi: str
    arch: str
    runner: Path
    stub: Path | None = None

    def command(self) -> list[str]:
        """How to start the runner on this host (under qemu-user for a board's architecture)."""
        return [*emulator(self.arch), str(self.runner)]

    def to_dict(self) -> dict[str, str | None]:
        return {"abi": self.abi, "arch": self.arch, "runner": str(self.runner),
                "stub": str(self.stub) if self.stub else None}


def compiler(cc: str | None = None, arch: str = "host") -> str:
    """The C compiler for ``arch``: ``cc``, else (host) $CC or ``cc`` / (a board) Debian's cross compiler;
    ConfigError naming the package when it is not installed."""
    if arch != "host" and arch not in ARCHES:
        raise ConfigError(f"unknown architecture {arch!r}; one of host, {', '.join(ARCHES)}")
    name = cc or (ARCHES[arch][0] if arch != "host" else os.environ.get("CC") or "cc")
    package = ARCHES[arch][1] if arch != "host" else "gcc"
    found = shutil.which(shlex.split(name)[0]) if name.strip() else None
    if found is None:
        raise ConfigError(f"no C compiler {name!r}: install one (Debian: apt-get install {package}) or pass --cc")
    return name


def emulator(arch: str) -> list[str]:
    """The command prefix that runs an ``arch`` binary on this host: [] for the host's own, else Debian's
    qemu-user with the cross sysroot (``qemu-arm -L /usr/arm-linux-gnueabihf``)."""
    if arch not in ARCHES:
        return []
    qemu, sysroot = ARCHES[arch][2], ARCHES[arch][3]
    if shutil.which(qemu) is None:
        raise ConfigError(f"{qemu} is not installed: apt-get install qemu-user (runs {arch} binaries here)")
    return [qemu, "-L", sysroot]


def target_arch(cc: str) -> str:
    """What ``cc`` builds for (``cc -dumpmachine``'s first field, e.g. x86_64, aarch64, arm)."""
    try:
        machine = subprocess.run([*shlex.split(cc), "-dumpmachine"], capture_output=True, text=True,
                                 timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        machine = ""
    return machine.split("-")[0] or platform.machine()


def _compile(cc: str, args: list[str]) -> None:
    command = [*shlex.split(cc), *args]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise HarnessError(f"{shlex.join(command)} did not finish within {COMPILE_TIMEOUT_S:g} s") from None
    if done.returncode != 0:
        tail = " | ".join(done.stderr.strip().splitlines()[-4:])
        raise HarnessError(f"compiling the native runner failed ({shlex.join(command)}): {tail}")


def build(out_dir: Path, *, cc: str | None = None, abis: tuple[str, ...] = tuple(ABIS),
          stub: bool = False, arch: str = "host") -> list[Built]:
    """Build the runner (and the stub runtime) for each ABI and ``arch`` into ``out_dir``; what was built."""
    unknown = sorted(set(abis) - set(ABIS))
    if unknown:
        raise ConfigError(f"unknown runner ABI(s) {', '.join(unknown)}; one of {', '.join(ABIS)}")
    cc = compiler(cc, arch)
    arch = arch if arch != "host" else target_arch(cc)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    built = []
    for abi in abis:
        runner = out_dir / f"npu_hil_runner-{abi}-{arch}"
        _compile(cc, [*CFLAGS, *ABIS[abi], "-I", str(SOURCES), "-o", str(runner),
                      str(SOURCES / "npu_hil_runner.c"), "-ldl"])
        library = None
        if stub:
            library = out_dir / f"libstub_rknn-{abi}-{arch}.so"
            _compile(cc, [*CFLAGS, *ABIS[abi], "-shared", "-fPIC", "-I", str(SOURCES), "-o", str(library),
                          str(SOURCES / "stub_runtime.c")])
        built.append(Built(abi, arch, runner, library))
    return built
