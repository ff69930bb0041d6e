"""The simulated board's SSH endpoint: paramiko's own server in front of the board's busybox shell and files.

A real Rockchip board runs OpenSSH or dropbear; the harness's ssh link must meet the same protocol here, so
this is a real SSH server (key exchange, host key, password and public-key login, exec/shell channels, SFTP,
the legacy scp protocol of ``scp -O``, which the board has no binary for: :mod:`harness.sim.scpd`) built on
``paramiko.Transport`` rather than anything that short-cuts the wire. A command on a pty sees it as its
controlling terminal under its own name (:mod:`harness.sim.pty_exec`). Every board command runs via
``BoardContext.spawn_shell`` (busybox inside the board root) and every SFTP path is mapped through
``BoardContext.host_path``, so neither a command nor a path can reach the host's files.
"""

from __future__ import annotations

import base64
import hmac
import logging
import os
import socket
import subprocess
import threading
from pathlib import Path
from typing import Callable

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from harness.sim import board_exec, pty_exec, scpd
from harness.sim.context import BoardContext
from harness.sim.sftpd import BoardSftp, BoardSftpServer

log = logging.getLogger(__name__)

USER = "root"
_CHUNK = 65536


def load_or_create_host_key(path: Path) -> paramiko.PKey:
    """The board's host key; created (Ed25519, OpenSSH format) on first boot so it survives power cycles."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption())
        tmp = path.with_name(path.name + ".new")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
        os.replace(tmp, path)
    return paramiko.PKey.from_path(path)


def read_authorized_keys(path: Path | None) -> list[paramiko.PKey]:
    """Public keys from an OpenSSH ``authorized_keys`` file (options before the key type are skipped)."""
    if path is None or not Path(path).is_file():
        return []
    keys = []
    for line in Path(path).read_text().splitlines():
        fields = line.split()
        for i, field in enumerate(fields[:-1]):
            if field.startswith(("ssh-", "ecdsa-", "sk-")):
                try:
                    keys.append(paramiko.PKey.from_type_string(field, base64.b64decode(fields[i + 1])))
                except Exception:  # noqa: BLE001 - one bad line must not lock everyone out
                    log.warning("authorized_keys: skipping unreadable line %r", line[:60])
                break
    return keys


class _Channel:
    """What one session channel asked for before its exec/shell request (a pty, its size, its TERM)."""

    def __init__(self) -> None:
        self.pty: tuple[str, int, int] | None = None
        self.master: int | None = None


class _Server(paramiko.ServerInterface):
    """Decides logins and channel requests for one connection; the daemon runs what is granted."""

    def __init__(self, daemon: "SshDaemon") -> None:
        self.daemon = daemon
        self.channels: dict[int, _Channel] = {}

    def get_allowed_auths(self, username: str) -> str:
        return "publickey,password" if self.daemon.password else "publickey"

    def check_auth_password(self, username: str, password: str) -> int:
        expected = self.daemon.password
        if username == USER and expected and hmac.compare_digest(password.encode(), expected.encode()):
            return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        # paramiko verifies the signature itself; we only say whether this key may log in.
        if username == USER and any(k == key for k in read_authorized_keys(self.daemon.authorized_keys)):
            return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        if kind == "session":
            self.channels[chanid] = _Channel()
            return paramiko.OPEN_SUCCEEDED
        return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_pty_request(self, channel, term, width, height, pixelwidth, pixelheight, modes) -> bool:
        self.channels.setdefault(channel.get_id(), _Channel()).pty = (term or "vt100", width, height)
        return True

    def check_channel_window_change_request(self, channel, width, height, pixelwidth, pixelheight) -> bool:
        state = self.channels.get(channel.get_id())
        if state is None or state.master is None:
            return False
        board_exec.set_winsize(state.master, height, width)
        return True

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        text = command.decode("utf-8", "replace") if isinstance(command, bytes) else command
        self.daemon._start_session(channel, self.channels.setdefault(channel.get_id(), _Channel()), text)
        return True

    def check_channel_shell_request(self, channel: paramiko.Channel) -> bool:
        self.daemon._start_session(channel, self.channels.setdefault(channel.get_id(), _Channel()), None)
        return True


def _pump(read: Callable[[], bytes], send: Callable[[bytes], object]) -> None:
    """Copy until the source ends (EOF, or EIO on a pty whose shell left) or the channel is gone."""
    while True:
        try:
            data = read()
        except (OSError, ValueError):  # ValueError: the session ended and closed the file under us
            return
        if not data:
            return
        try:
            send(data)
        except (OSError, EOFError, ValueError):
            return


class SshDaemon:
    """SSH server of one simulated board, serving connections accepted on ``listener`` until ``stop()``."""

    def __init__(self, ctx: BoardContext, listener: socket.socket, *, host_key_path: Path, password: str,
                 authorized_keys: Path | None) -> None:
        self.ctx = ctx
        self.listener = listener
        self.password = password
        self.authorized_keys = authorized_keys
        self.host_key = load_or_create_host_key(host_key_path)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._transports: list[paramiko.Transport] = []
        self._procs: set[subprocess.Popen] = set()
        self._threads: list[threading.Thread] = []

    @property
    def port(self) -> int:
        return self.listener.getsockname()[1]

    def running_processes(self) -> list[int]:
        """PIDs of board processes started for clients and not yet ended (for tests and health checks)."""
        with self._lock:
            return [p.pid for p in self._procs if p.poll() is None]

    def start(self) -> None:
        self.listener.settimeout(0.25)  # so the accept loop notices stop() without racing a close()
        self._spawn_thread(self._accept_loop, "sshd-accept")

    def stop(self) -> None:
        """Refuse new clients, end every connection, kill every board process started for a client."""
        self._stopping.set()
        try:
            self.listener.close()
        except OSError:
            pass
        with self._lock:
            procs, transports = list(self._procs), list(self._transports)
        for proc in procs:
            board_exec.kill(proc)
        for transport in transports:
            transport.close()
        for thread in list(self._threads):
            if thread is not threading.current_thread():
                thread.join(timeout=5)

    def _spawn_thread(self, target: Callable, name: str, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                sock, _addr = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            sock.settimeout(None)
            # Without this, Nagle and delayed ACKs add ~40 ms to every small exchange (each command's exit).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._spawn_thread(self._serve, "sshd-conn", sock)

    def _serve(self, sock: socket.socket) -> None:
        transport = paramiko.Transport(sock)
        transport.set_log_channel(f"{__name__}.transport")
        transport.add_server_key(self.host_key)
        transport.set_subsystem_handler("sftp", BoardSftpServer, BoardSftp, self.ctx)
        with self._lock:
            if self._stopping.is_set():
                transport.close()
                return
            self._transports.append(transport)
        try:
            transport.start_server(server=_Server(self))
        except (paramiko.SSHException, EOFError, OSError) as exc:
            log.info("ssh handshake failed: %s", exc)
            transport.close()
        # paramiko's own thread carries the connection from here; forget it once it ends.
        if transport.is_alive():
            transport.join()
        with self._lock:
            if transport in self._transports:
                self._transports.remove(transport)

    def _start_session(self, channel: paramiko.Channel, state: _Channel, command: str | None) -> None:
        self._spawn_thread(self._run_session, "sshd-session", channel, state, command)

    def _run_session(self, channel: paramiko.Channel, state: _Channel, command: str | None) -> None:
        """Runs in its own thread, which outlives the board process (the process dies with its parent thread)."""
        scp = scpd.parse(command) if state.pty is None else None
        if scp is not None:  # the board has no scp binary: its sshd serves `scp -t` / `scp -f` itself
            self._run_scp(channel, scp)
            return
        try:
            if state.pty is not None:
                proc, pumps, feeder = self._spawn_on_pty(channel, state, command)
            else:
                proc, pumps, feeder = self._spawn_piped(channel, command)
        except OSError as exc:
            log.error("cannot start a board shell: %s", exc)
            try:
                channel.sendall_stderr(f"sshd: cannot start the board shell: {exc}\n".encode())
                channel.send_exit_status(255)
            except (OSError, EOFError, paramiko.SSHException):
                pass
            channel.close()
            return
        with self._lock:
            self._procs.add(proc)
        try:
            # A client that closes its channel (or drops the connection) ends the command: paramiko sets the
            # channel's status_event when it closes, on a server nothing else does.
            threading.Thread(target=_kill_when_closed, args=(channel, proc), daemon=True).start()
            proc.wait()
            for pump in pumps:
                pump.join(timeout=5)
            if not channel.closed:
                code = proc.returncode
                try:
                    channel.send_exit_status(code if code >= 0 else 128 - code)
                    channel.shutdown_write()
                except (OSError, EOFError, paramiko.SSHException):
                    pass  # the client went away meanwhile
        finally:
            with self._lock:
                self._procs.discard(proc)
            try:
                channel.close()  # ends the feeder (its recv returns b"")
            except (OSError, EOFError, paramiko.SSHException):
                pass  # the transport is already gone: the channel is as closed as it gets
            feeder.join(timeout=5)
            if state.master is not None and not feeder.is_alive():  # never close an fd someone may still use
                os.close(state.master)
                state.master = None
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()

    def _run_scp(self, channel: paramiko.Channel, request: scpd.ScpRequest) -> None:
        try:
            code = scpd.ScpSession(self.ctx, channel, request).run()
            if not channel.closed:
                channel.send_exit_status(code)
                channel.shutdown_write()
        except (OSError, EOFError, paramiko.SSHException):
            pass  # the client went away meanwhile
        finally:
            channel.close()

    def _spawn_piped(self, channel: paramiko.Channel, command: str | None):
        pipe = subprocess.PIPE
        proc = self.ctx.spawn_shell(command, login=command is None, stdin=pipe, stdout=pipe, stderr=pipe)
        out = threading.Thread(target=_pump, args=(lambda: os.read(proc.stdout.fileno(), _CHUNK), channel.sendall),
                               daemon=True)
        err = threading.Thread(target=_pump,
                               args=(lambda: os.read(proc.stderr.fileno(), _CHUNK), channel.sendall_stderr),
                               daemon=True)

        def feed() -> None:
            def write(data: bytes) -> None:
                proc.stdin.write(data)
                proc.stdin.flush()
            _pump(lambda: channel.recv(_CHUNK), write)
            try:
                proc.stdin.close()  # the client's EOF becomes the command's end of input
            except OSError:
                pass

        feeder = threading.Thread(target=feed, daemon=True)
        for t in (out, err, feeder):
            t.start()
        return proc, [out, err], feeder

    def _spawn_on_pty(self, channel: paramiko.Channel, state: _Channel, command: str | None):
        term, cols, rows = state.pty
        master, slave = os.openpty()
        try:
            board_exec.set_winsize(slave, rows, cols)
            # the pty becomes the controlling terminal of the shell or the command (job control, ^C, `tty`), as
            # sshd's session setup makes it for both
            proc = pty_exec.spawn_on_pty(self.ctx, command, slave, term=term, login=command is None)
        except OSError:
            os.close(master)
            raise
        finally:
            os.close(slave)
        state.master = master
        out = threading.Thread(target=_pump, args=(lambda: os.read(master, _CHUNK), channel.sendall), daemon=True)
        feeder = threading.Thread(target=_pump, args=(lambda: channel.recv(_CHUNK), lambda d: os.write(master, d)),
                                  daemon=True)
        out.start()
        feeder.start()
        return proc, [out], feeder


def _kill_when_closed(channel: paramiko.Channel, proc: subprocess.Popen) -> None:
    channel.status_event.wait()
    if proc.poll() is None:
        log.info("ssh channel closed: killing board process %d", proc.pid)
        board_exec.kill(proc)
