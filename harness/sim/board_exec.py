"""Run a command *on* a simulated board: busybox ``sh`` with the board's folder as ``/``.

Isolation is ``unshare`` from util-linux: a user namespace (root inside, whoever we are outside), a mount
namespace (to bind the host's /dev/null, /dev/zero, /dev/urandom, /dev/random, /dev/tty over empty files in
the board's /dev, since an unprivileged namespace cannot mknod), a PID namespace whose init is the board shell
(``--kill-child``: when the command ends or is killed, everything it started dies with it), then ``chroot``.
We chose unshare over bubblewrap/proot because it is already on every Debian machine, needs no setuid helper,
costs ~15 ms a command, and its chroot leaves no absolute path that reaches the host's files.
"""

from __future__ import annotations

import ctypes
import fcntl
import logging
import os
import shutil
import signal
import struct
import subprocess
import termios
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: Device nodes bound from the host into the board's /dev (they must exist as files in the board root).
BOUND_DEVICES = ("null", "zero", "random", "urandom", "tty")

#: The board's environment: nothing of the host's leaks in.
BOARD_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
    "HOME": "/root",
    "USER": "root",
    "LOGNAME": "root",
    "SHELL": "/bin/sh",
    "TERM": "vt100",
}

# Runs as host /bin/sh inside the new namespaces; host tools come as absolute paths ($1-$3) so the board's
# PATH never includes the host's.
_ENTER = (
    'mount=$1 chroot=$2 hostname=$3 root=$4; shift 4; '
    'for d in ' + " ".join(BOUND_DEVICES) + '; do "$mount" --bind "/dev/$d" "$root/dev/$d" || exit 125; done; '
    'read -r name < "$root/etc/hostname" && "$hostname" "$name"; '
    'exec "$chroot" "$root" "$@"'
)


def _host_tool(name: str) -> str:
    for folder in ("/usr/bin", "/bin", "/usr/sbin", "/sbin"):
        if os.access(f"{folder}/{name}", os.X_OK):
            return f"{folder}/{name}"
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} not found on the host (util-linux / coreutils / hostname)")
    return found

_PR_SET_PDEATHSIG = 1


def board_argv(root: Path, argv: list[str]) -> list[str]:
    """The host argv that runs ``argv`` (a board path and its arguments) inside the board ``root``."""
    return [
        _host_tool("unshare"), "--user", "--map-root-user", "--mount", "--pid", "--uts", "--fork",
        "--kill-child=SIGKILL", "--", "/bin/sh", "-c", _ENTER, "board-enter",
        _host_tool("mount"), _host_tool("chroot"), _host_tool("hostname"), str(root), *argv,
    ]


def shell_argv(root: Path, command: str | None, *, login: bool = False) -> list[str]:
    """argv for busybox ``sh -c command`` on the board, or an interactive (login) shell when command is None."""
    if command is None:
        return board_argv(root, ["/bin/sh", "-l"] if login else ["/bin/sh", "-i"])
    return board_argv(root, ["/bin/sh", "-c", f"cd /root 2>/dev/null || cd /; {command}"])


def _die_with_parent() -> None:
    """Runs in the child before exec: if the simulator dies, so does every board command (no orphans).

    Note PR_SET_PDEATHSIG fires when the *thread* that started the child exits: start long-lived board
    processes from threads that live as long as they should.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _die_with_parent_on_tty() -> None:
    """As _die_with_parent, and make stdin (a pty) the controlling terminal, so Ctrl-C reaches the foreground job."""
    _die_with_parent()
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def spawn(root: Path, command: str | None, *, env: dict[str, str] | None = None, login: bool = False,
          controlling_tty: bool = False, **popen_kwargs: Any) -> subprocess.Popen:
    """Start a board shell running ``command``; extra ``env`` is added to the board's clean environment.

    ``controlling_tty``: stdin is a pty that becomes the shell's controlling terminal (console, adb/ssh pty).
    """
    board_env = dict(BOARD_ENV)
    if env:
        board_env.update(env)
    if controlling_tty:
        popen_kwargs.pop("start_new_session", None)  # setsid happens in the pre-exec hook
    return subprocess.Popen(shell_argv(root, command, login=login), env=board_env,
                            preexec_fn=_die_with_parent_on_tty if controlling_tty else _die_with_parent,
                            **popen_kwargs)


def kill(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """Kill a board command by its Popen handle and reap it: unshare's ``--kill-child`` takes the board's whole
    PID namespace (every descendant) with it, so nothing it started survives."""
    if proc.poll() is None:
        try:
            proc.kill()
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        log.error("board process %d did not die after SIGKILL", proc.pid)


def set_winsize(fd: int, rows: int, cols: int, xpixels: int = 0, ypixels: int = 0) -> None:
    """Set a pty's window size (``stty size`` on the board); 0 rows or columns means the usual 24x80."""
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows or 24, cols or 80, xpixels, ypixels))


def run(root: Path, command: str, *, timeout: float = 30.0, env: dict[str, str] | None = None,
        input: bytes | None = None) -> subprocess.CompletedProcess:
    """Run ``command`` on the board to completion (used by the simulator's own boot scripts and tests)."""
    proc = spawn(root, command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(input=input, timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
