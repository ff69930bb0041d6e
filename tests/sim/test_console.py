"""The simulated board's serial console, driven the way a lab PC drives a UART: pyserial on the pty's slave.

Everything is real: a kernel pty at 1500000 baud in raw mode, a board root with busybox, the login shell in
its own namespaces on its own pty. The tests read raw bytes, so they check what goes over the line exactly.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import serial
from support.console import console_board

from harness.sim import bootlog
from harness.sim.console import Console
from harness.sim.context import BoardContext
from harness.sim.kernel import Kernel

BAUD = 1500000


@dataclass
class Board:
    ctx: BoardContext
    console: Console
    kernel: Kernel
    port: serial.Serial


@contextmanager
def board(tmp_path: Path, *faults: str) -> Iterator[Board]:
    """A powered-on rv1126 whose console is open in pyserial before the boot starts (nothing is missed)."""
    with console_board(tmp_path, *faults) as sim:
        port = serial.Serial(sim.port, BAUD, timeout=0.1)
        try:
            yield Board(sim.ctx, sim.console, sim.kernel, port)
        finally:
            port.close()


def read_until(port: serial.Serial, pattern: bytes, timeout: float = 10.0) -> bytes:
    """Bytes from the line up to and including the first match of ``pattern`` (regex); fails at the deadline."""
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data += port.read(port.in_waiting or 1)
        if re.search(pattern, data):
            return data
    pytest.fail(f"no {pattern!r} on the console within {timeout} s; got {data[-600:]!r}")


def read_for(port: serial.Serial, seconds: float) -> bytes:
    data = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        data += port.read(port.in_waiting or 1)
    return data


def wait_for_descendant(pid: int, comm: str, timeout: float = 10.0) -> int:
    """The host PID of a process named ``comm`` started (at any depth) by ``pid``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        family, found = {pid}, True
        while found:
            found = False
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit() or int(entry.name) in family:
                    continue
                try:
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                    name = (entry / "comm").read_text().strip()
                except OSError:
                    continue
                if int(fields[1]) in family:
                    if name == comm:
                        return int(entry.name)
                    family.add(int(entry.name))
                    found = True
        time.sleep(0.05)
    pytest.fail(f"no {comm} process under pid {pid} within {timeout} s")


def boot(b: Board) -> bool:
    return b.console.boot(bootlog.kernel_lines(b.ctx.profile, b.ctx.profile.versions.driver), pace=0.3)


def log_in_as_root(b: Board) -> None:
    """Serve login on a booted board and log in as root, up to the shell's first prompt."""
    b.console.serve_login()
    read_until(b.port, rb"login: $")
    b.port.write(b"root\nrockchip\n")
    read_until(b.port, rb"\]# ")


def test_boot_log_reaches_the_login_prompt(tmp_path: Path) -> None:
    with board(tmp_path) as b:
        assert boot(b) is True
        b.console.serve_login()
        out = read_until(b.port, rb"rv1126 login: $")
    text = out.decode()
    assert "U-Boot 2017.09" in text
    assert "[    1.540631] Galcore version 6.4.6.5.351518\r\n" in text
    assert "Starting rknn_server: OK\r\n" in text
    assert text.index("U-Boot") < text.index("Booting Linux") < text.index("Galcore") < text.index("login:")
    assert "\n" not in text.replace("\r\n", ""), "every newline goes out as CRLF, as from a real tty"


def test_login_echoes_the_user_not_the_password_and_runs_a_real_shell(tmp_path: Path) -> None:
    with board(tmp_path) as b:
        assert boot(b)
        b.console.serve_login()
        read_until(b.port, rb"login: $")
        b.port.write(b"rooz\x7ft\r\n")  # a typo fixed with backspace; CRLF counts as one Enter
        echo = read_until(b.port, rb"Password: $")
        assert echo.startswith(b"rooz\b \bt\r\n")
        b.port.write(b"rockchip\r")
        after = read_until(b.port, rb"\[root@rv1126:~\]# ")
        assert b"rockchip" not in after
        b.port.write(b"echo $((6*7)); cat /etc/hostname\r")
        out = read_until(b.port, rb"rv1126\r\n\[root@rv1126:~\]# ")
        assert b"\r\n42\r\n" in out
        shell = b.console.shell
        assert shell is not None and shell.poll() is None
        b.port.write(b"exit\r")
        read_until(b.port, rb"rv1126 login: $")
        assert shell.wait(timeout=5) == 0


