"""The simulated board's adbd, proven with the real Debian ``adb`` server and CLI (nothing mocked).

One adb server on its own port (the first free one of 15100-15109), HOME and TMPDIR for the module; the daemon
runs in-process on an ephemeral 127.0.0.1 port against a board root built in a tmp folder. Fault tests use their own
board context and daemon so a dropped or offline connection never disturbs the others.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from filelock import FileLock, Timeout

from harness.sim import adb_wire as wire
from harness.sim import profile, rootfs
from harness.sim.adbd import AdbDaemon
from harness.sim.context import BoardContext
from harness.sim.faults import FaultSet

#: This file's adb server ports: the first one no other run (another pytest of this file, the bench) holds.
ADB_PORTS = range(15100, 15110)
PROFILE = profile.load("rv1126")


def claim_adb_port() -> tuple[int, FileLock]:
    """A port of ADB_PORTS locked for this run: a lock file between runs, and nothing listening on it now."""
    for port in ADB_PORTS:
        lock = FileLock(Path(tempfile.gettempdir()) / f"npu-hil-adb-{port}.lock")
        try:
            lock.acquire(timeout=0)
        except Timeout:
            continue
        probe = socket.socket()
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as adb's own listener: TIME_WAIT is no owner
        try:
            probe.bind(("127.0.0.1", port))
            return port, lock
        except OSError:
            lock.release()
        finally:
            probe.close()
    pytest.skip(f"every adb server port in {ADB_PORTS} is taken")


class RebootRecorder:
    """Stands in for the simulated kernel: records reboot requests (the real kernel is not under test here)."""

    def __init__(self) -> None:
        self.modes: list[str] = []

    def request_reboot(self, mode: str) -> None:
        self.modes.append(mode)


class Adb:
    """The adb CLI bound to this module's server; every call has a deadline and its process is reaped."""

    def __init__(self, home: Path, port: int) -> None:
        self.port = port
        self.env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "TMPDIR": str(home),
                    "ADB_MDNS": "0", "ADB_USB": "0", "ADB_EMU": "0", "ANDROID_ADB_SERVER_PORT": str(port)}

    def popen(self, *args: str, **kwargs) -> subprocess.Popen:
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.Popen(["adb", "-P", str(self.port), *args], env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, **kwargs)

    def __call__(self, *args: str, timeout: float = 60, input: bytes | None = None) -> subprocess.CompletedProcess:
        proc = self.popen(*args, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL)
        try:
            out, err = proc.communicate(input=input, timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        return subprocess.CompletedProcess(proc.args, proc.returncode, out.decode(), err.decode())


def _context(root: Path, state_dir: Path, kernel: object | None = None) -> BoardContext:
    state_dir.mkdir(parents=True, exist_ok=True)
    return BoardContext(name="sim-rv1126", profile=PROFILE, root=root, state_dir=state_dir,
                        faults=FaultSet(state_dir), kernel=kernel)  # type: ignore[arg-type]


class Board:
    """A daemon serving one board context, connected through the module's adb server."""

    def __init__(self, adb: Adb, ctx: BoardContext) -> None:
        self.adb, self.ctx = adb, ctx
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        self.daemon = AdbDaemon(ctx, listener)
        self.serial = "127.0.0.1:%d" % listener.getsockname()[1]
        self.daemon.start()

    def connect(self) -> None:
        result = self.adb("connect", self.serial, timeout=30)
        assert f"connected to {self.serial}" in result.stdout, result
        self.adb("-s", self.serial, "wait-for-device", timeout=30).check_returncode()

    def __call__(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return self.adb("-s", self.serial, *args, **kwargs)

    def close(self) -> None:
        self.adb("disconnect", self.serial, timeout=30)
        self.daemon.stop()


@pytest.fixture(scope="module")
def board_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return rootfs.build(tmp_path_factory.mktemp("board") / "root", PROFILE)


@pytest.fixture(scope="module")
def adb(tmp_path_factory: pytest.TempPathFactory):
    port, lock = claim_adb_port()
    client = Adb(tmp_path_factory.mktemp("adb-home"), port)
    try:
        client("start-server", timeout=30).check_returncode()
        yield client
    finally:
        client("kill-server", timeout=30)
        lock.release()


@pytest.fixture(scope="module")
def board(adb: Adb, board_root: Path, tmp_path_factory: pytest.TempPathFactory):
    sim = Board(adb, _context(board_root, tmp_path_factory.mktemp("state"), RebootRecorder()))
    sim.connect()
    yield sim
    sim.close()


@pytest.fixture
def fresh_board(adb: Adb, board_root: Path, tmp_path: Path):
    """A second daemon with its own fault state, for faults that break the connection."""
    sim = Board(adb, _context(board_root, tmp_path / "state"))
    yield sim
    sim.close()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- framing ----------------------------------------------------------------------------------------------------

def test_wire_rejects_bad_magic_and_oversize_and_keeps_partial_shell_packets() -> None:
    header = wire.encode(wire.WRTE, 1, 2, b"abc")[:24]
    assert wire.decode_header(header) == (wire.WRTE, 1, 2, 3)
    with pytest.raises(wire.WireError):
        wire.decode_header(header[:20] + b"\0\0\0\0")
    with pytest.raises(wire.WireError):
        wire.decode_header(wire.encode(wire.WRTE, 1, 2, b"x" * 100)[:24], max_payload=99)
    buffer = bytearray(wire.shell_packet(wire.SHELL_STDIN, b"hi") + wire.shell_packet(wire.SHELL_EXIT, b"\7")[:3])
    assert wire.split_shell_packets(buffer) == [(wire.SHELL_STDIN, b"hi")]
    assert len(buffer) == 3


# -- identity and shell -----------------------------------------------------------------------------------------

def test_devices_shows_product_model_and_device(adb: Adb, board: Board) -> None:
    line = next(x for x in adb("devices", "-l").stdout.splitlines() if x.startswith(board.serial))
    assert line.split()[1] == "device"
    assert "product:rv1126_evb" in line and "model:RV1126_EVB" in line and "device:rv1126" in line


def test_getprop_answers_from_the_identity_the_kernel_wrote(board: Board, board_root: Path, tmp_path: Path) -> None:
    """adbutils' ``device.prop`` and Android-minded tools run ``getprop``; the board answers from its own files."""
    import adbutils

    from harness.sim.kernel import Kernel

    # The real simulated kernel writes /proc/device-tree (on a throwaway context: the board's keeps its recorder).
    Kernel(_context(board_root, tmp_path / "kernel-state")).populate(driver_version=PROFILE.versions.driver,
                                                                     gate_address="127.0.0.1:9")
    assert board("shell", "getprop ro.product.model").stdout == PROFILE.model + "\n"
    assert board("shell", "getprop ro.board.platform").stdout == PROFILE.chip + "\n"
    assert board("shell", "getprop no.such.prop fallback").stdout == "fallback\n"
    assert board("shell", "getprop").stdout.splitlines() == [
        f"[ro.board.platform]: [{PROFILE.chip}]", f"[ro.product.device]: [{PROFILE.chip}]",
        f"[ro.product.model]: [{PROFILE.model}]", f"[ro.product.name]: [{PROFILE.hostname}]"]
    device = adbutils.AdbClient(host="127.0.0.1", port=board.adb.port, socket_timeout=30).device(board.serial)
    assert (device.prop.model, device.prop.device) == (PROFILE.model, PROFILE.chip)


def test_shell_v2_reports_the_exit_code(board: Board) -> None:
    assert board("shell", "false").returncode == 1
    assert board("shell", "exit 7").returncode == 7
    assert board("shell", "true").returncode == 0


def test_shell_v2_keeps_stdout_and_stderr_apart(board: Board) -> None:
    result = board("shell", "echo to-out; echo to-err >&2")
    assert (result.stdout, result.stderr) == ("to-out\n", "to-err\n")


def test_shell_v1_merges_output_and_has_no_exit_code(board: Board) -> None:
    result = board("shell", "-x", "echo to-out; echo to-err >&2; exit 3")
    assert result.returncode == 0
    assert "to-out" in result.stdout and "to-err" in result.stdout and result.stderr == ""


def test_shell_runs_in_the_board_root(board: Board, board_root: Path) -> None:
    listing = board("shell", "ls /").stdout.split()
    assert sorted(listing) == sorted(p.name for p in board_root.iterdir())
    assert board("shell", "cat /etc/hostname").stdout == "rv1126\n"


def test_shell_without_command_reads_a_script_from_stdin(board: Board) -> None:
    result = board("shell", input=b"echo $((6 * 7))\nexit 5\n")
    assert (result.stdout, result.returncode) == ("42\n", 5)


@pytest.mark.parametrize("protocol", [[], ["-x"]], ids=["v2", "v1"])
def test_interactive_shell_on_a_pty(board: Board, protocol: list[str]) -> None:
    result = board("shell", *protocol, "-t", "-t", input=b"[ -t 0 ] && echo stdin-is-a-$((1+1))tty\nexit\n")
    assert "stdin-is-a-2tty\r\n" in result.stdout  # the command's output, not the echo; \r\n from the pty


def test_interactive_shell_from_a_terminal_gets_its_window_size_and_exit_code(board: Board) -> None:
    """What a person typing ``adb shell`` gets: a pty sized like their terminal, and the shell's exit status."""
    import pexpect

    child = pexpect.spawn("adb", ["-P", str(board.adb.port), "-s", board.serial, "shell"], env=board.adb.env,
                          dimensions=(33, 101), timeout=30)
    try:
        child.expect("# ")
        child.sendline("stty size; echo done-$((2+3))")
        child.expect(r"(\d+) (\d+)\r\ndone-5")
        assert child.match.groups() == (b"33", b"101")
        child.sendline("exit 3")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 3


def test_exec_out_is_binary_clean(board: Board, board_root: Path) -> None:
    payload = bytes(range(256)) * 4
    (board_root / "tmp" / "bytes.bin").write_bytes(payload)
    proc = board.adb.popen("-s", board.serial, "exec-out", "cat /tmp/bytes.bin")
    out, _ = proc.communicate(timeout=30)
    assert out == payload


def test_closing_a_shell_kills_the_board_command(board: Board) -> None:
    cli = board.adb.popen("-s", board.serial, "shell", "echo started; sleep 1000")
    try:
        assert cli.stdout.readline() == b"started\n"
        pids = board.daemon.process_ids()
        assert len(pids) == 1
    finally:
        cli.kill()
        cli.communicate(timeout=30)
    deadline = time.monotonic() + 20
    while board.daemon.process_ids() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert board.daemon.process_ids() == []
    assert not Path(f"/proc/{pids[0]}").exists()


def test_stdin_reaches_the_command_and_its_end_is_seen(board: Board) -> None:
    result = board("shell", "wc -c", input=b"x" * 300_000)
    assert (result.stdout.strip(), result.returncode) == ("300000", 0)


def test_parallel_shells_share_one_connection_without_mixing(board: Board) -> None:
    script = "i=0; while [ $i -lt 3000 ]; do echo {n}-$i; i=$((i+1)); done"
    clis = [board.adb.popen("-s", board.serial, "shell", script.format(n=n)) for n in range(4)]
    try:
        outputs = [cli.communicate(timeout=60)[0].decode() for cli in clis]
    finally:
        for cli in clis:
            if cli.poll() is None:
                cli.kill()
                cli.wait()
    for n, out in enumerate(outputs):
        assert out.splitlines() == [f"{n}-{i}" for i in range(3000)]


def test_stop_kills_board_commands_and_closes_the_port(fresh_board: Board) -> None:
    fresh_board.connect()
    cli = fresh_board.adb.popen("-s", fresh_board.serial, "shell", "echo started; sleep 1000")
    try:
        assert cli.stdout.readline() == b"started\n"
        pids = fresh_board.daemon.process_ids()
        fresh_board.daemon.stop()
        cli.communicate(timeout=30)  # it ends (adb 29 exits 0 when the stream dies without an exit packet)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.communicate(timeout=30)
    assert pids and not any(Path(f"/proc/{pid}").exists() for pid in pids)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", int(fresh_board.serial.split(":")[1])), timeout=5).close()


def test_root_and_remount_are_answered(board: Board) -> None:
    assert board("root").stdout == "adbd is already running as root\n"
    result = board("remount")
    assert result.returncode == 0 and "remount succeeded" in result.stdout


def test_reboot_reaches_the_kernel(board: Board) -> None:
    recorder = board.ctx.kernel
    assert board("reboot", timeout=30).returncode == 0
    assert board("reboot", "loader", timeout=30).returncode == 0
    assert recorder.modes == ["", "loader"]


# -- files --------------------------------------------------------------------------------------------------------

def test_push_and_pull_20_mib_keep_every_byte(board: Board, board_root: Path, tmp_path: Path) -> None:
    data = os.urandom(20 * 1024 * 1024)
    local = tmp_path / "big.bin"
    local.write_bytes(data)
    assert board("push", str(local), "/userdata/big.bin", timeout=120).returncode == 0
    assert sha256((board_root / "userdata" / "big.bin").read_bytes()) == sha256(data)
    assert board("shell", "sha256sum /userdata/big.bin").stdout.split()[0] == sha256(data)
    back = tmp_path / "back.bin"
    result = board("pull", "/userdata/big.bin", str(back), timeout=120)
    assert result.returncode == 0, result.stderr
    assert sha256(back.read_bytes()) == sha256(data)


def test_push_creates_folders_and_keeps_mode(board: Board, board_root: Path, tmp_path: Path) -> None:
    local = tmp_path / "run.sh"
    local.write_text("#!/bin/sh\necho ran\n")
    local.chmod(0o755)
    assert board("push", str(local), "/userdata/new/dir/run.sh").returncode == 0
    assert board("shell", "/userdata/new/dir/run.sh").stdout == "ran\n"


def test_push_cannot_leave_the_board_root(board: Board, board_root: Path, tmp_path: Path) -> None:
    host_escape = Path("/etc/npu-hil-adbd-escape")
    assert not host_escape.exists()
    local = tmp_path / "x"
    local.write_bytes(b"inside\n")
    assert board("push", str(local), "/../../etc/npu-hil-adbd-escape").returncode == 0
    assert (board_root / "etc" / "npu-hil-adbd-escape").read_bytes() == b"inside\n"
    assert not host_escape.exists()


def test_ls_lists_a_board_folder(board: Board) -> None:
    names = [line.split()[-1] for line in board("ls", "/etc").stdout.splitlines()]
    assert "hostname" in names and "passwd" in names


def test_pull_of_a_missing_file_fails_with_the_reason(board: Board, tmp_path: Path) -> None:
    result = board("pull", "/no/such/file", str(tmp_path / "x"))
    assert result.returncode != 0 and "No such file or directory" in result.stdout + result.stderr


def test_adbutils_client_works_too(board: Board, board_root: Path) -> None:
    """The harness's adb link uses adbutils (sync v1, 4 KiB chunks, shell v2): the same daemon must serve it."""
    import adbutils

    device = adbutils.AdbClient(host="127.0.0.1", port=board.adb.port, socket_timeout=30).device(board.serial)
    result = device.shell2("echo out; echo err >&2; exit 4", v2=True, timeout=30)
    assert (result.returncode, result.stdout, result.stderr) == (4, "out\n", "err\n")
    payload = os.urandom(300_000)
    device.sync.push(payload, "/tmp/via-adbutils.bin")
    assert (board_root / "tmp" / "via-adbutils.bin").read_bytes() == payload
    assert device.sync.read_bytes("/tmp/via-adbutils.bin") == payload
    assert device.sync.stat("/tmp/via-adbutils.bin").size == len(payload)
    assert "via-adbutils.bin" in [entry.path for entry in device.sync.list("/tmp")]


# -- faults, observed through the CLI ------------------------------------------------------------------------------

def test_userdata_full_fails_a_push_with_enospc(board: Board, board_root: Path, tmp_path: Path) -> None:
    local = tmp_path / "model.rknn"
    local.write_bytes(os.urandom(100_000))
    board.ctx.faults.set("userdata-full")
    try:
        result = board("push", str(local), "/userdata/model.rknn")
        elsewhere = board("push", str(local), "/tmp/model.rknn")
    finally:
        board.ctx.faults.clear()
    assert result.returncode != 0, result
    assert "No space left on device" in result.stdout + result.stderr  # adb 29 prints its errors on stdout
    assert not (board_root / "userdata" / "model.rknn").exists()
    assert elsewhere.returncode == 0


@pytest.mark.parametrize("direction", ["push", "pull"])
def test_adb_drop_cuts_a_transfer_and_leaves_no_file(fresh_board: Board, board_root: Path, tmp_path: Path,
                                                     direction: str) -> None:
    fresh_board.connect()
    data = os.urandom(8 * 1024 * 1024)
    (board_root / "tmp" / "drop-src.bin").write_bytes(data)
    local = tmp_path / "drop.bin"
    local.write_bytes(data)
    fresh_board.ctx.faults.set("adb-drop=1048576")
    if direction == "push":
        result = fresh_board("push", str(local), "/userdata/dropped.bin", timeout=60)
        assert "couldn't read from device" in result.stdout + result.stderr
        assert not (board_root / "userdata" / "dropped.bin").exists()
        assert not [p for p in (board_root / "userdata").iterdir() if "adbd-tmp" in p.name]
    else:
        target = tmp_path / "pulled.bin"
        result = fresh_board("pull", "/tmp/drop-src.bin", str(target), timeout=60)
        assert not target.exists() or target.stat().st_size < len(data)
    assert result.returncode != 0
    # The server reconnects on its own; with the fault cleared the same transfer goes through.
    fresh_board.ctx.faults.clear()
    fresh_board("wait-for-device", timeout=40).check_returncode()
    assert fresh_board("push", str(local), "/userdata/dropped.bin", timeout=60).returncode == 0
    assert sha256((board_root / "userdata" / "dropped.bin").read_bytes()) == sha256(data)


def test_adb_offline_leaves_the_device_offline(fresh_board: Board) -> None:
    fresh_board.ctx.faults.set("adb-offline")
    result = fresh_board.adb("connect", fresh_board.serial, timeout=40)  # adb 29 gives up after 10 s
    assert f"failed to connect to {fresh_board.serial}" in result.stdout, result
    # The entry stays "offline", or "connecting" while the server retries the handshake in the background.
    devices = fresh_board.adb("devices").stdout
    states = [x.split()[1] for x in devices.splitlines() if x.split()[:1] == [fresh_board.serial]]
    assert len(states) == 1 and states[0] in ("offline", "connecting"), devices
    shell = fresh_board("shell", "true", timeout=30)
    assert shell.returncode != 0 and ("offline" in shell.stderr or "still connecting" in shell.stderr), shell
