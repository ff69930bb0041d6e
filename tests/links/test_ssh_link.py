"""The harness's ssh link against a simulated board's real SSH server on 127.0.0.1.

Covers what a lab relies on: exit codes and stderr kept apart, the host-key policies (strict / accept-new /
insecure, and a CHANGED key refused), hard deadlines that leave no board process behind, transfers that never
leave a partial file at the target, and a one-line LinkDown for every way a board can be unreachable.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import pytest
from support.net import listen
from support.processes import processes_matching, wait_until
from support.ssh import keyed_board, start_ssh_daemon

from harness.errors import BoardError, ConfigError, LinkDown, LinkTimeout
from harness.links.ssh import SshLink
from harness.sim.sshd import SshDaemon

PASSWORD = "rockchip-link"


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    return keyed_board(tmp_path_factory.mktemp("ssh-link-board"), "harness@lab")


def start_daemon(board, *, port: int = 0, host_key: Path | None = None) -> SshDaemon:
    return start_ssh_daemon(board["ctx"], host_key or board["base"] / "host_key", PASSWORD, port=port)


@pytest.fixture(scope="module")
def daemon(board):
    d = start_daemon(board)
    yield d
    d.stop()


@pytest.fixture
def link(daemon, tmp_path):
    ssh = SshLink(host="127.0.0.1", port=daemon.port, password=PASSWORD, host_key_policy="accept-new",
                  known_hosts=tmp_path / "known_hosts", connect_timeout=10)
    ssh.connect()
    yield ssh
    ssh.close()


def test_shell_returns_exit_code_and_separate_streams(link, caplog):
    caplog.set_level(logging.INFO, logger="harness.links.ssh")
    assert link.shell("false", timeout=30).exit_code == 1
    result = link.shell("echo out; echo err >&2; exit 7", timeout=30)
    assert (result.exit_code, result.stdout, result.stderr, result.link) == (7, "out\n", "err\n", "ssh")
    assert not result.ok and result.output == "out\n\nerr\n"
    assert any("exit 7" in r.getMessage() and "echo out" in r.getMessage() for r in caplog.records)


def test_a_command_reading_stdin_sees_eof(link):
    assert link.shell("cat; echo done", timeout=30).stdout == "done\n"


def test_key_login(daemon, board, tmp_path):
    with SshLink(host="127.0.0.1", port=daemon.port, key_filename=board["key"], host_key_policy="insecure",
                 connect_timeout=10) as ssh:
        assert ssh.shell("id -un", timeout=30).stdout == "root\n"


def test_bad_password_is_link_down_naming_the_cause(daemon, tmp_path):
    ssh = SshLink(host="127.0.0.1", port=daemon.port, password="nope", host_key_policy="insecure",
                  connect_timeout=10)
    with pytest.raises(LinkDown, match="authentication failed") as info:
        ssh.connect()
    assert "\n" not in str(info.value)


def test_strict_refuses_an_unknown_host_and_names_the_fix(daemon, tmp_path):
    ssh = SshLink(host="127.0.0.1", port=daemon.port, password=PASSWORD, known_hosts=tmp_path / "none")
    with pytest.raises(LinkDown, match="unknown host key") as info:
        ssh.connect()
    assert 'host_key_policy = "accept-new"' in str(info.value)
    assert not (tmp_path / "none").exists()


def test_accept_new_records_the_key_then_refuses_a_changed_one(board, tmp_path):
    known = tmp_path / "known_hosts"
    first = start_daemon(board, host_key=tmp_path / "key1")
    port = first.port
    try:
        with SshLink(host="127.0.0.1", port=port, password=PASSWORD, host_key_policy="accept-new",
                     known_hosts=known) as ssh:
            assert ssh.shell("true", timeout=30).ok
        assert f"[127.0.0.1]:{port} ssh-ed25519 " in known.read_text()
        with SshLink(host="127.0.0.1", port=port, password=PASSWORD, known_hosts=known) as ssh:  # strict
            assert ssh.shell("true", timeout=30).ok
    finally:
        first.stop()
    reflashed = start_daemon(board, port=port, host_key=tmp_path / "key2")  # same address, new key
    try:
        for policy in ("accept-new", "strict"):
            ssh = SshLink(host="127.0.0.1", port=port, password=PASSWORD, host_key_policy=policy,
                          known_hosts=known)
            with pytest.raises(LinkDown, match="CHANGED"):
                ssh.connect()
        with SshLink(host="127.0.0.1", port=port, password=PASSWORD, host_key_policy="insecure",
                     known_hosts=known) as ssh:
            assert ssh.shell("echo yes", timeout=30).stdout == "yes\n"
    finally:
        reflashed.stop()


def test_insecure_accepts_and_warns_once(daemon, caplog, tmp_path):
    caplog.set_level(logging.WARNING)
    ssh = SshLink(host="127.0.0.1", port=daemon.port, password=PASSWORD, host_key_policy="insecure",
                  known_hosts=tmp_path / "kh")
    for _ in range(2):
        ssh.connect()
        assert ssh.shell("true", timeout=30).ok
    ssh.close()
    assert len([r for r in caplog.records if "NOT checked" in r.getMessage()]) == 1
    assert not (tmp_path / "kh").exists()


def test_unknown_policy_is_a_config_error():
    with pytest.raises(ConfigError, match="host_key_policy"):
        SshLink(host="127.0.0.1", host_key_policy="yolo")


def test_timeout_raises_and_leaves_no_board_process(link, daemon):
    marker = "sleep 30117"
    with pytest.raises(LinkTimeout, match=r"sleep 30117.*1s"):
        link.shell(f"{marker}; echo late", timeout=1)
    assert wait_until(lambda: not processes_matching(marker)), "the board process outlived the timeout"
    assert link.shell("echo still-usable", timeout=30).stdout == "still-usable\n"


def test_closed_port_is_link_down(tmp_path):
    probe = listen()
    port = probe.getsockname()[1]
    probe.close()
    ssh = SshLink(host="127.0.0.1", port=port, password=PASSWORD, host_key_policy="insecure", connect_timeout=3)
    with pytest.raises(LinkDown, match="refused"):
        ssh.connect()


def test_silent_server_is_link_down_within_the_connect_timeout():
    silent = listen()  # the kernel completes the TCP handshake; nothing ever speaks SSH
    try:
        ssh = SshLink(host="127.0.0.1", port=silent.getsockname()[1], password=PASSWORD,
                      host_key_policy="insecure", connect_timeout=1)
        with pytest.raises(LinkDown, match="no SSH answer within 1s"):
            ssh.connect()
    finally:
        silent.close()


def test_push_pull_round_trip(link, board, tmp_path):
    payload = os.urandom(4 * 2**20 + 17)
    src = tmp_path / "model.rknn"
    src.write_bytes(payload)
    seen: list[tuple[int, int]] = []
    link.push(src, "/userdata/model.rknn", progress=lambda done, total: seen.append((done, total)), timeout=60)
    assert seen[-1] == (len(payload), len(payload))
    digest = hashlib.sha256(payload).hexdigest()
    assert link.shell("sha256sum /userdata/model.rknn", timeout=30).stdout.split()[0] == digest
    assert not [n for n in os.listdir(board["root"] / "userdata") if ".part-" in n]
    back = tmp_path / "back" / "model.rknn"
    back.parent.mkdir()
    link.pull("/userdata/model.rknn", back, timeout=60)
    assert hashlib.sha256(back.read_bytes()).hexdigest() == digest
    assert os.listdir(back.parent) == ["model.rknn"]


def test_push_replaces_an_existing_file(link, board, tmp_path):
    src = tmp_path / "v2.txt"
    src.write_text("version 2\n")
    (board["root"] / "userdata" / "cfg.txt").write_text("version 1, longer than the new one\n")
    link.push(src, "/userdata/cfg.txt", timeout=30)
    assert (board["root"] / "userdata" / "cfg.txt").read_text() == "version 2\n"


def test_push_to_a_full_userdata_leaves_nothing(link, board, tmp_path):
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(300_000))
    board["ctx"].faults.set("userdata-full")
    try:
        with pytest.raises(BoardError, match="kept 0 of 300000 bytes"):
            link.push(src, "/userdata/big.bin", timeout=30)
    finally:
        board["ctx"].faults.clear("userdata-full")
    assert not [n for n in os.listdir(board["root"] / "userdata") if n.startswith((".big.bin", "big.bin"))]


def test_a_cut_push_never_leaves_a_file_at_the_target(board, tmp_path):
    src = tmp_path / "cut.bin"
    src.write_bytes(os.urandom(8 * 2**20))
    d = start_daemon(board)
    ssh = SshLink(host="127.0.0.1", port=d.port, password=PASSWORD, host_key_policy="insecure")
    try:
        ssh.connect()
        with pytest.raises((LinkDown, BoardError)):
            ssh.push(src, "/userdata/cut.bin", progress=lambda done, total: d.stop(), timeout=60)
    finally:
        d.stop()
        ssh.close()
    assert not (board["root"] / "userdata" / "cut.bin").exists()


def test_pull_of_a_missing_file_is_board_error_and_leaves_nothing(link, tmp_path):
    with pytest.raises(BoardError, match="no such file"):
        link.pull("/userdata/absent.bin", tmp_path / "absent.bin", timeout=30)
    assert os.listdir(tmp_path) == ["known_hosts"]


def test_bad_local_paths_are_config_errors(link, tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        link.push(tmp_path / "nope.bin", "/userdata/nope.bin", timeout=30)
    with pytest.raises(ConfigError, match="no such folder"):
        link.pull("/etc/version", tmp_path / "missing-dir" / "version", timeout=30)


def test_is_alive_follows_the_server(board):
    d = start_daemon(board)
    ssh = SshLink(host="127.0.0.1", port=d.port, password=PASSWORD, host_key_policy="insecure")
    try:
        assert not ssh.is_alive()
        ssh.connect()
        assert ssh.is_alive()
        d.stop()
        assert wait_until(lambda: not ssh.is_alive())
        with pytest.raises(LinkDown):
            ssh.shell("true", timeout=5)
    finally:
        d.stop()
        ssh.close()