def test_wrong_password_is_refused_and_login_asked_again(tmp_path: Path) -> None:
    with board(tmp_path) as b:
        assert boot(b)
        b.console.serve_login()
        read_until(b.port, rb"login: $")
        b.port.write(b"root\nrk3588\n")
        out = read_until(b.port, rb"Login incorrect\r\n\r\nrv1126 login: $")
        assert b"[root@" not in out
        assert b.console.shell is None


def test_ctrl_c_interrupts_the_foreground_command(tmp_path: Path) -> None:
    with board(tmp_path) as b:
        assert boot(b)
        log_in_as_root(b)
        b.port.write(b"sleep 100; echo not-interrupted\n")
        read_until(b.port, rb"sleep 100; echo not-interrupted\r\n")
        assert b.console.shell is not None
        wait_for_descendant(b.console.shell.pid, "sleep")  # ^C typed before the fork would hit the shell
        b.port.write(b"\x03")
        out = read_until(b.port, rb"\^C\r\n\[root@rv1126:~\]# ")
        assert b"not-interrupted\r\n" not in out


def test_stop_kills_the_login_shell(tmp_path: Path) -> None:
    with board(tmp_path) as b:
        assert boot(b)
        log_in_as_root(b)
        shell = b.console.shell
        assert shell is not None and shell.poll() is None
        b.console.stop()
        assert shell.poll() is not None
        assert not Path(f"/proc/{shell.pid}").exists()


def test_reboot_then_power_on_again_reaches_login(tmp_path: Path) -> None:
    with board(tmp_path) as b:
        assert boot(b)
        log_in_as_root(b)
        first_shell = b.console.shell
        b.console.write("[   42.000000] reboot: Restarting system\n")  # the kernel's last words, then power off
        b.console.stop()
        assert first_shell is not None and first_shell.poll() is not None
        assert boot(b)
        b.console.serve_login()
        out = read_until(b.port, rb"rv1126 login: $")
    assert b"reboot: Restarting system\r\n" in out
    assert out.index(b"Restarting system") < out.index(b"U-Boot 2017.09") < out.index(b"login:")


def test_kernel_messages_and_concurrent_writes_arrive_whole(tmp_path: Path) -> None:
    with board(tmp_path) as b:
        b.kernel.start_server()
        read_until(b.port, rb"start rknn server, version:1\.7\.1\r\n")
        lines = {f"writer{w}-{i:04d}-" + "x" * 60 for w in range(4) for i in range(300)}

        def writer(w: int) -> None:
            for i in range(300):
                b.console.write(f"writer{w}-{i:04d}-" + "x" * 60 + "\n")

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        out = b""
        deadline = time.monotonic() + 30
        while out.count(b"\r\n") < len(lines) and time.monotonic() < deadline:
            out += b.port.read(b.port.in_waiting or 1)
        for t in threads:
            t.join(timeout=10)
    got = out.decode().split("\r\n")[:-1]
    assert len(got) == len(lines) and set(got) == lines


def test_panic_at_boot_prints_the_vfs_panic_and_stops(tmp_path: Path) -> None:
    with board(tmp_path, "panic-at-boot") as b:
        assert boot(b) is False
        out = read_until(b.port, rb"---\[ end Kernel panic - not syncing: .*\]---\r\n")
        out += read_for(b.port, 0.5)
    text = out.decode()
    assert "Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(179,7)" in text
    assert "Not tainted 4.19.111 #1" in text
    assert "login:" not in text and "Galcore" not in text


def test_boot_hang_stops_after_the_npu_driver(tmp_path: Path) -> None:
    with board(tmp_path, "boot-hang") as b:
        assert boot(b) is False
        out = read_until(b.port, rb"Galcore version 6\.4\.6\.5\.351518\r\n")
        out += read_for(b.port, 0.5)
    assert b"Freeing unused kernel memory" not in out and b"login:" not in out
