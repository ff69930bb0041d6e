"""Real version strings (read from tests/data/versions) and a fake board shell for the version tests.

The strings are Rockchip's own: ``version-strings.txt`` lists what ``strings`` prints for each binary of the
rknpu2 SDK history and the RKNPU1 1.7.5 release; the manual (4.1.3) gives the RKNPU1 table, kept as
``rknpu1_release_table.tsv``. Where a release
has no real string on file, the string is the real one of a neighbouring release with only the version
swapped, so every format tested is a format Rockchip ships.

``FakeBoard`` answers the probe commands the way busybox would (``strings FILE | grep [-i] PAT``, ``cat``,
``dmesg | grep``, ``grep -lx NAME /proc/[0-9]*/comm``): commands are split with ``shlex`` as a shell would, so
a path the probe forgot to quote does not reach the file it names.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from harness.links.base import ShellResult

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA = REPO_ROOT / "tests" / "data"
VERSION_STRINGS = DATA / "versions" / "version-strings.txt"
RKNPU1_TABLE = DATA / "versions" / "rknpu1_release_table.tsv"
MANUAL_LOGS = DATA / "manual"
FACTS = REPO_ROOT / "docs" / "reference" / "rockchip-facts.md"

# Verbatim from rockchip-facts.md ("Reading versions on a board").
FACT_RKNPU_DEBUGFS = "RKNPU driver: v0.9.8"
FACT_RKNPU_DMESG = "[drm] Initialized rknpu 0.9.8 20240828 for fdab0000.npu on minor 1"
FACT_LIBRKNNRT_160 = "librknnrt version: 1.6.0 (9a7b5d24c@2023-12-13T17:31:11)"
FACT_SERVER_232 = "rknn_server version: 2.3.2 (1842325 build@2025-03-30T09:54:34)"
FACT_COMPATIBLE = "rockchip,rk3588-evb1-lp4-v10\0rockchip,rk3588\0"

_SEMVER = re.compile(r"(\d+\.\d+\.\d+(?:b\d+)?) \(")


@dataclass(frozen=True)
class RealString:
    """One binary's ``strings`` lines from version-strings.txt and the version its first line starts with."""

    path: str
    lines: tuple[str, ...]
    version: str


@cache
def rknpu2_strings() -> dict[str, list[RealString]]:
    """``{"runtime": [...], "rknn_server": [...]}`` for every non-empty rknpu2 entry of version-strings.txt."""
    out: dict[str, list[RealString]] = {"runtime": [], "rknn_server": []}
    for line in VERSION_STRINGS.read_text(encoding="utf-8").splitlines():
        if line.startswith("# RKNPU1"):
            break
        if not line.startswith("  ") or " => " not in line:
            continue
        path, _, rest = line.strip().partition(" => ")
        pieces = tuple(p.strip() for p in rest.split("|") if p.strip())
        if not pieces:
            continue
        component = "rknn_server" if path.endswith("rknn_server") else "runtime"
        match = _SEMVER.search(pieces[0])
        assert match, f"version-strings.txt line without a version: {line!r}"
        entry = RealString(path, pieces, match.group(1))
        if entry not in out[component]:  # most SDK commits repeat the previous binaries
            out[component].append(entry)
    return out


@cache
def rknpu2_empty_entries() -> list[str]:
    """Binaries whose ``strings`` showed no version at all (the 1.5.x aarch64 librknnrt)."""
    return [line.strip().rstrip(" =>") for line in VERSION_STRINGS.read_text(encoding="utf-8").splitlines()
            if line.startswith("  ") and line.rstrip().endswith("=>")]


@cache
def rknpu1_strings() -> dict[str, str]:
    """The RKNPU1 1.7.5 lines: server, server_armhf, galcore_dmesg, runtime, api, server_start."""
    text = VERSION_STRINGS.read_text(encoding="utf-8").split("# RKNPU1", 1)[1]
    values = {}
    for line in text.splitlines():
        name, sep, value = line.partition(" => ")
        if sep:
            values[name.strip()] = value.strip()
    return {
        "server": values["rknn_server (aarch64)"],
        "server_armhf": values["rknn_server (armhf puma, rv1109/rv1126)"],
        "galcore_dmesg": re.search(r"dmesg: '([^']+)'", values["libGAL.so / galcore.ko"]).group(1),
        "runtime": values["librknn_runtime.so"],
        "api": values["librknn_api.so"],
        "server_start": re.search(r"'(start rknn server, version:)%s'", text).group(1),
    }


