"""AdbLink and AdbServer against the real Debian adb server and the simulated board's adb endpoint.

Every test goes host -> real adb server (our own process, own port 15110-15119, own HOME) -> TCP ->
``harness.sim.adbd`` -> busybox in the board root. Nothing is mocked; the only stand-in is the daemon's
``request_reboot`` hook, which here stops the daemon and brings a new one up on the same port, as a
rebooting board does to its TCP endpoint.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
import uuid
from pathlib import Path

import pytest
from adbutils.errors import AdbError
from support.net import listen
from support.processes import processes_matching, wait_until

from harness.errors import BoardError, ConfigError, LinkDown, LinkTimeout
from harness.links.adb import AdbLink, state_error
from harness.links.adb_server import AdbServer, find_adb
from harness.sim import profile, rootfs
from harness.sim.adbd import AdbDaemon
from harness.sim.context import BoardContext
from harness.sim.faults import FaultSet

SERVER_PORT, LIFECYCLE_PORT, NEVER_STARTED_PORT = 15110, 15111, 15112
MIB = 1024 * 1024
log = logging.getLogger("test.adb_link")
log.setLevel(logging.DEBUG)  # every exchange is logged at INFO; pytest shows them on failure


def make_ctx(base: Path, root: Path, name: str) -> BoardContext:
    state = base / f"state-{name}"
    state.mkdir(exist_ok=True)
    return BoardContext(name=name, profile=profile.load("rv1126"), root=root, state_dir=state,
                        faults=FaultSet(state))


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    base = tmp_path_factory.mktemp("adb-board")
    root = rootfs.build(base / "root", profile.load("rv1126"))
    return dict(base=base, root=root, ctx=make_ctx(base, root, "sim-rv1126"))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = AdbServer(port=SERVER_PORT, home=tmp_path_factory.mktemp("adb-home"), usb=False).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def daemon(board):
    d = AdbDaemon(board["ctx"], listen())
    d.start()
    yield d
    d.stop()


@pytest.fixture()
def link(server, daemon):
    address = "127.0.0.1:%d" % daemon.address[1]
    lk = AdbLink(server=server, serial=address, address=address, log=log, op_timeout=20.0)
    lk.connect(timeout=10)
    yield lk
    lk.close()


@pytest.fixture()
def faults(board):
    fs = FaultSet(board["ctx"].state_dir)
    yield fs
    fs.clear()


# --- the server ------------------------------------------------------------------------------------------
def test_server_is_ours_isolated_and_stopped_by_pid(tmp_path):
    home = tmp_path / "home"
    srv = AdbServer(port=LIFECYCLE_PORT, home=home, usb=False)
    srv.start()
    pid = srv.pid
    try:
        assert pid is not None and Path(f"/proc/{pid}").exists()
        assert srv.client().server_version() >= 39
        assert (home / ".android" / "adbkey").is_file()  # its key lives in our home, not the user's
        assert srv.environment()["ADB_MDNS"] == "0" and srv.environment()["ADB_USB"] == "0"
        with pytest.raises(LinkDown, match="already has an adb server"):
            AdbServer(port=LIFECYCLE_PORT, home=tmp_path / "other", usb=False).start()
    finally:
        srv.stop()
    assert srv.pid is None
    assert wait_until(lambda: not Path(f"/proc/{pid}").exists() or
                      "zombie" in Path(f"/proc/{pid}/status").read_text().lower(), 5)
    assert not srv.answers()


def test_client_never_starts_a_server(tmp_path):
    srv = AdbServer(port=NEVER_STARTED_PORT, home=tmp_path, usb=False)
    with pytest.raises((AdbError, OSError)):
        srv.client(socket_timeout=2).server_version()
    assert not srv.answers()  # adbutils' fallback `adb start-server` did not run


def test_missing_adb_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(LinkDown, match="apt-get install adb"):
        find_adb()
    (tmp_path / "adb").write_text("not a program")
    with pytest.raises(ConfigError, match="not executable"):
        find_adb(tmp_path / "adb")


def test_remote_server_is_used_not_owned(server):
    remote = AdbServer.remote("127.0.0.1", SERVER_PORT)
    remote.start(timeout=5)
    assert remote.pid is None
    remote.stop()  # must leave the other owner's server running
    assert server.answers()


# --- shell -----------------------------------------------------------------------------------------------
def test_shell_exit_code_stdout_stderr(link):
    res = link.shell("echo out; echo err >&2; exit 7", timeout=10)
    assert (res.stdout, res.stderr, res.exit_code, res.link) == ("out\n", "err\n", 7, "adb")
    assert link.shell("cat /etc/hostname", timeout=10).stdout.strip() == "rv1126"  # the board's file
    assert link.shell("test -e /no/such/file", timeout=10).exit_code == 1
    assert link.shell("cat", timeout=10).ok  # stdin is closed: a reader does not wait on us


def test_shell_v1_fallback_keeps_the_exit_code(server, link):
    """For an adbd without shell_v2 (older Linux boards): exit codes survive even an explicit ``exit``."""
    assert link.shell("true", timeout=10).ok and link.shell_v2 is True  # the sim adbd lists shell_v2
    old = AdbLink(server=server, serial=link.serial, log=log, shell_v2=False)
    res = old.shell("echo out; echo err >&2; exit 7", timeout=10)
    assert res.exit_code == 7 and "out\n" in res.stdout and "err\n" in res.stdout  # v1 merges stderr
    res = old.shell("printf no-newline", timeout=10)
    assert (res.stdout, res.exit_code) == ("no-newline", 0)
    with pytest.raises(LinkTimeout):
        old.shell("sleep 300", timeout=1.0)


def test_shell_deadline_kills_the_command(link):
    marker = f"mark{uuid.uuid4().hex[:10]}"
    with pytest.raises(LinkTimeout, match=marker):
        link.shell(f"sleep 300; echo {marker}", timeout=1.0)
    assert wait_until(lambda: not processes_matching(marker), 10), "the board command outlived its stream"
    assert link.shell("echo still-here", timeout=5).stdout == "still-here\n"


def test_connect_to_a_closed_port_fails_fast(server):
    closed = listen()
    port = closed.getsockname()[1]
    closed.close()
    lk = AdbLink(server=server, serial="", address=f"127.0.0.1:{port}", op_timeout=30)
    with pytest.raises(LinkDown, match="refused"):
        lk.connect()


def test_shell_on_absent_device_is_linkdown(server, link):
    ghost = AdbLink(server=server, serial="127.0.0.1:9", op_timeout=2)
    with pytest.raises(LinkDown, match="not listed") as info:
        ghost.shell("true", timeout=2)
    assert link.serial in str(info.value)  # it lists what the server does see
    assert not ghost.is_alive()


# --- push / pull -----------------------------------------------------------------------------------------
def test_push_pull_20mib_verified(link, board, tmp_path):
    data = os.urandom(20 * MIB)
    src, back = tmp_path / "big.bin", tmp_path / "back.bin"
    src.write_bytes(data)
    seen: list[tuple[int, int]] = []
    assert link.push(src, "/tmp/", progress=lambda done, total: seen.append((done, total))) == len(data)
    on_board = board["root"] / "tmp" / "big.bin"
    assert hashlib.sha256(on_board.read_bytes()).digest() == hashlib.sha256(data).digest()
    assert seen[-1] == (len(data), len(data))
    assert link.pull("/tmp/big.bin", back, progress=True) == len(data)  # a rich bar, even off a terminal
    assert back.read_bytes() == data


def test_transfer_errors_are_clear(link, tmp_path):
    with pytest.raises(ConfigError, match="absolute"):
        link.push(Path(__file__), "tmp/x")
    with pytest.raises(ConfigError, match="not a file"):
        link.push(tmp_path / "missing", "/tmp/x")
    with pytest.raises(BoardError, match="cannot send"):
        link.pull("/no/such/file", tmp_path / "x")
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.partial").exists()


class _FlipAfterTransfer(logging.Handler):
    """Damages the board's copy of a file right after the transfer is logged and before it is verified.

    It stands in for storage that corrupts what it stores (the board shell's ``sha256sum`` is a busybox
    applet that no PATH trick can replace), so the real sha256 check on the board has something to catch.
    """

    def __init__(self, board_file: Path) -> None:
        super().__init__()
        self.board_file, self.flips = board_file, 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().split()[1:2] in (["push"], ["pull"]):
            with self.board_file.open("r+b") as f:
                f.seek(100)
                byte = f.read(1)
                f.seek(100)
                f.write(bytes([byte[0] ^ 0xFF]))
            self.flips += 1


def test_corruption_on_the_board_is_detected(link, board, tmp_path):
    """A board copy that differs from the host's fails the sha256 check, push and pull alike."""
    src = tmp_path / "m.bin"
    src.write_bytes(os.urandom(4096))
    flipper = _FlipAfterTransfer(board["root"] / "tmp" / "m.bin")
    link.log.addHandler(flipper)
    try:
        with pytest.raises(BoardError, match="corrupt"):
            link.push(src, "/tmp/m.bin")
        with pytest.raises(BoardError, match="corrupt"):
            link.pull("/tmp/m.bin", tmp_path / "m-back.bin")
    finally:
        link.log.removeHandler(flipper)
    assert flipper.flips == 2
    assert not (tmp_path / "m-back.bin").exists() and not (tmp_path / "m-back.bin.partial").exists()
    assert link.push(src, "/tmp/m.bin") == 4096  # the same transfer, undisturbed, verifies


