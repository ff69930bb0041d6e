"""ConsoleLink against the simulated board's console: a real pty at 1500000 baud, opened through pyserial.

The link is opened before power-on, as the harness does, so the capture must hold the whole boot.
"""

from __future__ import annotations

import os
import re
import select
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from support.console import ConsoleBoard, console_board

from harness.errors import BoardError, LinkDown, LinkTimeout
from harness.links.console import ConsoleLink

STAMP = re.compile(rb"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}\] ")


@contextmanager
def link_to(sim: ConsoleBoard, tmp_path: Path, password: str | None = "rockchip") -> Iterator[ConsoleLink]:
    link = ConsoleLink(sim.port, baud=sim.ctx.profile.console_baud, capture=tmp_path / "console.log",
                       password=password)
    link.open()
    try:
        yield link
    finally:
        link.close()


@pytest.fixture
def logged_in(tmp_path: Path) -> Iterator[tuple[ConsoleBoard, ConsoleLink]]:
    with console_board(tmp_path) as sim, link_to(sim, tmp_path) as link:
        assert sim.power_on()
        link.login(timeout=20)
        yield sim, link


def test_boot_is_captured_and_login_reaches_a_shell(tmp_path: Path) -> None:
    with console_board(tmp_path) as sim, link_to(sim, tmp_path) as link:
        assert sim.power_on()
        link.expect(r"rv1126 login: $", timeout=10)
        link.login(timeout=20)
        result = link.run("cat /etc/version", timeout=10)
        boot_text = link.excerpt()
    assert result.exit_code == 0 and result.ok
    assert result.stdout == f"RK_VERSION={sim.ctx.profile.rk_version}\n"
    assert result.link == "console" and result.command == "cat /etc/version"
    assert "U-Boot 2017.09" in boot_text and "Galcore version 6.4.6.5.351518" in boot_text
    capture = (tmp_path / "console.log").read_bytes()
    lines = capture.splitlines()
    assert lines and all(STAMP.match(line) for line in lines)
    for needle in (b"U-Boot 2017.09", b"Galcore version 6.4.6.5.351518", b"rv1126 login: ",
                   b"RK_VERSION=RV1126_RV1109_LINUX_SDK_V2.2.0_20211117"):
        assert needle in capture
    assert b"Password: \r\n" in capture, "the password is never echoed"


def test_exit_codes_merged_output_and_odd_commands(logged_in: tuple[ConsoleBoard, ConsoleLink]) -> None:
    _, link = logged_in
    assert link.run("false", timeout=10).exit_code == 1
    assert link.run("exit_code() { return $1; }; exit_code 42", timeout=10).exit_code == 42
    both = link.run("echo to-stdout; echo to-stderr >&2", timeout=10)
    assert both.stdout == "to-stdout\nto-stderr\n" and both.exit_code == 0
    assert link.run("printf no-newline", timeout=10).stdout == "no-newline"
    assert link.run("echo one\necho two;", timeout=10).stdout == "one\ntwo\n"
    long_line = "y" * 300
    assert link.run(f"echo {long_line} | wc -c", timeout=10).stdout.strip() == "301"
    quoted = link.run("echo 'a  b' \"$HOME\" $((1+2))", timeout=10)
    assert quoted.stdout == "a  b /root 3\n"


def test_long_output_arrives_complete_and_in_order(logged_in: tuple[ConsoleBoard, ConsoleLink]) -> None:
    _, link = logged_in
    result = link.run("seq 1 20000", timeout=60)
    assert result.exit_code == 0
    assert result.stdout.split("\n") == [str(i) for i in range(1, 20001)] + [""]


def test_a_command_past_its_deadline_is_interrupted(logged_in: tuple[ConsoleBoard, ConsoleLink]) -> None:
    _, link = logged_in
    with pytest.raises(LinkTimeout, match=r"'sleep 300' did not finish within 1 s \(sent \^C\)"):
        link.run("sleep 300", timeout=1)
    assert link.run("echo still-alive", timeout=10).stdout == "still-alive\n"


def test_login_again_finds_the_prompt_and_excerpt_starts_at_mark(logged_in: tuple[ConsoleBoard, ConsoleLink]) -> None:
    sim, link = logged_in
    link.login(timeout=10)
    since = link.mark()
    sim.kernel.start_server()
    link.expect(r"start rknn server, version:1\.7\.1\n", timeout=10)
    link.run("echo after-mark", timeout=10)
    excerpt = link.excerpt(since)
    assert "start rknn server, version:1.7.1" in excerpt and "after-mark" in excerpt
    assert "U-Boot" not in excerpt and "Galcore" not in excerpt
    assert "U-Boot" in link.excerpt()