@cache
def manual_rknpu1_table() -> list[tuple[str, list[str], list[str], list[str]]]:
    """The manual's 4.1.3 table as written: (toolkit, servers, drivers, runtimes)."""
    rows = []
    for line in RKNPU1_TABLE.read_text(encoding="utf-8").splitlines()[1:]:
        cells = line.split("\t")
        rows.append((cells[0], cells[1].split("/"), cells[2].split("/"), cells[3].split("/")))
    return rows


def manual_log(section: str) -> str:
    """The error output the manual quotes in ``section`` (its prose left out)."""
    return (MANUAL_LOGS / f"{section}.log").read_text(encoding="utf-8")


@cache
def facts_rknpu2_releases() -> list[str]:
    """The RKNPU2 release list of rockchip-facts.md ("Releases: 1.2.0, 1.3.0, ...")."""
    text = " ".join(FACTS.read_text(encoding="utf-8").split("Releases:", 1)[1].split("(", 1)[0].split())
    return [v.strip(" .") for v in text.split(",")]


def real_runtime(version: str) -> tuple[str, ...]:
    """The ``strings`` lines of a librknnrt of ``version``: real when on file, else 1.6.0's format."""
    for entry in rknpu2_strings()["runtime"]:
        if entry.version == version and "librknnrt" in entry.path:
            return entry.lines
    return (FACT_LIBRKNNRT_160.replace("1.6.0", version),)


def real_server(version: str) -> tuple[str, ...]:
    """The ``strings`` lines of an rknn_server of ``version``: real when on file, else 2.3.2's format."""
    for entry in rknpu2_strings()["rknn_server"]:
        if entry.version == version:
            return entry.lines
    line = FACT_SERVER_232.replace("2.3.2", version)
    return (line.removeprefix("rknn_server version: "), line)


# ------------------------------------------------------------------------------------------ fake board

#: Lines every binary holds besides its version: the parsers must not take them for one.
NOISE = ("GLIBC_2.17", "rknn model version is not supported", "build_graph failed", "Transfer version 2.1.0 "
         "(b5861e7@2020-11-23T11:50:51)")


@dataclass
class FakeBoard:
    """A board as the probe commands see it: files of ``strings`` lines, a dmesg, running processes."""

    files: dict[str, tuple[str, ...]] = field(default_factory=dict)
    dmesg: list[str] = field(default_factory=list)
    processes: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)

    def _result(self, command: str, stdout: str, exit_code: int = 0, stderr: str = "") -> ShellResult:
        return ShellResult(command, stdout, stderr, exit_code, 0.0, "fake")

    def _grep(self, lines: list[str], args: list[str]) -> list[str]:
        flags = re.I if "-i" in args else 0
        pattern = [a for a in args if not a.startswith("-")][-1]
        return [line for line in lines if re.search(re.escape(pattern), line, flags)]

    def __call__(self, command: str) -> ShellResult:
        self.commands.append(command)
        stages = [shlex.split(stage) for stage in _split_pipes(command)]
        head = stages[0]
        if head[0] == "grep" and "-lx" in head:
            name = head[head.index("-lx") + 1]
            pids = [f"/proc/{100 + i}/comm" for i, p in enumerate(self.processes) if p == name]
            return self._result(command, "".join(f"{p}\n" for p in pids), 0 if pids else 1)
        if head[0] == "dmesg":
            lines = list(self.dmesg)
        elif head[0] in ("strings", "cat") and len(head) == 2:
            if head[1] not in self.files:
                return self._result(command, "", 1, f"{head[0]}: {head[1]}: No such file or directory")
            lines = list(self.files[head[1]])
        else:
            return self._result(command, "", 127, f"sh: {head[0]}: not found")
        for stage in stages[1:]:
            assert stage[0] == "grep", command
            lines = self._grep(lines, stage[1:])
        joiner = "" if head[0] == "cat" and any("\0" in line for line in lines) else "\n"
        out = joiner.join(lines) + ("\n" if lines and joiner else "")
        return self._result(command, out, 0 if lines else 1)


