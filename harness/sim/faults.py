"""The manual's faults, injectable into a simulated board at start (``--fault``) or live (control channel).

A fault is ``NAME`` or ``NAME=VALUE``. The active set lives in ``faults.json`` in the board's state folder,
written atomically by the supervisor and re-read (by mtime) by the board's processes, so a fault set while
the board runs reaches adbd, the console and the NPU at their next operation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from harness.sim import state


@dataclass(frozen=True)
class FaultKind:
    name: str
    help: str
    default: str | None = None  # value used when given without "=VALUE"; None: takes no value


KINDS: dict[str, FaultKind] = {k.name: k for k in (
    FaultKind("server-mismatch", "rknn_server from another release than the runtime and driver (manual 4.1.3)", "auto"),
    FaultKind("driver-mismatch", "NPU kernel driver from another release (manual 4.1.3)", "auto"),
    FaultKind("runtime-mismatch", "runtime library from another release (manual 4.1.3)", "auto"),
    FaultKind("mini-driver", "RV1109/RV1126 with the Mini Driver: no rknn_server, no connected debugging "
              "(manual 4.1.3 (9))"),
    FaultKind("ntb-disabled", "RV1109/RV1126 without usb_ntb_en in /etc/init.d/usb_config: not listed in NTB mode "
              "(manual 4.1.5)"),
    FaultKind("server-stopped", "rknn_server is not running (-3 RKNN_ERR_DEVICE_UNAVAILABLE)"),
    FaultKind("npu-hang", "every inference hangs past 20 s, outputs all zeros, hang line in dmesg (4.2.13)"),
    FaultKind("fd-leak", "the runtime leaks file descriptors per run until 'Too many open files' (4.2.1)", "4"),
    FaultKind("mem-leak", "the runtime's process grows by this many kB of resident memory per inference (4.2.1)",
              "256"),
    FaultKind("wrong-output", "inference silently returns perturbed outputs"),
    FaultKind("slow-npu", "latency multiplied by a factor", "3"),
    FaultKind("adb-drop", "adb connection dropped after this many bytes of a file transfer", "1048576"),
    FaultKind("adb-offline", "adb endpoint accepts TCP but never answers (device offline)"),
    FaultKind("panic-at-boot", "kernel panic on the console during boot"),
    FaultKind("boot-hang", "boot never reaches the login prompt"),
    FaultKind("userdata-full", "/userdata has no free space"),
    FaultKind("reboot-after", "spontaneous reboot this many seconds after boot", "30"),
    FaultKind("flash-power-loss", "power lost while updateEngine writes rootfs: the board comes back in recovery, "
              "the old firmware still installed"),
    FaultKind("boot-loop", "every boot resets after the kernel's early lines and boots again, forever"),
)}


class UnknownFault(ValueError):
    """A fault name the simulator does not know; the message lists the known ones."""


def parse(spec: str) -> tuple[str, str | None]:
    """``"slow-npu=5"`` -> ``("slow-npu", "5")``; unknown names and stray values raise UnknownFault."""
    name, sep, value = spec.strip().partition("=")
    kind = KINDS.get(name)
    if kind is None:
        raise UnknownFault(f"unknown fault {name!r}; known faults: {', '.join(sorted(KINDS))}")
    if sep and kind.default is None:
        raise UnknownFault(f"fault {name!r} takes no value (got {spec!r})")
    return name, (value if sep else kind.default)


def parse_all(specs: list[str]) -> dict[str, str | None]:
    return dict(parse(s) for s in specs)


class FaultSet:
    """The faults active on one board, backed by ``faults.json`` in its state folder."""

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / "faults.json"
        self._mtime: float | None = None
        self._faults: dict[str, str | None] = {}

    def _refresh(self) -> None:
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            self._faults, self._mtime = {}, None
            return
        if mtime != self._mtime:
            try:
                self._faults = json.loads(self.path.read_text())
                self._mtime = mtime
            except (ValueError, OSError):
                pass  # caught mid-replace: keep the previous set, re-read next time

    def active(self) -> dict[str, str | None]:
        self._refresh()
        return dict(self._faults)

    def __contains__(self, name: str) -> bool:
        return name in self.active()

    def value(self, name: str) -> str | None:
        return self.active().get(name)

    def number(self, name: str) -> float | None:
        """The fault's value as a number (None when the fault is not active)."""
        if name not in self:
            return None
        raw = self.value(name) or KINDS[name].default or "0"
        try:
            return float(raw)
        except ValueError:
            return float(KINDS[name].default or 0)

    def write(self, faults: dict[str, str | None]) -> None:
        state.write_json(self.path, faults)
        self._mtime = None

    def set(self, spec: str) -> None:
        name, value = parse(spec)
        faults = self.active()
        faults[name] = value
        self.write(faults)

    def clear(self, name: str | None = None) -> None:
        faults = self.active() if name else {}
        if name:
            parse(name)  # validates
            faults.pop(name, None)
        self.write(faults)
