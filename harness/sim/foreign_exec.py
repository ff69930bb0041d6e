"""How the simulated board runs its own machine's programs (armhf or aarch64 ELF files) on this x86 host.

The board's userspace is the host's busybox, so an ARM program fails ``execve`` with ENOEXEC. POSIX shells then
run the file "as a script", and busybox ash does it by executing ``/proc/self/exe`` (its own binary,
CONFIG_BUSYBOX_EXEC_PATH) as ``ash FILE ARGS...``; it runs its applets through the same path, with the applet's
name as argv[0]. ``/proc`` on the simulated board is the simulator's folder, so ``/proc/self/exe`` is where the
simulated kernel puts its program loader (``native/sim_exec.c``, a small static program of this host): an ELF
file of the board's machine runs under Debian's qemu-user, anything else goes on to busybox unchanged.

qemu-user is called explicitly, never through binfmt_misc (which needs privileges on the host). It runs inside
the board (its root, PID namespace and files), so it is copied into the board at ``/usr/libexec/sim-qemu/`` with
the host libraries it links and started through their own loader: nothing of the host's / is needed in the
chroot. The board's C library (from Debian's cross toolchain, ``/usr/arm-linux-gnueabihf/lib``) goes in its
``/lib``, as on a Buildroot image. Without qemu-user or the cross C library the board still boots; its ARM
programs fail with one line naming the package.

Known limit: a program started by another program's ``execvp`` (``env``, ``timeout``, ``xargs``) gets glibc's
own ENOEXEC fallback (``/bin/sh FILE``) instead of this loader; the harness starts programs from the shell.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from pathlib import Path

from harness.sim.native_build import SOURCES, build_cached

log = logging.getLogger("npu-hil.sim.exec")

QEMU_DIR = "usr/libexec/sim-qemu"
LOADER = QEMU_DIR + "/loader"
#: The board's machine: (its ELF e_machine, qemu-user's name, the cross C library)
MACHINES = {
    "armhf": (40, "qemu-arm", "/usr/arm-linux-gnueabihf/lib"),
    "aarch64": (183, "qemu-aarch64", "/usr/aarch64-linux-gnu/lib"),
}
#: What a Buildroot image's /lib holds of the C library (the runner needs libc and libdl).
C_LIBRARY = re.compile(r"^(ld-linux[\w.-]*\.so\.\d|lib(c|m|dl|pthread|rt|gcc_s)\.so\.\d+)$")


def _place(src: Path, dest: Path) -> None:
    """A copy, skipped when the board already has this one (same size and time). Never a hard link: a board
    command writing its file would write the host's."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_file() and not dest.is_symlink():
        have, want = dest.stat(), src.stat()
        if (have.st_size, int(have.st_mtime)) == (want.st_size, int(want.st_mtime)):
            return
    if dest.exists() or dest.is_symlink():
        dest.unlink()
    shutil.copy2(src, dest)


def _host_libraries(binary: str) -> tuple[Path | None, list[Path]]:
    """The dynamic loader and libraries ``binary`` links on this host (from ldd)."""
    try:
        text = subprocess.run(["ldd", binary], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None, []
    loader, libraries = None, []
    for line in text.splitlines():
        match = re.search(r"(?:=>\s*)?(/\S+)\s+\(0x", line)
        if not match:
            continue
        path = Path(match.group(1))
        if "=>" in line:
            libraries.append(path)
        else:
            loader = path
    return loader, libraries


def install(root: Path, arch: str) -> None:
    """Give the board root its program loader, qemu-user for its machine and the cross C library. What this host
    lacks is a warning: the board boots, and its ARM programs fail with one line naming the package."""
    machine, qemu, c_library = MACHINES[arch]
    root = Path(root)
    loader = build_cached("cc", ["-O2", "-Wall", "-static", f"-DBOARD_MACHINE={machine}", f'-DQEMU="{qemu}"'],
                          SOURCES / "sim_exec.c", f"sim_exec-{arch}", package="gcc libc6-dev")
    if loader:
        _place(loader, root / LOADER)
    found = shutil.which(qemu)
    host_loader, libraries = _host_libraries(found) if found else (None, [])
    if found and host_loader:
        target = root / QEMU_DIR
        _place(Path(found).resolve(), target / qemu)
        _place(host_loader.resolve(), target / "ld.so")
        for library in libraries:
            _place(library.resolve(), target / library.name)
    else:
        log.warning("%s not found: the simulated board cannot run %s programs (apt-get install qemu-user)", qemu, arch)
    libs = Path(c_library)
    if libs.is_dir():
        for src in libs.iterdir():
            if C_LIBRARY.match(src.name):
                _place(src.resolve(), root / "lib" / src.name)
    else:
        log.warning("%s not found: the simulated board has no C library for %s programs", c_library, arch)


def write_loader(proc: Path) -> None:
    """/proc/self/exe for this boot (the reboot emptied /proc), when the board has the loader."""
    loader = proc.parent / LOADER
    if loader.is_file():
        exe = proc / "self" / "exe"
        exe.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(loader, exe)
