"""Board locks: one run at a time on a board, across users and processes of a lab host (or a labgrid place).

Why ``fcntl.flock`` on ``<lock dir>/<board>.lock``: the kernel drops the lock when the holding process dies,
even by ``kill -9`` or a power cut of the runner, so there is never a stale lock to clean up by hand (a PID file
would need liveness guessing). The holder writes who it is (user, host, pid, run id, since) into the lock file
after acquiring, so a run that finds the board busy can say whom to ask instead of just "locked".

The lock dir is shared by every user of the host: created ``0o1777`` (like /tmp) with lock files ``0o666``.
In such a sticky world-writable dir Linux (``fs.protected_regular``) refuses ``O_CREAT`` opens of another
user's file, so an existing lock file is opened without ``O_CREAT``, and a new one is created with ``O_EXCL``.

A simulated board is named within its simulator home (two homes may each run ``sim-rv1126``), so without an
explicit ``--lock-dir`` / ``NPU_HIL_LOCK_DIR`` its lock lives in ``$NPU_HIL_SIM_HOME/.locks``.
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import getpass
import json
import os
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from harness.errors import BoardBusy, BoardError, ConfigError

if TYPE_CHECKING:
    from harness.config.loader import Inventory
    from harness.config.models import BoardSpec

LOCK_DIR_ENV = "NPU_HIL_LOCK_DIR"
DEFAULT_LOCK_DIR = Path("/tmp/npu-hil-locks")
POLL_S = 0.05


class BoardLock(Protocol):
    """What a run holds while it uses a board: a file lock on this host, or a labgrid place."""

    def check(self) -> None:
        """Fast pre-flight (bounded time) before any test: ConfigError / BoardError with a one-line reason."""

    def acquire(self, wait: float) -> None:
        """Hold the board; raise BoardBusy naming the holder when it is still held after ``wait`` seconds."""

    def release(self) -> None:
        """Let the board go (idempotent)."""


def lock_dir_for(spec: BoardSpec | None = None, configured: str | Path | None = None) -> Path:
    """The lock dir: ``configured`` (--lock-dir), else $NPU_HIL_LOCK_DIR, else the simulator home's ``.locks``
    for a simulated board, else /tmp/npu-hil-locks."""
    if configured:
        return Path(configured)
    if os.environ.get(LOCK_DIR_ENV):
        return Path(os.environ[LOCK_DIR_ENV])
    if spec is not None and spec.is_simulated:
        from harness.sim import state

        return state.home() / ".locks"
    return DEFAULT_LOCK_DIR


def _iso_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container's random uid)
        return f"uid {os.getuid()}"


def describe_holder(holder: dict[str, Any] | None) -> str:
    """``alice on host lab1 (pid 1234, run R, since T)``, or a neutral phrase while the holder is unknown."""
    if not holder:
        return "another process (it has not written who it is yet)"
    return (f"{holder.get('user', '?')} on host {holder.get('host', '?')} (pid {holder.get('pid', '?')}, "
            f"run {holder.get('run_id') or '-'}, since {holder.get('since', '?')})")


class FileBoardLock:
    """``flock`` on ``<lock_dir>/<board>.lock``; see the module docstring for why."""

    def __init__(self, board: str, lock_dir: Path, *, run_id: str | None = None) -> None:
        self.board = board
        self.lock_dir = Path(lock_dir)
        self.path = self.lock_dir / f"{board}.lock"
        self.run_id = run_id
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    # -- files -----------------------------------------------------------------------------------------------
    def _ensure_dir(self) -> None:
        try:
            self.lock_dir.mkdir(parents=True, mode=0o1777)
        except FileExistsError:
            pass
        except OSError as exc:
            raise ConfigError(f"lock dir {self.lock_dir} cannot be created: {exc.strerror}",
                              fix=f"pass --lock-dir or set {LOCK_DIR_ENV} to a writable folder") from None
        else:
            os.chmod(self.lock_dir, 0o1777)  # mkdir's mode is cut by the umask; every user of the host locks here
        if not self.lock_dir.is_dir():
            raise ConfigError(f"lock dir {self.lock_dir} is not a folder",
                              fix=f"pass --lock-dir or set {LOCK_DIR_ENV} to a writable folder")

    def _open(self) -> int:
        """The lock file's descriptor (not inherited by children: a simulator must not keep the lock alive)."""
        self._ensure_dir()
        for _ in range(10):
            try:
                return os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
            except FileNotFoundError:
                pass
            except PermissionError:  # another user's file without write access: flock works read-only too
                try:
                    return os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
                except OSError as exc:
                    raise ConfigError(f"lock file {self.path} cannot be opened: {exc.strerror}") from None
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
            except FileExistsError:
                continue  # created by another process meanwhile: open it as an existing file
            except OSError as exc:
                raise ConfigError(f"lock file {self.path} cannot be created: {exc.strerror}",
                                  fix=f"pass --lock-dir or set {LOCK_DIR_ENV} to a writable folder") from None
            os.fchmod(fd, 0o666)
            return fd
        raise ConfigError(f"lock file {self.path} keeps appearing and vanishing: is something deleting it?")

    def read_holder(self) -> dict[str, Any] | None:
        """What the holder wrote into the lock file (None when empty, unreadable or half written)."""
        try:
            text = self.path.read_text(encoding="utf-8")
            data = json.loads(text) if text.strip() else None
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _write_holder(self, fd: int) -> None:
        holder = {"user": _user(), "host": socket.gethostname(), "pid": os.getpid(), "run_id": self.run_id,
                  "board": self.board, "since": _iso_now()}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        except OSError:  # a read-only descriptor (another user's file): the lock holds, only the note is missing
            pass

    # -- BoardLock ---------------------------------------------------------------------------------------------
    def check(self) -> None:
        """The lock dir and file are usable (a busy board is not an error here: acquire may wait for it)."""
        os.close(self._open())

    def acquire(self, wait: float = 0.0) -> None:
        if self._fd is not None:
            return
        fd = self._open()
        deadline = time.monotonic() + max(0.0, wait)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if self._still_linked(fd):
                    break
                # the file was deleted or replaced (a /tmp cleaner, a hand rm) while we waited: a lock on the
                # orphaned inode would not exclude the next run, so lock the file that is there now
                os.close(fd)
                fd = self._open()
                continue
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise BoardError(f"board {self.board}: locking {self.path} failed: {exc.strerror}") from None
            if time.monotonic() >= deadline:
                holder = self.read_holder()
                os.close(fd)
                raise BoardBusy(f"board {self.board} is held by {describe_holder(holder)}; "
                                f"waited {wait:g} s (--board-wait)")
            time.sleep(POLL_S)
        self._write_holder(fd)
        self._fd = fd

    def _still_linked(self, fd: int) -> bool:
        """True while ``fd`` is the file at ``self.path`` (same inode): what another run would open and lock."""
        try:
            return os.fstat(fd).st_ino == os.stat(self.path).st_ino
        except OSError:
            return False

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)  # still ours: the next waiter must not read a holder that is gone
        except OSError:
            pass
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> FileBoardLock:  # noqa: PYI034 (a final class in practice)
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_for(spec: BoardSpec, inventory: Inventory, *, lock_dir: str | Path | None = None,
             run_id: str | None = None) -> BoardLock:
    """The lock of ``spec``: its labgrid place when it names one, else a file lock on this host."""
    if spec.is_place:  # a named place or a reservation by tags
        # lazy: labgrid is only imported for lab boards
        from harness.lab.labgrid.place import PlaceLock

        return PlaceLock(spec, inventory)
    return FileBoardLock(spec.name, lock_dir_for(spec, lock_dir), run_id=run_id)
