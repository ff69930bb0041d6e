"""The board commands that read an NPU stack's versions (manual 4.1.3), and the record they produce.

Why commands live here and paths come from the caller: the commands are the manual's (the same on a bench
board and on the simulator), while where ``rknn_server`` and the runtime library live depends on the chip and
the OS (``/usr/lib/librknnrt.so``, ``/oem/usr/lib/librknnmrt.so``, ``/vendor/lib64/...``): that is chip data.
Every path is ``shlex.quote``d. A probe's own failure (file missing, no permission) is not an exception: the
component's version is ``None`` and what the board printed is kept, for the matrix check and the report.
Link failures (timeouts, a lost device) do propagate: they are the link's, not the firmware's, fault.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from harness.errors import ConfigError
from harness.links.base import ShellResult
from harness.npu.versions import (
    ParsedVersion,
    parse_compatible,
    parse_galcore,
    parse_kernel,
    parse_rk_version,
    parse_rknn_server,
    parse_rknpu,
    parse_runtime,
)

Shell = Callable[[str], ShellResult]

NPU_GENERATIONS = ("rknpu1", "rknpu2")

#: RKNPU2 kernel driver: debugfs first, procfs on kernels without debugfs, the boot log last.
RKNPU_DRIVER_COMMANDS = (
    "cat /sys/kernel/debug/rknpu/version",
    "cat /proc/rknpu/version",
    "dmesg | grep -i rknpu",
)
GALCORE_DRIVER_COMMAND = "dmesg | grep -i galcore"
#: ``comm`` is exactly the process name; ``[0-9]*`` skips /proc/self, the grep itself is named ``grep``.
SERVER_RUNNING_COMMAND = "grep -lx rknn_server /proc/[0-9]*/comm 2>/dev/null"
RK_VERSION_COMMAND = "cat /etc/version"
KERNEL_COMMAND = "cat /proc/version"
COMPATIBLE_COMMAND = "cat /proc/device-tree/compatible"


def check_npu(npu: str) -> str:
    """The NPU generation in canonical form, or a ConfigError naming the known ones."""
    canonical = str(npu).strip().lower()
    if canonical not in NPU_GENERATIONS:
        raise ConfigError(f"unknown NPU generation {npu!r}; known: {', '.join(NPU_GENERATIONS)}")
    return canonical


def server_version_commands(npu: str, server_bin: str) -> tuple[str, ...]:
    """The manual's ``strings rknn_server | grep build``; RKNPU2 servers >= 1.5.2 also say ``rknn_server
    version:``, which is tried first because it cannot be confused with another build line."""
    path = shlex.quote(server_bin)
    by_build = f"strings {path} | grep build"
    if check_npu(npu) == "rknpu2":
        return (f"strings {path} | grep -i 'rknn_server version'", by_build)
    return (by_build,)


def runtime_version_command(runtime_lib: str) -> str:
    """``strings RUNTIME | grep -i version``: the parser picks the library's own line among the others."""
    return f"strings {shlex.quote(runtime_lib)} | grep -i version"


#: Every component a VersionRecord carries, in the order reports show them.
RECORDED_COMPONENTS = ("driver", "rknn_server", "runtime", "chip", "kernel", "rk_version")


@dataclass(frozen=True)
class VersionRecord:
    """Everything the matrix check and the report need to know about a board's NPU stack."""

    npu: str
    driver: ParsedVersion
    rknn_server: ParsedVersion
    runtime: ParsedVersion
    server_running: bool
    chip: ParsedVersion
    kernel: ParsedVersion
    rk_version: ParsedVersion

    def component(self, name: str) -> ParsedVersion:
        """A matrix component (``driver``, ``rknn_server``, ``runtime``) by name."""
        if name not in ("driver", "rknn_server", "runtime"):
            raise KeyError(name)
        return getattr(self, name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "npu": self.npu,
            "driver": self.driver.to_dict(),
            "rknn_server": self.rknn_server.to_dict(),
            "runtime": self.runtime.to_dict(),
            "server_running": self.server_running,
            "chip": self.chip.to_dict(),
            "kernel": self.kernel.to_dict(),
            "rk_version": self.rk_version.to_dict(),
        }


def _first_version(shell: Shell, commands: tuple[str, ...],
                   parser: Callable[[str], ParsedVersion]) -> ParsedVersion:
    """Run fallbacks in order until one yields a version. If none does, keep the most telling text: the
    output of a command that succeeded beats an error message, which beats nothing."""
    best: tuple[int, ParsedVersion] | None = None
    for command in commands:
        result = shell(command)
        parsed = parser(result.output)
        if parsed.version is not None:
            return parsed
        rank = 2 if (result.ok and parsed.raw) else 1 if parsed.raw else 0
        if best is None or rank > best[0]:
            best = (rank, parsed)
    assert best is not None, "at least one command"
    return best[1]


def probe_versions(shell: Shell, *, npu: str, runtime_lib: str, server_bin: str) -> VersionRecord:
    """Read driver, rknn_server, runtime, chip, kernel and firmware release from a board through ``shell``.

    ``shell`` runs one command on the board and returns its :class:`ShellResult` (any link's ``shell``).
    """
    npu = check_npu(npu)
    if npu == "rknpu1":
        driver = _first_version(shell, (GALCORE_DRIVER_COMMAND,), parse_galcore)
    else:
        driver = _first_version(shell, RKNPU_DRIVER_COMMANDS, parse_rknpu)
    server = _first_version(shell, server_version_commands(npu, server_bin), parse_rknn_server)
    runtime = _first_version(shell, (runtime_version_command(runtime_lib),), parse_runtime)
    running = shell(SERVER_RUNNING_COMMAND)
    return VersionRecord(
        npu=npu,
        driver=driver,
        rknn_server=server,
        runtime=runtime,
        server_running=running.ok and bool(running.stdout.strip()),
        chip=_first_version(shell, (COMPATIBLE_COMMAND,), parse_compatible),
        kernel=_first_version(shell, (KERNEL_COMMAND,), parse_kernel),
        rk_version=_first_version(shell, (RK_VERSION_COMMAND,), parse_rk_version),
    )