def test_wrong_password_is_a_clear_board_error(tmp_path: Path) -> None:
    with console_board(tmp_path) as sim, link_to(sim, tmp_path, password="not-the-password") as link:
        assert sim.power_on()
        with pytest.raises(BoardError, match="Login incorrect") as failure:
            link.login(timeout=20)
    assert not isinstance(failure.value, LinkTimeout)
    assert "'root'" in str(failure.value)


def test_kernel_panic_at_boot_fails_at_once(tmp_path: Path) -> None:
    with console_board(tmp_path, "panic-at-boot") as sim, link_to(sim, tmp_path) as link:
        booted: list[bool] = []
        power = threading.Thread(target=lambda: booted.append(sim.power_on()))
        power.start()
        try:
            with pytest.raises(BoardError, match="Kernel panic - not syncing: VFS: Unable to mount root fs") as fail:
                link.login(timeout=60)
        finally:
            power.join(timeout=10)
        assert booted == [False]
        assert not isinstance(fail.value, LinkTimeout)
        # A later expect on the same console does not trip over the old panic, and still sees a new one.
        sim.console.write("[    9.000000] Kernel panic - not syncing: Attempted to kill init!\n")
        with pytest.raises(BoardError, match="Attempted to kill init"):
            link.expect("login:", timeout=60)
    assert b"---[ end Kernel panic" in (tmp_path / "console.log").read_bytes()


def test_boot_hang_times_out_with_the_console_excerpt(tmp_path: Path) -> None:
    with console_board(tmp_path, "boot-hang") as sim, link_to(sim, tmp_path) as link:
        assert sim.power_on() is False
        with pytest.raises(LinkTimeout) as failure:
            link.login(timeout=2)
    message = str(failure.value)
    assert "no login prompt or shell prompt" in message
    assert "Galcore version 6.4.6.5.351518" in message.splitlines()[-1]


def test_a_console_that_goes_away_is_link_down(tmp_path: Path) -> None:
    with console_board(tmp_path) as sim, link_to(sim, tmp_path) as link:
        assert sim.power_on()
        link.login(timeout=20)
        sim.pull_the_plug()
        with pytest.raises(LinkDown, match="is down"):
            link.expect("never printed", timeout=60)


def test_missing_port_is_link_down(tmp_path: Path) -> None:
    link = ConsoleLink("/dev/ttyUSB-npu-hil-missing", baud=1500000, capture=tmp_path / "c.log")
    with pytest.raises(LinkDown, match="/dev/ttyUSB-npu-hil-missing") as failure:
        link.open()
    assert "\n" not in str(failure.value)


def test_socket_url_refused_is_link_down(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago, on loopback only
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    link = ConsoleLink(f"socket://127.0.0.1:{port}", baud=115200, capture=tmp_path / "c.log")
    with pytest.raises(LinkDown, match=f"socket://127.0.0.1:{port}"):
        link.open()


def test_console_over_a_tcp_socket(tmp_path: Path) -> None:
    """The same link through ``socket://`` (what ser2net offers in raw mode), bridged to the board's pty."""
    with console_board(tmp_path) as sim:
        server = socket.create_server(("127.0.0.1", 0))
        bridge = TcpBridge(server, sim.port)
        bridge.start()
        try:
            link = ConsoleLink(f"socket://127.0.0.1:{server.getsockname()[1]}", baud=1500000,
                               capture=tmp_path / "tcp.log", password="rockchip")
            with link:
                assert sim.power_on()
                link.login(timeout=20)
                assert link.run("cat /etc/hostname", timeout=10).stdout == "rv1126\n"
        finally:
            bridge.stop()
            server.close()
    assert b"Galcore version" in (tmp_path / "tcp.log").read_bytes()


class TcpBridge(threading.Thread):
    """A minimal ser2net: one TCP client <-> the pty slave, byte for byte."""

    def __init__(self, server: socket.socket, port_path: str) -> None:
        super().__init__(daemon=True)
        self.server, self.port_path, self.done = server, port_path, threading.Event()

    def run(self) -> None:
        self.server.settimeout(10)
        conn, _ = self.server.accept()
        fd = os.open(self.port_path, os.O_RDWR | os.O_NOCTTY)
        try:
            while not self.done.is_set():
                ready, _, _ = select.select([conn, fd], [], [], 0.1)
                if conn in ready:
                    data = conn.recv(65536)
                    if not data:
                        return
                    os.write(fd, data)
                if fd in ready:
                    conn.sendall(os.read(fd, 65536))
        finally:
            os.close(fd)
            conn.close()

    def stop(self) -> None:
        self.done.set()
        self.join(timeout=5)
