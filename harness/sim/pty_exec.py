"""Board commands on a pty that the board can name: ``tty`` prints ``/dev/pts/N``, as over a real sshd.

Why: a command on a pty already gets it as its controlling terminal (:func:`harness.sim.board_exec.spawn` with
``controlling_tty``), so ``[ -t 0 ]`` and ^C work; but ``tty`` (``ttyname()`` in any program, ``ssh -t host
tty``) names the terminal by reading the link ``/proc/self/fd/0`` (or by finding its inode in ``/dev/pts``),
and the board has neither: its ``/proc`` is the simulated kernel's folder, and an unprivileged namespace
cannot mknod. So, in the command's own mount namespace only, before the chroot: a small tmpfs over the board's
``/dev/pts`` with the host's slave device bind-mounted under its own name, and a small tmpfs over
``/proc/self`` whose ``fd/0``, ``fd/1`` and ``fd/2`` link to it (what the real ``/proc/self/fd`` says for a
command on that pty). Nothing of it outlives the command or is seen by any other board process, and no other
host terminal is exposed. The board root keeps two empty folders as mount points, ``/dev/pts`` and
``/proc/self``.
"""

from __future__ import annotations

import os
import shlex
import subprocess

from harness.sim import board_exec
from harness.sim.context import BoardContext

_PTY_ENV = "NPU_HIL_BOARD_PTY"


def _bind_pty_script() -> str:
    """Shell run first in the board's entry script: ``$1`` is the host's mount, ``$4`` the board root."""
    mkdir, ln = (shlex.quote(board_exec._host_tool(t)) for t in ("mkdir", "ln"))  # noqa: SLF001
    return (
        f'pty=${_PTY_ENV}; unset {_PTY_ENV}; '
        'if [ -n "$pty" ]; then '
        '"$1" -t tmpfs -o mode=0755,size=64k board-pts "$4/dev/pts" && : > "$4$pty" && "$1" --bind "$pty" "$4$pty" '
        f'&& "$1" -t tmpfs -o mode=0755,size=64k board-self "$4/proc/self" && {mkdir} "$4/proc/self/fd" '
        f'&& for fd in 0 1 2; do {ln} -s "$pty" "$4/proc/self/fd/$fd" || exit 125; done '
        '|| exit 125; fi; '
    )


def spawn_on_pty(ctx: BoardContext, command: str | None, slave: int, *, term: str,
                 login: bool = False) -> subprocess.Popen:
    """Start ``command`` (None: an interactive shell) on the board with the pty ``slave`` as its stdin, stdout,
    stderr and controlling terminal, visible on the board as the same ``/dev/pts/N`` as on the host."""
    name = os.ttyname(slave)
    if not name.startswith("/dev/pts/") or "/" in name.removeprefix("/dev/pts/"):
        raise OSError(f"pty slave {name!r} is not under /dev/pts")
    for mount_point in ("dev/pts", "proc/self"):  # the board's own folders stay empty
        (ctx.root / mount_point).mkdir(exist_ok=True)
    argv = board_exec.shell_argv(ctx.root, command, login=login)
    script = argv.index("-c") + 1  # the entry script that binds the devices and chroots
    argv[script] = _bind_pty_script() + argv[script]
    env = {**board_exec.BOARD_ENV, "TERM": term, _PTY_ENV: name}
    # the same pre-exec hook as every controlling-tty board shell: die with the simulator, setsid, TIOCSCTTY
    return subprocess.Popen(argv, env=env, preexec_fn=board_exec._die_with_parent_on_tty,  # noqa: SLF001
                            stdin=slave, stdout=slave, stderr=slave)
