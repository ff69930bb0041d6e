"""SFTP on the simulated board's own filesystem, for the board's SSH endpoint (:mod:`harness.sim.sshd`).

Every path a client sends is a *board* path; it is mapped through ``BoardContext.host_path`` (symlinks followed
as the board would, ``..`` stopping at the board's ``/``), so no SFTP request can touch a host file outside
the board root. A full /userdata (the ``userdata-full`` fault) fails writes with ENOSPC, which SFTP v3 reports
as a plain failure exactly as OpenSSH's sftp-server does. When the client ends the session (EOF on the
channel), the subsystem sends exit status 0 before closing, as OpenSSH's sshd does when sftp-server exits:
OpenSSH's ``scp`` (SFTP mode) reports ``Exit status -1`` and exits 1 without it.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import paramiko
from paramiko import SFTPAttributes, SFTPHandle, SFTPServer, SFTPServerInterface

from harness.sim.context import BoardContext
from harness.sim.rootpath import OutsideRoot

#: Where an SFTP session starts and relative paths are anchored, as on a board (root's home).
HOME = "/root"


class BoardSftpServer(SFTPServer):
    """paramiko's SFTP subsystem, plus the exit status a real sshd sends when its sftp-server ends."""

    def finish_subsystem(self) -> None:
        channel = self.sock
        if channel is not None and not channel.closed:
            try:
                channel.send_exit_status(0)
            except (OSError, EOFError, paramiko.SSHException):
                pass  # the client went away first
        super().finish_subsystem()


class _BoardFile(SFTPHandle):
    """An open board file; writes under /userdata fail with ENOSPC while the ``userdata-full`` fault is set."""

    def __init__(self, ctx: BoardContext, host: Path, fd: int, flags: int) -> None:
        super().__init__(flags)
        self.ctx, self.host = ctx, host
        mode = "rb"
        if flags & (os.O_WRONLY | os.O_RDWR):
            mode = ("ab" if flags & os.O_APPEND else "wb") if flags & os.O_WRONLY else (
                "a+b" if flags & os.O_APPEND else "r+b")
        f = os.fdopen(fd, mode)
        self.readfile = f
        self.writefile = f

    def write(self, offset, data):
        if data and self.ctx.userdata_full(self.host):
            return SFTPServer.convert_errno(errno.ENOSPC)
        return super().write(offset, data)

    def stat(self):
        try:
            return SFTPAttributes.from_stat(os.fstat(self.readfile.fileno()))
        except OSError as exc:
            return SFTPServer.convert_errno(exc.errno)

    def chattr(self, attr):
        return _apply_attr(self.host, attr)


def _apply_attr(host: Path, attr: SFTPAttributes) -> int:
    """chmod / utime / truncate; ownership is ignored (every board file belongs to the board's root)."""
    try:
        if attr._flags & attr.FLAG_PERMISSIONS:
            os.chmod(host, attr.st_mode & 0o7777)
        if attr._flags & attr.FLAG_AMTIME:
            os.utime(host, (attr.st_atime, attr.st_mtime))
        if attr._flags & attr.FLAG_SIZE:
            os.truncate(host, attr.st_size)
    except OSError as exc:
        return SFTPServer.convert_errno(exc.errno)
    return paramiko.SFTP_OK


def _mode(attr: SFTPAttributes | None, default: int) -> int:
    """The permissions a client asked for when creating a file or folder, else ``default`` (umask applies)."""
    if attr is not None and attr._flags & attr.FLAG_PERMISSIONS:
        return attr.st_mode & 0o7777
    return default


def _errors_to_status(method):
    """An OSError becomes its SFTP status; a path that cannot be mapped into the board is 'no such file'."""
    def wrapper(self, *args):
        try:
            return method(self, *args)
        except OSError as exc:
            return SFTPServer.convert_errno(exc.errno)
        except OutsideRoot:
            return paramiko.SFTP_NO_SUCH_FILE
    wrapper.__name__ = method.__name__
    wrapper.__doc__ = method.__doc__
    return wrapper


class BoardSftp(SFTPServerInterface):
    """SFTP on the board's own filesystem: board paths in, host paths inside the board root only."""

    def __init__(self, server: paramiko.ServerInterface, ctx: BoardContext, *args, **kwargs) -> None:
        super().__init__(server, *args, **kwargs)
        self.ctx = ctx

    def _board(self, path: str) -> str:
        return path if path.startswith("/") else f"{HOME}/{path}"

    def _host(self, path: str, *, follow_last: bool = True) -> Path:
        return self.ctx.host_path(self._board(path), follow_last=follow_last)

    def canonicalize(self, path: str) -> str:
        try:
            host = self._host(path)
        except OutsideRoot:
            return "/"
        rel = host.relative_to(self.ctx.root).as_posix()
        return "/" if rel == "." else "/" + rel

    @_errors_to_status
    def list_folder(self, path):
        host = self._host(path)
        return [SFTPAttributes.from_stat(os.lstat(host / name), name) for name in os.listdir(host)]

    @_errors_to_status
    def stat(self, path):
        return SFTPAttributes.from_stat(os.stat(self._host(path)))

    @_errors_to_status
    def lstat(self, path):
        return SFTPAttributes.from_stat(os.lstat(self._host(path, follow_last=False)))

    @_errors_to_status
    def open(self, path, flags, attr):
        host = self._host(path)
        fd = os.open(host, flags | os.O_NOFOLLOW, _mode(attr, 0o666))
        return _BoardFile(self.ctx, host, fd, flags)

    @_errors_to_status
    def remove(self, path):
        os.unlink(self._host(path, follow_last=False))
        return paramiko.SFTP_OK

    @_errors_to_status
    def rename(self, oldpath, newpath):
        new = self._host(newpath, follow_last=False)
        if new.exists() or new.is_symlink():
            return paramiko.SFTP_FAILURE  # SFTP v3 rename never replaces; posix_rename does
        os.rename(self._host(oldpath, follow_last=False), new)
        return paramiko.SFTP_OK

    @_errors_to_status
    def posix_rename(self, oldpath, newpath):
        os.replace(self._host(oldpath, follow_last=False), self._host(newpath, follow_last=False))
        return paramiko.SFTP_OK

    @_errors_to_status
    def mkdir(self, path, attr):
        os.mkdir(self._host(path, follow_last=False), _mode(attr, 0o777))
        return paramiko.SFTP_OK

    @_errors_to_status
    def rmdir(self, path):
        os.rmdir(self._host(path, follow_last=False))
        return paramiko.SFTP_OK

    @_errors_to_status
    def chattr(self, path, attr):
        return _apply_attr(self._host(path), attr)

    @_errors_to_status
    def readlink(self, path):
        return os.readlink(self._host(path, follow_last=False))

    @_errors_to_status
    def symlink(self, target_path, path):
        # The target is stored as the board would store it; it is resolved inside the root whenever used.
        os.symlink(target_path, self._host(path, follow_last=False))
        return paramiko.SFTP_OK
