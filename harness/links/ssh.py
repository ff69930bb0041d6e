"""The harness's ssh link: commands and file transfers to a board over SSH (paramiko client).

Host keys are checked the way OpenSSH's ``StrictHostKeyChecking`` does, because a lab board answering with a
different key usually means a reflashed board or the wrong IP: "strict" refuses unknown hosts, "accept-new"
records unknown hosts but still refuses a CHANGED key, "insecure" accepts anything (and says so once).
Transfers go to a temporary name beside the target and are renamed only after a size check, so a cut
transfer never leaves a truncated file where a test expects a good one.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, Literal

import paramiko

from harness.errors import BoardError, ConfigError, LinkDown, LinkTimeout
from harness.links.base import ShellResult

HostKeyPolicy = Literal["strict", "accept-new", "insecure"]
POLICIES = ("strict", "accept-new", "insecure")
DEFAULT_KNOWN_HOSTS = Path("~/.ssh/known_hosts")
Progress = Callable[[int, int], None]
#: paramiko's transport logs (tracebacks included) go here; the NullHandler keeps them off stderr unless the
#: application configured logging.
TRANSPORT_LOG = "harness.links.ssh.transport"
logging.getLogger(TRANSPORT_LOG).addHandler(logging.NullHandler())


class _AcceptNew(paramiko.MissingHostKeyPolicy):
    """Record an unknown host's key in the known_hosts file; paramiko itself refuses a changed one."""

    def __init__(self, known_hosts: Path, log: logging.Logger) -> None:
        self.known_hosts, self.log = known_hosts, log

    def missing_host_key(self, client, hostname, key) -> None:
        client.get_host_keys().add(hostname, key.get_name(), key)
        self.known_hosts.parent.mkdir(parents=True, exist_ok=True)
        client.save_host_keys(str(self.known_hosts))
        self.log.info("ssh: recorded new host key %s %s for %s in %s", key.get_name(),
                      key.fingerprint, hostname, self.known_hosts)


class _Insecure(paramiko.MissingHostKeyPolicy):
    """Accept any host key, warning once per link: for throwaway lab setups only."""

    def __init__(self, log: logging.Logger) -> None:
        self.log, self.warned = log, False

    def missing_host_key(self, client, hostname, key) -> None:
        if not self.warned:
            self.log.warning("ssh: host key of %s NOT checked (host_key_policy = \"insecure\")", hostname)
            self.warned = True


