"""The simulated board's sshd as OpenSSH's own client sees it: ``scp`` (SFTP and legacy), ``ssh -t``.

Why: labs and people reach boards with the OpenSSH binaries, not paramiko; what those need from a server
(exit-status on the sftp channel, the legacy ``scp -t``/``scp -f`` protocol on a board with no scp binary, a
pty that ``tty`` can name) is only proven by running them. Every run is strict: BatchMode, the test's own key,
a known_hosts file holding the board's host key and ``StrictHostKeyChecking=yes``, 127.0.0.1 only. Files are
compared by sha256 on both ends (the board's side read from its root folder).
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from pathlib import Path

import pytest
from support.ssh import keyed_board, make_user_key, start_ssh_daemon

from harness.sim.sshd import SshDaemon

MIB = 1 << 20


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class OpenSsh:
    """The real ``ssh``/``scp`` binaries pointed at one daemon, with a HOME and known_hosts of their own."""

    def __init__(self, daemon: SshDaemon, key: Path, home: Path) -> None:
        self.daemon, self.key, self.home = daemon, key, home
        home.mkdir(exist_ok=True)
        self.known_hosts = home / "known_hosts"
        host_key = daemon.host_key
        self.known_hosts.write_text(f"[127.0.0.1]:{daemon.port} {host_key.get_name()} {host_key.get_base64()}\n")

    def options(self) -> list[str]:
        return ["-F", "/dev/null", "-i", str(self.key), "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
                "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={self.known_hosts}",
                "-o", "ConnectTimeout=10"]

    def _run(self, argv: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run(argv, capture_output=True, timeout=90, stdin=subprocess.DEVNULL,
                              env={**os.environ, "HOME": str(self.home)})

    def ssh(self, *args: str) -> subprocess.CompletedProcess:
        return self._run(["ssh", *self.options(), "-p", str(self.daemon.port), *args])

    def scp(self, *args: str) -> subprocess.CompletedProcess:
        return self._run(["scp", *self.options(), "-P", str(self.daemon.port), *args])

    def sftp(self, batch: str) -> subprocess.CompletedProcess:
        """``sftp -b FILE``: a batch stops at the first failing command and exits 1, as OpenSSH documents."""
        script = self.home / "batch"
        script.write_text(batch)
        return self._run(["sftp", *self.options(), "-P", str(self.daemon.port), "-b", str(script), "root@127.0.0.1"])


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    board = keyed_board(tmp_path_factory.mktemp("openssh-board"))
    daemon = start_ssh_daemon(board["ctx"], board["base"] / "ssh_host_key", "unused-password")
    yield dict(board, daemon=daemon)
    daemon.stop()


@pytest.fixture
def openssh(board, tmp_path):
    return OpenSsh(board["daemon"], board["key"], tmp_path / "home")


def remote(path: str) -> str:
    return f"root@127.0.0.1:{path}"


# ------------------------------------------------------------------------------------------------ scp (SFTP)
def test_scp_in_sftp_mode_exits_0_both_ways_with_identical_files(openssh, board, tmp_path):
    up = tmp_path / "up.bin"
    up.write_bytes(os.urandom(3 * MIB + 17))
    result = openssh.scp(str(up), remote("/userdata/sftp-up.bin"))
    assert result.returncode == 0, result.stderr
    assert sha256(board["root"] / "userdata" / "sftp-up.bin") == sha256(up)
    down = tmp_path / "down.bin"
    result = openssh.scp(remote("/userdata/sftp-up.bin"), str(down))
    assert result.returncode == 0, result.stderr
    assert sha256(down) == sha256(up)


def test_scp_in_sftp_mode_fails_for_a_missing_file(openssh, tmp_path):
    result = openssh.scp(remote("/userdata/no-such.bin"), str(tmp_path / "x"))
    assert result.returncode == 1
    assert b"No such file or directory" in result.stderr
    assert not (tmp_path / "x").exists()


# ------------------------------------------------------------------------------------------------ scp -O (legacy)
def test_legacy_scp_uploads_and_downloads_a_file(openssh, board, tmp_path):
    up = tmp_path / "legacy.bin"
    up.write_bytes(os.urandom(2 * MIB + 5))
    result = openssh.scp("-O", str(up), remote("/userdata/legacy.bin"))
    assert result.returncode == 0, result.stderr
    assert sha256(board["root"] / "userdata" / "legacy.bin") == sha256(up)
    down = tmp_path / "legacy-down.bin"
    result = openssh.scp("-O", remote("/userdata/legacy.bin"), str(down))
    assert result.returncode == 0, result.stderr
    assert sha256(down) == sha256(up)


def test_legacy_scp_recursive_with_times_both_ways(openssh, board, tmp_path):
    tree = tmp_path / "models"
    (tree / "rk3588").mkdir(parents=True)
    files = {"a.rknn": os.urandom(300_000), "rk3588/b.npy": os.urandom(4097), "empty": b""}
    for name, data in files.items():
        (tree / name).write_bytes(data)
    os.utime(tree / "a.rknn", (1_600_000_000, 1_600_000_000))
    result = openssh.scp("-O", "-r", "-p", str(tree), remote("/userdata/"))
    assert result.returncode == 0, result.stderr
    on_board = board["root"] / "userdata" / "models"
    for name, data in files.items():
        assert sha256(on_board / name) == hashlib.sha256(data).hexdigest(), name
    assert int((on_board / "a.rknn").stat().st_mtime) == 1_600_000_000  # -p kept the time
    back = tmp_path / "back"
    result = openssh.scp("-O", "-r", remote("/userdata/models"), str(back))
    assert result.returncode == 0, result.stderr
    assert sorted(p.relative_to(back).as_posix() for p in back.rglob("*") if p.is_file()) == sorted(files)
    for name, data in files.items():
        assert sha256(back / name) == hashlib.sha256(data).hexdigest(), name
    picked = tmp_path / "picked"
    picked.mkdir()
    result = openssh.scp("-O", remote("/userdata/models/rk3588/*.npy"), str(picked))  # the board expands it
    assert result.returncode == 0, result.stderr
    assert [p.name for p in picked.iterdir()] == ["b.npy"]
    assert sha256(picked / "b.npy") == hashlib.sha256(files["rk3588/b.npy"]).hexdigest()


def test_legacy_scp_errors_exit_1_with_the_reason(openssh, board, tmp_path):
    missing = openssh.scp("-O", remote("/userdata/none.bin"), str(tmp_path / "none.bin"))
    assert missing.returncode == 1 and b"scp: /userdata/none.bin: No such file or directory" in missing.stderr
    folder = openssh.scp("-O", remote("/userdata"), str(tmp_path / "d"))  # a folder without -r
    assert folder.returncode == 1 and b"not a regular file" in folder.stderr
    src = tmp_path / "f.bin"
    src.write_bytes(os.urandom(100_000))
    no_dir = openssh.scp("-O", str(src), remote("/no/such/dir/f.bin"))
    assert no_dir.returncode == 1 and b"No such file or directory" in no_dir.stderr
    board["ctx"].faults.set("userdata-full")
    try:
        full = openssh.scp("-O", str(src), remote("/userdata/full.bin"))
        fine = openssh.scp("-O", str(src), remote("/tmp/fine.bin"))
    finally:
        board["ctx"].faults.clear("userdata-full")
    assert full.returncode == 1 and b"No space left on device" in full.stderr, full.stderr
    assert fine.returncode == 0, fine.stderr
    assert sha256(board["root"] / "tmp" / "fine.bin") == sha256(src)


def test_legacy_scp_cannot_leave_the_board_root(openssh, board, tmp_path):
    src = tmp_path / "escape.txt"
    src.write_text("inside\n")
    result = openssh.scp("-O", str(src), remote("/../../escape.txt"))
    assert result.returncode == 0, result.stderr  # ``..`` stops at the board's /, as on a board
    assert (board["root"] / "escape.txt").read_text() == "inside\n"
    assert not (board["root"].parent / "escape.txt").exists()


# ------------------------------------------------------------------------------------------------ sftp
def test_sftp_batch_puts_lists_gets_and_removes(openssh, board, tmp_path):
    up = tmp_path / "sftp.bin"
    up.write_bytes(os.urandom(MIB + 3))
    down = tmp_path / "sftp-down.bin"
    result = openssh.sftp(f"put {up} /userdata/sftp.bin\nls -l /userdata\nget /userdata/sftp.bin {down}\n"
                          "rm /userdata/sftp.bin\n")
    assert result.returncode == 0, result.stderr
    assert b"sftp.bin" in result.stdout  # the listing
    assert sha256(down) == sha256(up) and not (board["root"] / "userdata" / "sftp.bin").exists()


def test_sftp_batch_exits_1_at_the_first_failing_command(openssh, tmp_path):
    result = openssh.sftp(f"get /userdata/no-such.bin {tmp_path / 'x'}\nmkdir /userdata/never-made\n")
    assert result.returncode == 1
    assert b"not found" in result.stderr or b"No such file" in result.stderr, result.stderr
    assert not (tmp_path / "x").exists()


# ------------------------------------------------------------------------------------------------ ssh
@pytest.mark.parametrize("status", [0, 1, 3, 127])
def test_ssh_exits_with_the_commands_status(openssh, status):
    command = "no-such-command" if status == 127 else f"exit {status}"
    assert openssh.ssh("root@127.0.0.1", command).returncode == status


# ------------------------------------------------------------------------------------------------ ssh -t
def test_ssh_t_runs_the_command_on_a_pty_it_can_name(openssh):
    result = openssh.ssh("-tt", "root@127.0.0.1", "tty; [ -t 0 ] && echo on-a-tty; exit 4")
    assert result.returncode == 4, result.stderr
    lines = result.stdout.decode().split("\r\n")  # \r\n: the output came through a pty
    assert re.fullmatch(r"/dev/pts/\d+", lines[0]), result.stdout
    assert lines[1] == "on-a-tty"


def test_ssh_without_t_has_no_tty(openssh):
    result = openssh.ssh("root@127.0.0.1", "tty")
    assert result.returncode == 1
    assert result.stdout == b"not a tty\n"


def test_a_wrong_host_key_is_refused(openssh, board):
    other = make_user_key(board["base"], "other_host_key")[1].split()
    openssh.known_hosts.write_text(f"[127.0.0.1]:{board['daemon'].port} {other[0]} {other[1]}\n")
    result = openssh.ssh("root@127.0.0.1", "true")
    assert result.returncode == 255
    assert b"HOST IDENTIFICATION HAS CHANGED" in result.stderr
