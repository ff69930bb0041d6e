"""``npu-hil doctor``: the manual's hand checklist, run in its own order against one board.

Each check returns a :class:`Check` (name, passed, detail, fix, manual section). The order is the manual's
troubleshooting order for ``rknn_init`` failures (4.1): the board is reachable at all (4.1.1), then the causes
4.1.3 lists, in its order: the version matrix (1), the server, a stray npu_transfer_proxy on the host (5), a Mini
Driver on RV1109/RV1126 (9); then NTB mode (4.1.5), an NPU hang (4.2.13), and room for models. A check marked
``advice`` reports without failing the doctor (NTB is needed only by labs that use it).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from harness.errors import HarnessError
from harness.npu.board_versions import check_board
from harness.npu.diagnose import diagnose

if TYPE_CHECKING:
    from harness.board import Board

MIN_FREE_USERDATA_KB = 64 * 1024
PROXY = "npu_transfer_proxy"
#: /proc/PID/comm keeps the first 15 characters of a program's name (TASK_COMM_LEN 16, with the NUL)
COMM_LEN = 15
#: Programs that run a script named in their first argument (a proxy started as ``python3 npu_transfer_proxy``)
INTERPRETERS = ("sh", "bash", "dash", "python", "python3")
#: RV1109/RV1126: the boards with a Mini Driver variant (rockchip-linux/rknpu drivers/linux-armhf-puma-mini) and
#: with NTB off in their stock firmware
RV1109_RV1126 = {"rv1109", "rv1126"}
#: What the full RKNPU1 driver set installs and the Mini Driver leaves out (docs/reference/rockchip-facts.md)
FULL_DRIVER_ONLY = ("/usr/bin/rknn_server", "/usr/lib/libneuralnetworks.so")
USB_CONFIG = "/etc/init.d/usb_config"
#: Failure signatures (harness/data/signatures.toml) that mean the NPU hung (manual 4.2.13).
HANG_SIGNATURES = {"galcore-gpu-hang", "failed-to-submit", "rknpu-timeout"}


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str
    fix: str = ""
    section: str = ""
    #: "required" fails the doctor; "advice" is reported, not failed on
    level: str = "required"

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def host_processes(name: str, proc: Path = Path("/proc")) -> list[int]:
    """PIDs of host processes running the program ``name`` (read from /proc, never signalled).

    Matched on the full command line, because /proc/PID/comm truncates a name to 15 characters
    (``npu_transfer_pr``): the program itself, or a script of that name run by an interpreter."""
    pids = []
    for cmdline in proc.glob("[0-9]*/cmdline"):
        try:
            comm = (cmdline.parent / "comm").read_text().strip()
            argv = [os.path.basename(a) for a in cmdline.read_bytes().decode(errors="replace").split("\0") if a]
        except OSError:
            continue  # the process ended while we looked
        if comm != name[:COMM_LEN] or not argv:
            continue
        if argv[0] == name or (argv[0].startswith(INTERPRETERS) and len(argv) > 1 and argv[1] == name):
            pids.append(int(cmdline.parent.name))
    return sorted(pids)


def check_links(board: "Board") -> Check:
    problems = {link: problem for link, problem in board.health().items() if problem}
    if problems:
        return Check("links answer", False, "; ".join(f"{k}: {v}" for k, v in problems.items()),
                     "see each link's message; adb permissions: the plugdev group and a udev rule", "4.1.1")
    return Check("links answer", True, ", ".join(board.command_links()), section="4.1.1")


def check_transfer_proxy(board: "Board") -> Check:
    name = f"no stray {PROXY} on the host"
    pids = host_processes(PROXY)
    if pids:
        return Check(name, False, f"running as pid {', '.join(map(str, pids))}",
                     f"stop it (kill {' '.join(map(str, pids))}) before using ADB devices: it is left by NTB devices "
                     "or a Docker run and takes the device (rknn_init -9 / -6); use one kind of device at a time",
                     "4.1.3 (5)")
    return Check(name, True, "none running", section="4.1.3 (5)")


def check_mini_driver(board: "Board") -> Check:
    """RV1109/RV1126 only: the Mini Driver (librknn_runtime without rknn_server and the full OpenVX set) runs
    pre-compiled models on the board but cannot serve the toolkit's connected debugging."""
    name = "full NPU driver, not the Mini Driver"
    if board.chip.name not in RV1109_RV1126:
        return Check(name, True, f"not applicable to {board.chip.name}", section="4.1.3 (9)")
    listing = " ".join(FULL_DRIVER_ONLY + (board.chip.runtime_lib,))
    present = set(board.shell(f"ls {listing} 2>/dev/null", timeout=30).stdout.split())
    missing = [path for path in FULL_DRIVER_ONLY if path not in present]
    if board.chip.runtime_lib in present and len(missing) == len(FULL_DRIVER_ONLY):
        return Check(name, False, f"Mini Driver installed: {board.chip.runtime_lib} without {', '.join(missing)}",
                     "the Mini Driver does not support connected debugging and runs only pre-compiled models: "
                     "install the full driver (rknpu drivers/linux-armhf-puma)", "4.1.3 (9)")
    return Check(name, True, "full driver" if not missing else f"missing {', '.join(missing)}", section="4.1.3 (9)")


