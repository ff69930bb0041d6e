"""The simulated board's SSH endpoint, driven by the real paramiko client and OpenSSH's ``ssh``.

Each test talks to an ``SshDaemon`` listening on 127.0.0.1 in front of a real board root (busybox in a user
namespace): logins, exit statuses, separate stderr, a pty shell, SFTP confined to the board root, the
``userdata-full`` fault, and that closing a channel kills the board process it started.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
from pathlib import Path

import paramiko
import pytest
from support.boards import board_context
from support.processes import processes_matching, wait_until
from support.ssh import authorized_keys, make_user_key, start_ssh_daemon

from harness.sim.faults import FaultSet
from harness.sim.sshd import SshDaemon

PASSWORD = "rockchip-test"


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    base = tmp_path_factory.mktemp("sshd-board")
    ctx = board_context(base)
    private, public = make_user_key(base, "id_ed25519")
    authorized_keys(ctx).write_text(
        f"# lab keys\nssh-rsa AAAAnot-base64 broken@line\nno-pty,no-port-forwarding {public} lab@host\n")
    return dict(base=base, root=ctx.root, ctx=ctx, key=private)


def start_daemon(board, host_key: Path | None = None) -> SshDaemon:
    return start_ssh_daemon(board["ctx"], host_key or board["base"] / "ssh_host_key", PASSWORD)


@pytest.fixture(scope="module")
def daemon(board):
    d = start_daemon(board)
    yield d
    d.stop()


def client_for(daemon: SshDaemon, **auth) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    client.connect("127.0.0.1", port=daemon.port, username=auth.pop("username", "root"), timeout=10,
                   banner_timeout=10, auth_timeout=10, allow_agent=False, look_for_keys=False, **auth)
    return client


@pytest.fixture
def client(daemon):
    c = client_for(daemon, password=PASSWORD)
    yield c
    c.close()


def run(client: paramiko.SSHClient, command: str) -> tuple[int, bytes, bytes]:
    _stdin, stdout, stderr = client.exec_command(command, timeout=30)
    out, err = stdout.read(), stderr.read()
    return stdout.channel.recv_exit_status(), out, err


def test_exec_gives_exit_status_and_separate_stderr(client):
    assert run(client, "false")[0] == 1
    assert run(client, "exit 7")[0] == 7
    code, out, err = run(client, "echo to-out; echo to-err >&2; hostname; exit 3")
    assert (code, out, err) == (3, b"to-out\nrv1126\n", b"to-err\n")


def test_commands_run_inside_the_board_root(client, board):
    (board["root"] / "userdata" / "marker.txt").write_text("on the board\n")
    code, out, _ = run(client, "cat /userdata/marker.txt; cat /etc/version; id -u")
    assert code == 0
    assert out.decode().splitlines() == ["on the board", "RK_VERSION=" + board["ctx"].profile.rk_version, "0"]


def test_stdin_reaches_the_command_until_eof(client):
    stdin, stdout, _ = client.exec_command("wc -c; cat /dev/null", timeout=30)
    stdin.write(b"x" * 100_000)
    stdin.channel.shutdown_write()
    assert stdout.read().strip() == b"100000"
    assert stdout.channel.recv_exit_status() == 0


def test_bad_password_and_wrong_user_are_refused(daemon):
    with pytest.raises(paramiko.AuthenticationException):
        client_for(daemon, password="wrong")
    with pytest.raises(paramiko.AuthenticationException):
        client_for(daemon, username="admin", password=PASSWORD)


def test_public_key_login_from_authorized_keys(daemon, board, tmp_path):
    c = client_for(daemon, key_filename=str(board["key"]))
    try:
        assert run(c, "echo key-ok") == (0, b"key-ok\n", b"")
    finally:
        c.close()
    stranger, _ = make_user_key(tmp_path, "stranger")
    with pytest.raises(paramiko.AuthenticationException):
        client_for(daemon, key_filename=str(stranger))


def test_pty_shell_is_a_login_shell_with_exit_status(client):
    channel = client.get_transport().open_session(timeout=10)
    channel.settimeout(30)
    channel.get_pty(term="xterm", width=100, height=30)
    channel.invoke_shell()
    channel.sendall(b"echo TERM=$TERM; stty size; echo sum=$((6*7)); exit 5\n")
    seen = b""
    while True:
        data = channel.recv(4096)
        if not data:
            break
        seen += data
    text = seen.decode(errors="replace").replace("\r", "")
    assert "TERM=xterm\n" in text and "30 100\n" in text and "sum=42\n" in text
    assert channel.recv_exit_status() == 5


def test_closing_the_channel_kills_the_board_process(client, daemon):
    marker = "sleep 31337"
    channel = client.get_transport().open_session(timeout=10)
    channel.exec_command(f"{marker}; echo never")
    assert wait_until(lambda: processes_matching(marker)), "the board command never started"
    channel.close()
    assert wait_until(lambda: not processes_matching(marker)), "board process survived its channel"
    assert wait_until(lambda: not daemon.running_processes())


def test_sftp_round_trip_of_a_few_mib(client, board, tmp_path):
    payload = os.urandom(3 * 2**20 + 123)
    src = tmp_path / "blob.bin"
    src.write_bytes(payload)
    sftp = client.open_sftp()
    sftp.put(str(src), "/userdata/blob.bin")
    back = tmp_path / "back.bin"
    sftp.get("/userdata/blob.bin", str(back))
    sftp.close()
    digest = hashlib.sha256(payload).hexdigest()
    assert hashlib.sha256(back.read_bytes()).hexdigest() == digest
    assert hashlib.sha256((board["root"] / "userdata" / "blob.bin").read_bytes()).hexdigest() == digest
    code, out, _ = run(client, "sha256sum /userdata/blob.bin")  # the board's own tool agrees
    assert code == 0 and out.split()[0].decode() == digest


def test_sftp_cannot_leave_the_board_root(client, board):
    sftp = client.open_sftp()
    board_passwd = (board["root"] / "etc" / "passwd").read_bytes()
    with sftp.open("/../../etc/passwd") as f:
        assert f.read() == board_passwd
    with sftp.open("../../../../etc/hostname") as f:  # relative to /root, still the board's
        assert f.read() == b"rv1126\n"
    sftp.symlink("/../../..", "/tmp/to-root")  # an absolute link is the board's "/"
    assert sorted(sftp.listdir("/tmp/to-root")) == sorted(os.listdir(board["root"]))
    assert sftp.readlink("/tmp/to-root") == "/../../.."
    assert stat.S_ISLNK(sftp.lstat("/tmp/to-root").st_mode)
    (board["root"] / "tmp" / "host-abs").symlink_to("/etc")  # as if made on the board: /etc is the board's
    assert "version" in sftp.listdir("/tmp/host-abs")
    assert sftp.normalize(".") == "/root" and sftp.normalize("/../..") == "/"
    sftp.close()


def test_sftp_folder_operations(client, board):
    sftp = client.open_sftp()
    sftp.mkdir("/userdata/d", mode=0o750)
    with sftp.open("/userdata/d/a", "w") as f:
        f.write(b"first")
    sftp.chmod("/userdata/d/a", 0o640)
    assert stat.S_IMODE(sftp.stat("/userdata/d/a").st_mode) == 0o640
    sftp.rename("/userdata/d/a", "/userdata/d/b")
    with sftp.open("/userdata/d/c", "w") as f:
        f.write(b"second")
    with pytest.raises(IOError):
        sftp.rename("/userdata/d/c", "/userdata/d/b")  # SFTP v3 rename never replaces
    sftp.posix_rename("/userdata/d/c", "/userdata/d/b")
    assert sorted(sftp.listdir("/userdata/d")) == ["b"]
    assert (board["root"] / "userdata" / "d" / "b").read_bytes() == b"second"
    sftp.truncate("/userdata/d/b", 3)
    assert sftp.stat("/userdata/d/b").st_size == 3
    with pytest.raises(IOError):
        sftp.rmdir("/userdata/d")  # not empty
    sftp.remove("/userdata/d/b")
    sftp.rmdir("/userdata/d")
    with pytest.raises(FileNotFoundError):
        sftp.stat("/userdata/d")
    sftp.close()


def test_userdata_full_fault_fails_writes_there_only(client, board, tmp_path):
    src = tmp_path / "f.bin"
    src.write_bytes(os.urandom(200_000))
    faults: FaultSet = board["ctx"].faults
    faults.set("userdata-full")
    try:
        sftp = client.open_sftp()
        with pytest.raises(IOError):
            sftp.put(str(src), "/userdata/full.bin")
        sftp.put(str(src), "/tmp/fine.bin")
        assert (board["root"] / "tmp" / "fine.bin").stat().st_size == 200_000
        sftp.close()
    finally:
        faults.clear("userdata-full")
    assert (board["root"] / "userdata" / "full.bin").stat().st_size == 0


def test_host_key_survives_a_restart_and_is_private(board, tmp_path):
    key_path = tmp_path / "keys" / "ssh_host_key"
    first = start_daemon(board, key_path)
    first_key = first.host_key
    first.stop()
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    second = start_daemon(board, key_path)
    try:
        c = client_for(second, password=PASSWORD)
        assert c.get_transport().get_remote_server_key() == first_key
        c.close()
    finally:
        second.stop()


def test_stop_kills_running_commands_and_connections(board):
    d = start_daemon(board)
    c = client_for(d, password=PASSWORD)
    marker = "sleep 31338"
    c.get_transport().open_session(timeout=10).exec_command(marker)
    assert wait_until(lambda: processes_matching(marker))
    d.stop()
    assert not processes_matching(marker)
    assert wait_until(lambda: not c.get_transport().is_active())
    c.close()


def test_openssh_client_exec(daemon, board, tmp_path):
    """OpenSSH's ssh (Debian openssh-client; more of it in test_openssh_client.py) gets exit status and stderr."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "known_hosts").write_text(
        f"[127.0.0.1]:{daemon.port} {daemon.host_key.get_name()} {daemon.host_key.get_base64()}\n")
    argv = ["ssh", "-F", "/dev/null", "-p", str(daemon.port), "-i", str(board["key"]),
            "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={home / 'known_hosts'}", "-o", "ConnectTimeout=10",
            "root@127.0.0.1", "echo from-openssh; echo e >&2; exit 7"]
    proc = subprocess.run(argv, capture_output=True, timeout=60, env={**os.environ, "HOME": str(home)})
    assert proc.returncode == 7, proc.stderr
    assert proc.stdout == b"from-openssh\n"
    assert b"e\n" in proc.stderr