def test_dropped_connection_mid_push_is_linkdown_not_a_hang(link, faults, tmp_path):
    src = tmp_path / "drop.bin"
    src.write_bytes(os.urandom(8 * MIB))
    faults.set("adb-drop=1048576")
    with pytest.raises(BoardError) as info:
        link.push(src, "/tmp/drop.bin", timeout=30)
    assert isinstance(info.value, LinkDown), f"a drop must surface as LinkDown, got {info.value!r}"
    faults.clear()
    link.wait_ready(timeout=20)
    assert link.push(src, "/tmp/drop.bin", timeout=30) == src.stat().st_size


# --- states ----------------------------------------------------------------------------------------------
def test_offline_device_is_linkdown_naming_offline(server, board):
    ctx = make_ctx(board["base"], board["root"], "offline-board")
    FaultSet(ctx.state_dir).set("adb-offline")
    d = AdbDaemon(ctx, listen())
    d.start()
    address = "127.0.0.1:%d" % d.address[1]
    lk = AdbLink(server=server, serial=address, address=address, log=log)
    try:
        with pytest.raises(LinkDown, match="offline") as info:
            lk.connect(timeout=3)
        assert "adbd" in (info.value.fix or "")
        assert lk.state() == "offline"
    finally:
        lk.close()
        d.stop()