def _split_pipes(command: str) -> list[str]:
    """Split on ``|`` outside quotes (enough for the probe commands, which use no other shell syntax)."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars="|")
    lexer.whitespace_split = True
    stages: list[list[str]] = [[]]
    for token in lexer:
        if token == "|":
            stages.append([])
        else:
            stages[-1].append(token)
    return [shlex.join(stage) for stage in stages]


def rknpu1_board(*, toolkit_row, server: str | None = None, driver: str | None = None,
                 runtime: str | None = None, server_bin: str = "/usr/bin/rknn_server",
                 runtime_lib: str = "/usr/lib/librknn_runtime.so") -> FakeBoard:
    """An RKNPU1 board whose versions are the row's, except those given; strings in the 1.7.5 formats."""
    real = rknpu1_strings()
    server = server or toolkit_row.accepted["rknn_server"][0]
    driver = driver or toolkit_row.accepted["driver"][0]
    runtime = runtime or toolkit_row.accepted["runtime"][0]
    return FakeBoard(
        files={
            server_bin: (NOISE[2], real["server"].replace("1.7.5", server, 1), NOISE[0]),
            runtime_lib: (NOISE[1], real["runtime"].replace("1.7.5", runtime, 1), NOISE[0]),
            "/proc/version": ("Linux version 4.19.111 (build@host) (gcc version 6.3.1) #1 SMP PREEMPT",),
            "/proc/device-tree/compatible": ("rockchip,rv1126-evb-ddr3-v13\0rockchip,rv1126\0",),
            "/etc/version": ("RK_VERSION=V1.0.0_rv1126",),
        },
        dmesg=["[    1.000000] Booting Linux on physical CPU 0x0",
               "[    3.100000] galcore options:",
               f"[    3.201154] {real['galcore_dmesg'].replace('6.4.6.5.351518', driver)}",
               "[    3.300000] usbcore: registered new interface driver"],
        processes=["init", "rknn_server", "adbd"],
    )


def rknpu2_board(*, runtime: str, server: str, driver: str, driver_source: str = "debugfs",
                 server_bin: str = "/usr/bin/rknn_server", runtime_lib: str = "/usr/lib/librknnrt.so",
                 chip: str = "rk3588", server_running: bool = True) -> FakeBoard:
    """An RKNPU2 board with the given versions, in the formats Rockchip's binaries and kernels print.

    ``driver_source`` says where the board tells its driver version: debugfs, procfs, dmesg, or nowhere.
    """
    files = {
        server_bin: (NOISE[2], *real_server(server)),
        runtime_lib: (NOISE[1], *real_runtime(runtime), NOISE[0]),
        "/proc/version": ("Linux version 5.10.160-rockchip (build@host) (gcc 10.3.1) #1 SMP PREEMPT",),
        "/proc/device-tree/compatible": (f"rockchip,{chip}-evb1-v10\0rockchip,{chip}\0",),
        "/etc/version": ("RK_VERSION=2.3.2_" + chip,),
    }
    dmesg = ["[    0.000000] Booting Linux on physical CPU 0x0"]
    if driver_source == "debugfs":
        files["/sys/kernel/debug/rknpu/version"] = (FACT_RKNPU_DEBUGFS.replace("0.9.8", driver),)
    elif driver_source == "procfs":
        files["/proc/rknpu/version"] = (FACT_RKNPU_DEBUGFS.replace("0.9.8", driver),)
    elif driver_source == "dmesg":
        dmesg.append("[    2.520000] " + FACT_RKNPU_DMESG.replace("0.9.8", driver))
    return FakeBoard(files=files, dmesg=dmesg, processes=["init", "rknn_server"] if server_running else ["init"])
