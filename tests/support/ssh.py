"""SSH pieces for tests of the simulated board's SSH server and of the harness's ssh link.

Why: key login is tested with a fresh key per test run (never a key from the user's ~/.ssh), written in the
OpenSSH format that both paramiko and OpenSSH's ``ssh`` read; and the server under test always listens on a
loopback port of its own and reads the board's own ``/root/.ssh/authorized_keys``, as a real board's sshd does.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from harness.sim.context import BoardContext
from harness.sim.sshd import SshDaemon
from support.boards import board_context
from support.net import listen


def make_user_key(folder: Path, name: str) -> tuple[Path, str]:
    """An Ed25519 key pair written as OpenSSH files: (private key path, public key line without a comment)."""
    key = ed25519.Ed25519PrivateKey.generate()
    private = folder / name
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                          serialization.NoEncryption()))
    private.chmod(0o600)
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return private, public.decode()


def authorized_keys(ctx: BoardContext) -> Path:
    """The host path of the board's ``/root/.ssh/authorized_keys`` (its folder is created when missing)."""
    folder = ctx.root / "root" / ".ssh"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / "authorized_keys"


def start_ssh_daemon(ctx: BoardContext, host_key: Path, password: str, *, port: int = 0) -> SshDaemon:
    """A started SSH server for ``ctx`` on 127.0.0.1:``port`` (0: any free port); the caller stops it."""
    daemon = SshDaemon(ctx, listen(port), host_key_path=host_key, password=password,
                       authorized_keys=authorized_keys(ctx))
    daemon.start()
    return daemon


def keyed_board(base: Path, comment: str = "lab@host") -> dict:
    """A board filesystem under ``base`` whose root accepts a fresh Ed25519 user key:
    ``dict(base, root, ctx, key)`` with ``key`` the private key's path."""
    ctx = board_context(base)
    private, public = make_user_key(base, "id_ed25519")
    authorized_keys(ctx).write_text(f"{public} {comment}\n")
    return dict(base=base, root=ctx.root, ctx=ctx, key=private)