SEE = "; see [http://developer.android.com/tools/device.html]"
PLUGDEV = "no permissions (user hpcci is not in the plugdev group)" + SEE  # the manual's 4.1.1 text
UDEV = "no permissions (user in plugdev group; are your udev rules wrong?)" + SEE


def test_state_texts_map_to_their_fix():
    assert state_error("1109", "device", []) is None
    plug = state_error("1109", PLUGDEV, [])
    assert "plugdev" in plug.message and "usermod -aG plugdev" in plug.fix and "2207" in plug.fix
    assert "4.1.1" in plug.fix
    udev = state_error("1109", UDEV, [])
    assert "2207" in udev.fix and "4.1.1" in udev.fix and "usermod" not in udev.fix
    assert "RSA" in state_error("1109", "unauthorized", []).fix
    assert "offline" in state_error("1109", "offline", []).message
    absent = state_error("1109", "absent", [("1126", "device"), ("emulator-5554", "offline")])
    assert "1126 (device)" in absent.message and "emulator-5554 (offline)" in absent.message
    assert "recovery" in state_error("1109", "recovery", []).message


# --- reboot ----------------------------------------------------------------------------------------------
def test_reboot_then_wait_ready_reconnects_actively(server, board):
    ctx = make_ctx(board["base"], board["root"], "reboot-board")
    current = {"daemon": AdbDaemon(ctx, listen())}
    current["daemon"].start()
    port = current["daemon"].address[1]
    back_at: list[float] = []

    def power_cycle() -> None:  # what the board's reboot does to its adb endpoint
        time.sleep(0.1)
        current["daemon"].stop()
        time.sleep(1.0)
        fresh = AdbDaemon(ctx, listen(port))
        fresh.start()
        current["daemon"] = fresh
        back_at.append(time.monotonic())

    reboots: list[str] = []
    ctx.request_reboot = lambda mode="": (reboots.append(mode),
                                          threading.Thread(target=power_cycle, daemon=True).start())
    address = f"127.0.0.1:{port}"
    lk = AdbLink(server=server, serial=address, address=address, log=log)
    try:
        lk.connect(timeout=10)
        lk.reboot()
        lk.wait_ready(timeout=30)
        ready_at = time.monotonic()
        assert reboots == [""] and back_at, "the board never went through its reboot"
        lag = ready_at - back_at[0]
        log.warning("wait_ready returned %.2f s after the adb port was back", lag)
        assert 0 <= lag < 8.0  # generous: the server's own retry would take ~10 s
        assert lk.shell("echo up", timeout=5).stdout == "up\n"
    finally:
        lk.close()
        current["daemon"].stop()
