"""adbd's shell and exec services: a board command behind an adb stream, over pipes or a pty.

Split from :mod:`harness.sim.adbd` so the daemon module keeps to connections and stream dispatch; this one owns
everything about board processes started for the host: how they are spawned (``BoardContext.spawn_shell``, busybox
in the board root), how their output becomes shell v1 bytes or v2 packets, how the host's input, end of input and
window size reach them, and how they are killed when their stream closes. An interactive shell gets its pty as the
controlling terminal, so job control works and Ctrl-C reaches the foreground job as on a real board.
"""

from __future__ import annotations

import os
import pty
import selectors
import subprocess
import threading

from harness.sim import adb_wire as wire
from harness.sim import board_exec
from harness.sim.adbd_stream import ServiceHost, Stream


class _ShellSession:
    """A board command behind a shell/exec stream: pipes (raw) or a pty, v1 (bare bytes) or v2 (packets)."""

    def __init__(self, daemon: ServiceHost, stream: Stream, command: str, *, v2: bool, use_pty: bool,
                 env: dict[str, str]) -> None:
        self.daemon, self.stream, self.command = daemon, stream, command
        self.v2, self.use_pty, self.env = v2, use_pty, env
        self.stdin_fd: int | None = None
        self.fds: list[int] = []

    def run(self) -> None:
        try:
            outputs = self._spawn()
        except OSError as exc:
            for fd in self.fds:
                os.close(fd)
            message = f"adbd: cannot start the board shell: {exc}\n".encode()
            if self.v2:  # exit 127, as a shell reports a command it cannot run
                message = wire.shell_packet(wire.SHELL_STDERR, message) + wire.shell_packet(wire.SHELL_EXIT, b"\x7f")
            self.stream.write(message)
            return
        proc = self.proc
        self.daemon.track_process(proc)
        self.stream.on_close(lambda: board_exec.kill(proc))
        feeder = threading.Thread(target=self._feed_input, name="adbd-stdin", daemon=True)
        feeder.start()
        try:
            self._pump_output(outputs)
            while proc.poll() is None and not self.stream.closed.is_set():
                try:
                    proc.wait(timeout=0.5)
                except subprocess.TimeoutExpired:
                    pass
            if self.v2 and proc.returncode is not None:
                code = proc.returncode if proc.returncode >= 0 else 128 - proc.returncode
                self.stream.write(wire.shell_packet(wire.SHELL_EXIT, bytes([code & 0xFF])))
        finally:
            self.stream.close()  # kills the process if still running, wakes the input feeder
            feeder.join(10)
            for fd in self.fds:
                os.close(fd)
            # The stream's close callback may still be reaping on another thread: untrack only a reaped
            # process, so process_ids() never forgets a command that is still dying.
            board_exec.kill(proc)
            self.daemon.untrack_process(proc)

    def _spawn(self) -> dict[int, int]:
        ctx = self.daemon.ctx
        if self.use_pty:
            master, slave = pty.openpty()
            self.fds.append(master)
            try:
                self.proc = ctx.spawn_shell(self.command or None, env=self.env, login=not self.command,
                                            controlling_tty=True, stdin=slave, stdout=slave, stderr=slave)
            finally:
                os.close(slave)
            self.stdin_fd = master
            return {master: wire.SHELL_STDOUT}
        # Raw with no command reads a script from stdin (``adb shell < script.sh``), non-interactively.
        self.proc = ctx.spawn_shell(self.command or "exec /bin/sh", env=self.env, stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE if self.v2 else subprocess.STDOUT)
        outputs = {os.dup(self.proc.stdout.fileno()): wire.SHELL_STDOUT}
        if self.v2:
            outputs[os.dup(self.proc.stderr.fileno())] = wire.SHELL_STDERR
        self.stdin_fd = os.dup(self.proc.stdin.fileno())
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        self.fds += [*outputs, self.stdin_fd]
        return outputs

    def _pump_output(self, outputs: dict[int, int]) -> None:
        chunk = self.stream.max_payload - (wire.SHELL_HEADER.size if self.v2 else 0)
        with selectors.DefaultSelector() as sel:
            for fd, packet_id in outputs.items():
                sel.register(fd, selectors.EVENT_READ, packet_id)
            while sel.get_map() and not self.stream.closed.is_set():
                for key, _ in sel.select(timeout=0.5):
                    try:
                        data = os.read(key.fd, chunk)
                    except OSError:  # EIO: every holder of the pty's slave side is gone
                        data = b""
                    if not data:
                        sel.unregister(key.fd)
                    elif self.v2:
                        self.stream.write(wire.shell_packet(key.data, data))
                    else:
                        self.stream.write(data)

    def _feed_input(self) -> None:
        pending = bytearray()
        while data := self.stream.read():
            if not self.v2:
                self._to_stdin(data)
                continue
            pending += data
            for packet_id, payload in wire.split_shell_packets(pending):
                if packet_id == wire.SHELL_STDIN:
                    self._to_stdin(payload)
                elif packet_id == wire.SHELL_CLOSE_STDIN and not self.use_pty and self.stdin_fd is not None:
                    self.fds.remove(self.stdin_fd)
                    os.close(self.stdin_fd)  # a pty cannot close only its input: adbd leaves it open too
                    self.stdin_fd = None
                elif packet_id == wire.SHELL_WINSIZE and self.use_pty:
                    size = wire.parse_winsize(payload)
                    if size:
                        board_exec.set_winsize(self.stdin_fd, *size)

    def _to_stdin(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view and self.stdin_fd is not None:
                view = view[os.write(self.stdin_fd, view):]
        except OSError:
            pass  # the command exited or closed its input: what it did not read is lost, as on a board


def shell_service(daemon: ServiceHost, stream: Stream, args: list[str], command: str) -> None:
    """``shell[,v2][,TERM=x][,raw|pty]:cmd``; like adbd, no command means a pty, a command means pipes."""
    terms = [a[5:] for a in args if a.startswith("TERM=")]
    env = {"TERM": terms[-1]} if terms else {}
    use_pty = "pty" in args or ("raw" not in args and not command)
    _ShellSession(daemon, stream, command, v2="v2" in args, use_pty=use_pty, env=env).run()


def exec_service(daemon: ServiceHost, stream: Stream, args: list[str], command: str) -> None:
    """``exec:cmd``: binary-clean output over pipes, stderr merged into it as adbd does."""
    _ShellSession(daemon, stream, command, v2=False, use_pty=False, env={}).run()