class SshLink:
    """One SSH connection to a board; every call has a deadline and every exchange is logged."""

    def __init__(self, *, host: str, port: int = 22, user: str = "root", password: str | None = None,
                 key_filename: str | Path | None = None, host_key_policy: HostKeyPolicy = "strict",
                 known_hosts: Path | None = None, connect_timeout: float = 10.0,
                 log: logging.Logger | None = None, name: str = "ssh") -> None:
        if host_key_policy not in POLICIES:
            raise ConfigError(f"unknown host_key_policy {host_key_policy!r}; use one of {', '.join(POLICIES)}")
        self.host, self.port, self.user = host, port, user
        self.password = password
        self.key_filename = str(key_filename) if key_filename is not None else None
        self.host_key_policy = host_key_policy
        self.known_hosts = Path(known_hosts if known_hosts is not None else DEFAULT_KNOWN_HOSTS).expanduser()
        self.connect_timeout = connect_timeout
        self.log = log or logging.getLogger(f"harness.links.{name}")
        self.name = name
        self._client: paramiko.SSHClient | None = None
        self._insecure = _Insecure(self.log)

    @property
    def target(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"

    # -- connection ---------------------------------------------------------------------------------------
    def connect(self) -> None:
        """Open the connection (LinkDown with a one-line cause if the board cannot be reached or logged into)."""
        self.close()
        client = paramiko.SSHClient()
        client.set_log_channel(TRANSPORT_LOG)
        if self.host_key_policy == "insecure":
            client.set_missing_host_key_policy(self._insecure)
        else:
            if self.known_hosts.is_file():
                client.load_host_keys(str(self.known_hosts))
            client.set_missing_host_key_policy(
                _AcceptNew(self.known_hosts, self.log) if self.host_key_policy == "accept-new"
                else paramiko.RejectPolicy())
        start = time.monotonic()
        no_secret = self.password is None and self.key_filename is None
        try:
            # Our own socket, for TCP_NODELAY: otherwise Nagle + delayed ACK add ~40 ms to each command.
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            client.connect(self.host, port=self.port, sock=sock, username=self.user, password=self.password,
                           key_filename=self.key_filename, timeout=self.connect_timeout,
                           banner_timeout=self.connect_timeout, auth_timeout=self.connect_timeout,
                           channel_timeout=self.connect_timeout, allow_agent=no_secret, look_for_keys=no_secret)
        except Exception as exc:  # noqa: BLE001 - every cause becomes one LinkDown line
            transport = client.get_transport()
            exc = (transport.get_exception() if transport else None) or exc  # the root cause, if paramiko kept it
            client.close()
            raise self._connect_error(exc) from None
        self._client = client
        self.log.info("ssh %s: connected in %.3fs", self.target, time.monotonic() - start)

    def _connect_error(self, exc: Exception) -> LinkDown:
        where = f"ssh {self.target}"
        if isinstance(exc, paramiko.BadHostKeyException):
            return LinkDown(f"{where}: host key CHANGED (got {exc.key.get_name()} {exc.key.fingerprint})",
                            fix=f"if the board was reflashed, remove its old line from {self.known_hosts}")
        if isinstance(exc, paramiko.AuthenticationException):
            return LinkDown(f"{where}: authentication failed ({exc})",
                            fix="check password / key_filename for this board in boards.toml")
        if isinstance(exc, paramiko.SSHException) and "not found in known_hosts" in str(exc):
            return LinkDown(f"{where}: unknown host key (host_key_policy is strict)",
                            fix=f"add the board's key to {self.known_hosts} or set host_key_policy = "
                                '"accept-new" in boards.toml')
        if isinstance(exc, paramiko.SSHException) and ("banner" in str(exc) or "No existing session" in str(exc)):
            if isinstance(exc.__context__, EOFError):
                return LinkDown(f"{where}: the port closed the connection before any SSH banner (no ssh server?)")
            return LinkDown(f"{where}: no SSH answer within {self.connect_timeout:g}s (port open, no ssh server?)")
        if isinstance(exc, (socket.timeout, TimeoutError)):
            return LinkDown(f"{where}: no answer within {self.connect_timeout:g}s")
        if isinstance(exc, ConnectionRefusedError):
            return LinkDown(f"{where}: connection refused (no ssh server on that port)")
        if isinstance(exc, socket.gaierror):
            return LinkDown(f"{where}: cannot resolve {self.host!r} ({exc.strerror})",
                            fix="check the board's host in boards.toml")
        if isinstance(exc, OSError) and exc.strerror:
            return LinkDown(f"{where}: cannot connect ({exc.strerror})")
        return LinkDown(f"{where}: {type(exc).__name__}: {exc}".splitlines()[0])

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def is_alive(self) -> bool:
        """True when the connection answers: a session channel is opened and closed within connect_timeout."""
        transport = self._client.get_transport() if self._client else None
        if transport is None or not transport.is_active():
            return False
        try:
            transport.open_session(timeout=self.connect_timeout).close()
        except Exception:  # noqa: BLE001 - any failure means not alive
            return False
        return True

    def _transport(self) -> paramiko.Transport:
        if self._client is None:
            self.connect()
        transport = self._client.get_transport()
        if transport is None or not transport.is_active():
            self.connect()  # one reconnect: a board that rebooted since the last call is normal
            transport = self._client.get_transport()
        return transport

    def _channel(self, timeout: float) -> paramiko.Channel:
        try:
            return self._transport().open_session(timeout=min(timeout, self.connect_timeout))
        except LinkDown:
            raise
        except Exception as exc:  # noqa: BLE001
            raise LinkDown(f"ssh {self.target}: cannot open a channel ({exc or type(exc).__name__})") from None

    # -- commands -----------------------------------------------------------------------------------------
    def shell(self, command: str, timeout: float) -> ShellResult:
        """Run ``command`` on the board; stdout and stderr apart, the exit status, a hard deadline."""
        start = time.monotonic()
        channel = self._channel(timeout)
        watchdog, fired = _watchdog(channel, timeout)
        out: list[bytes] = []
        err: list[bytes] = []
        readers = [threading.Thread(target=_drain, args=(channel.recv, out), daemon=True),
                   threading.Thread(target=_drain, args=(channel.recv_stderr, err), daemon=True)]
        code, timed_out = -1, True
        try:
            channel.exec_command(command)
            channel.shutdown_write()  # like `ssh host cmd </dev/null`: a command reading stdin sees EOF
            for reader in readers:
                reader.start()
            finished = channel.status_event.wait(max(0.0, start + timeout - time.monotonic()))
            for reader in readers:
                reader.join(max(0.0, start + timeout - time.monotonic()))
            # Decided before the channel is closed below (closing ends the readers and sets status_event).
            timed_out = fired.is_set() or not finished or any(r.is_alive() for r in readers)
            code = channel.exit_status
        except (paramiko.SSHException, OSError, EOFError) as exc:
            if not fired.is_set():
                raise LinkDown(f"ssh {self.target}: {exc} while running {command!r}") from None
        finally:
            watchdog.cancel()
            channel.close()  # on a timeout, this is what makes the board kill the command
        if timed_out:
            self.log.warning("ssh %s: %r timed out after %gs", self.target, command, timeout)
            raise LinkTimeout(f"ssh command {command!r} did not finish within {timeout:g}s")
        if code == -1 and not channel.get_transport().is_active():
            raise LinkDown(f"ssh {self.target}: connection lost while running {command!r}")
        result = ShellResult(command=command, stdout=b"".join(out).decode("utf-8", "replace"),
                             stderr=b"".join(err).decode("utf-8", "replace"), exit_code=code,
                             duration_s=time.monotonic() - start, link=self.name)
        self.log.info("ssh %s: %r -> exit %d in %.3fs", self.target, command, code, result.duration_s)
        return result

    # -- files --------------------------------------------------------------------------------------------
    def _sftp(self, timeout: float) -> tuple[paramiko.SFTPClient, threading.Timer, threading.Event]:
        """An SFTP session whose channel a watchdog closes at the deadline (every blocked call then fails)."""
        channel = self._channel(timeout)
        watchdog, fired = _watchdog(channel, timeout)
        try:
            channel.invoke_subsystem("sftp")
            return paramiko.SFTPClient(channel), watchdog, fired
        except Exception as exc:  # noqa: BLE001
            watchdog.cancel()
            channel.close()
            if fired.is_set():
                raise LinkTimeout(f"ssh {self.target}: SFTP did not start within {timeout:g}s") from None
            raise LinkDown(f"ssh {self.target}: SFTP unavailable ({exc or type(exc).__name__})") from None

    def push(self, local: Path, remote: str, *, progress: Progress | None = None, timeout: float) -> None:
        """Copy a host file to the board; the target appears only complete, or not at all."""
        local = Path(local)
        if not local.is_file():
            raise ConfigError(f"cannot push {local}: no such file")
        size = local.stat().st_size
        tmp = _temp_name(remote)
        start = time.monotonic()
        sftp, watchdog, fired = self._sftp(timeout)
        try:
            sftp.put(str(local), tmp, callback=progress, confirm=False)
            got = sftp.stat(tmp).st_size
            if got != size:
                raise BoardError(f"push {local} -> {remote}: the board kept {got} of {size} bytes (disk full?)")
            try:
                sftp.posix_rename(tmp, remote)
            except OSError:  # a server without posix-rename: replace in two steps
                _quiet(sftp.remove, remote)
                sftp.rename(tmp, remote)
        except Exception as exc:  # noqa: BLE001
            _quiet(sftp.remove, tmp)
            raise self._transfer_error("push", f"{local} -> {remote}", exc, fired, timeout) from None
        finally:
            watchdog.cancel()
            sftp.close()
        self._log_transfer("push", f"{local} -> {remote}", size, start)

    def pull(self, remote: str, local: Path, *, progress: Progress | None = None, timeout: float) -> None:
        """Copy a board file to the host; the local target appears only complete, or not at all."""
        local = Path(local)
        if not local.parent.is_dir():
            raise ConfigError(f"cannot pull into {local}: no such folder {local.parent}")
        tmp = local.with_name(f".{local.name}.part-{uuid.uuid4().hex[:8]}")
        start = time.monotonic()
        sftp, watchdog, fired = self._sftp(timeout)
        try:
            size = sftp.stat(remote).st_size
            sftp.get(remote, str(tmp), callback=progress)
            if tmp.stat().st_size != size:
                raise BoardError(f"pull {remote} -> {local}: got {tmp.stat().st_size} of {size} bytes")
            os.replace(tmp, local)
        except Exception as exc:  # noqa: BLE001
            tmp.unlink(missing_ok=True)
            raise self._transfer_error("pull", f"{remote} -> {local}", exc, fired, timeout) from None
        finally:
            watchdog.cancel()
            sftp.close()
        self._log_transfer("pull", f"{remote} -> {local}", size, start)

    def _transfer_error(self, verb: str, what: str, exc: Exception, fired: threading.Event,
                        timeout: float) -> Exception:
        self.log.warning("ssh %s: %s %s failed: %s", self.target, verb, what, exc)
        if fired.is_set():
            return LinkTimeout(f"ssh {verb} {what} did not finish within {timeout:g}s")
        if isinstance(exc, (BoardError, ConfigError)):
            return exc
        if isinstance(exc, FileNotFoundError) or getattr(exc, "errno", None) == 2:
            return BoardError(f"ssh {verb} {what}: no such file or folder on the board")
        transport = self._client.get_transport() if self._client else None
        if transport is None or not transport.is_active():
            return LinkDown(f"ssh {verb} {what}: connection lost")
        if verb == "push" and str(exc) == "Failure":  # SFTP v3 says no more for ENOSPC, EROFS, EIO...
            return BoardError(f"ssh push {what}: the board refused the write (no space left, or read-only?)")
        return BoardError(f"ssh {verb} {what} failed: {exc or type(exc).__name__}")

    def _log_transfer(self, verb: str, what: str, size: int, start: float) -> None:
        took = time.monotonic() - start
        self.log.info("ssh %s: %s %s, %d bytes in %.3fs (%.1f MiB/s)", self.target, verb, what, size, took,
                      size / max(took, 1e-6) / 2**20)

    def __enter__(self) -> "SshLink":
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _watchdog(channel: paramiko.Channel, timeout: float) -> tuple[threading.Timer, threading.Event]:
    """Close ``channel`` when ``timeout`` passes: that wakes every paramiko call blocked on it (hard deadline)."""
    fired = threading.Event()

    def expire() -> None:
        fired.set()
        try:
            channel.close()
        except Exception:  # noqa: BLE001 - a dead transport: the waiters are woken all the same
            pass

    timer = threading.Timer(timeout, expire)
    timer.daemon = True
    timer.start()
    return timer, fired


def _drain(recv: Callable[[int], bytes], into: list[bytes]) -> None:
    """Read one stream of a channel to its end (EOF or the channel closed)."""
    while True:
        try:
            data = recv(65536)
        except (OSError, EOFError):
            return
        if not data:
            return
        into.append(data)


def _temp_name(remote: str) -> str:
    """A name beside the target (same filesystem, so the final rename is atomic)."""
    folder, slash, name = remote.rpartition("/")
    return f"{folder}{slash}.{name}.part-{uuid.uuid4().hex[:8]}"


def _quiet(call: Callable, *args: object) -> None:
    try:
        call(*args)
    except Exception:  # noqa: BLE001 - best-effort cleanup
        pass