def check_ntb(board: "Board") -> Check:
    """RV1109/RV1126 firmware leaves NTB off: the board is then not listed in NTB mode (list_devices, the Windows
    driver). Advice only: a lab on adb does not need it."""
    name = "NTB mode enabled (usb_ntb_en)"
    if board.chip.name not in RV1109_RV1126:
        return Check(name, True, f"not applicable to {board.chip.name}", section="4.1.5", level="advice")
    config = board.shell(f"cat {USB_CONFIG} 2>/dev/null", timeout=30).stdout
    if any(line.strip() == "usb_ntb_en" for line in config.splitlines()):
        return Check(name, True, f"usb_ntb_en in {USB_CONFIG}", section="4.1.5", level="advice")
    return Check(name, False, f"no usb_ntb_en line in {USB_CONFIG}: the board is not listed in NTB mode",
                 f"to use NTB: add a line usb_ntb_en to {USB_CONFIG} and reboot the board", "4.1.5", "advice")


def check_versions(board: "Board", toolkit: str | None) -> list[Check]:
    record, verdict = check_board(board, toolkit)
    found = ", ".join(f"{c} {v or 'unreadable'}" for c, v in verdict.found.items())
    checks = [Check(f"versions match toolkit {verdict.toolkit}", verdict.ok,
                    found if verdict.ok else verdict.explain(),
                    "; ".join(m.fix for m in verdict.mismatches), "4.1.3 (1)")]
    checks.append(Check("rknn_server running", record.server_running,
                        "running" if record.server_running else "no rknn_server process on the board",
                        "" if record.server_running else "start it: restart_rknn.sh (RKNPU1) / "
                        "restart_rknn.sh or systemctl restart rknn_server (RKNPU2)", "4.1.3"))
    return checks


def check_npu_hang(board: "Board") -> Check:
    dmesg = board.shell("dmesg", timeout=30).stdout
    hangs = [d for d in diagnose(dmesg) if d.id in HANG_SIGNATURES]
    if hangs:
        return Check("no NPU hang in dmesg", False, f"{hangs[0].cause}: {hangs[0].line}", hangs[0].fix,
                     hangs[0].section or "4.2.13")
    return Check("no NPU hang in dmesg", True, "no hang or timeout lines", section="4.2.13")


def check_userdata(board: "Board") -> Check:
    result = board.shell("df -k /userdata", timeout=30)
    rows = [line.split() for line in result.stdout.splitlines()[1:] if line.split()]
    try:
        free_kb = int(rows[-1][3])
    except (IndexError, ValueError):
        return Check("free space on /userdata", False, f"unreadable df output: {result.output.strip()[:200]}")
    ok = free_kb >= MIN_FREE_USERDATA_KB
    return Check("free space on /userdata", ok, f"{free_kb // 1024} MiB free",
                 "" if ok else f"free at least {MIN_FREE_USERDATA_KB // 1024} MiB for models and outputs")


def run_doctor(board: "Board", toolkit: str | None = None) -> list[Check]:
    """Every check, in the manual's order; a check that cannot run is a failed check with the reason, never a
    crash."""
    steps: list[tuple[str, str, Callable[[], Check | list[Check]]]] = [
        ("links answer", "4.1.1", lambda: check_links(board)),
        ("versions", "4.1.3 (1)", lambda: check_versions(board, toolkit)),
        (f"no stray {PROXY} on the host", "4.1.3 (5)", lambda: check_transfer_proxy(board)),
        ("full NPU driver, not the Mini Driver", "4.1.3 (9)", lambda: check_mini_driver(board)),
        ("NTB mode enabled (usb_ntb_en)", "4.1.5", lambda: check_ntb(board)),
        ("no NPU hang in dmesg", "4.2.13", lambda: check_npu_hang(board)),
        ("free space on /userdata", "", lambda: check_userdata(board)),
    ]
    results: list[Check] = []
    for name, section, step in steps:
        try:
            outcome = step()
        except HarnessError as exc:
            outcome = Check(name, False, f"could not check: {exc}", section=section)
        results.extend(outcome if isinstance(outcome, list) else [outcome])
    return results


def doctor_ok(checks: list[Check]) -> bool:
    """True when every required check passed (advice does not fail the doctor)."""
    return all(c.passed for c in checks if c.level == "required")
