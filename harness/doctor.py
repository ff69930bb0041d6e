"""``npu-hil doctor``: the manual's hand checklist, run in order against one board.

Each check returns a :class:`Check` (name, passed, detail, fix). The order follows how a lab engineer
debugs ``rknn_init`` failures (manual 4.1): can we reach the board at all, is anything on the host in the way,
do the NPU components belong together, is the server up, has the NPU hung, is there room for models.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from harness.errors import HarnessError
from harness.npu.board_versions import check_board
from harness.npu.diagnose import diagnose

if TYPE_CHECKING:
    from harness.board import Board

MIN_FREE_USERDATA_KB = 64 * 1024
#: Failure signatures (harness/data/signatures.toml) that mean the NPU hung (manual 4.2.13).
HANG_SIGNATURES = {"galcore-gpu-hang", "failed-to-submit", "rknpu-timeout"}


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str
    fix: str = ""
    section: str = ""

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def host_processes(name: str, proc: Path = Path("/proc")) -> list[int]:
    """PIDs of host processes whose command name is ``name`` (read from /proc, never signalled)."""
    pids = []
    for comm in proc.glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() == name:
                pids.append(int(comm.parent.name))
        except OSError:
            continue
    return sorted(pids)


def check_links(board: "Board") -> Check:
    problems = {link: problem for link, problem in board.health().items() if problem}
    if problems:
        return Check("links answer", False, "; ".join(f"{k}: {v}" for k, v in problems.items()),
                     "see each link's message; adb permissions: manual 4.1.1", "4.1.1")
    return Check("links answer", True, ", ".join(board.command_links()))


def check_transfer_proxy(board: "Board") -> Check:
    pids = host_processes("npu_transfer_proxy")
    if pids:
        return Check("no stray npu_transfer_proxy on the host", False, f"running as pid {', '.join(map(str, pids))}",
                     "stop it (it holds the NPU device and breaks rknn_init with -9/-6)", "4.1.2, 4.1.3")
    return Check("no stray npu_transfer_proxy on the host", True, "none running")


def check_versions(board: "Board", toolkit: str | None) -> list[Check]:
    record, verdict = check_board(board, toolkit)
    found = ", ".join(f"{c} {v or 'unreadable'}" for c, v in verdict.found.items())
    checks = [Check(f"versions match toolkit {verdict.toolkit}", verdict.ok,
                    found if verdict.ok else verdict.explain(),
                    "; ".join(m.fix for m in verdict.mismatches), "4.1.3")]
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
    return Check("no NPU hang in dmesg", True, "no hang or timeout lines")


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
    """Every check, in order; a check that cannot run is a failed check with the reason, never a crash."""
    steps: list[tuple[str, Callable[[], Check | list[Check]]]] = [
        ("links answer", lambda: check_links(board)),
        ("no stray npu_transfer_proxy on the host", lambda: check_transfer_proxy(board)),
        ("versions", lambda: check_versions(board, toolkit)),
        ("no NPU hang in dmesg", lambda: check_npu_hang(board)),
        ("free space on /userdata", lambda: check_userdata(board)),
    ]
    results: list[Check] = []
    for name, step in steps:
        try:
            outcome = step()
        except HarnessError as exc:
            outcome = Check(name, False, f"could not check: {exc}")
        results.extend(outcome if isinstance(outcome, list) else [outcome])
    return results
