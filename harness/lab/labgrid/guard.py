"""Locks die with their holder: a labgrid place acquired by a run is released when that run dies, even by kill -9.

A labgrid place stays acquired until someone releases it; a crashed CI job would otherwise keep a board for
good. At acquire time the run starts this guard as a small separate process (its own session, so the Ctrl-C
of a terminal does not reach it) holding the read end of a pipe whose write end only the run has. The kernel
closes that write end whatever way the run ends, so the guard sees EOF at once (no polling, no pid reuse
risk) and runs ``labgrid-client release`` as the run's identity. A run that releases normally writes
``done`` first and the guard just exits. A release the holder already did is harmless: labgrid says "not
acquired"; and a place someone else took meanwhile is never released (labgrid refuses another user's place
without --kick, which the guard never passes).

    python -m harness.lab.labgrid.guard --fd N --coordinator H:P --place NAME --hostname H --username U
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from harness.errors import BoardError, HarnessError
from harness.lab.labgrid.client import LabgridClient

#: How long the guard keeps trying to release when the coordinator does not answer (it may be restarting).
RELEASE_RETRY_S = 60.0
START_TIMEOUT = 10.0


class ReleaseGuard:
    """The holder's side: start the guard after acquiring, ``dismiss`` it after releasing."""

    def __init__(self, client: LabgridClient, place: str, *, log: Path | None = None) -> None:
        self.client = client
        self.place = place
        self.log = log
        self._proc: subprocess.Popen | None = None
        self._write_fd: int | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> ReleaseGuard:
        """Start the guard and wait (bounded) until it says it is watching."""
        read_fd, write_fd = os.pipe()  # both ends close-on-exec: only the guard gets read_fd (pass_fds)
        root = str(Path(__file__).resolve().parents[3])
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
        argv = [sys.executable, "-m", "harness.lab.labgrid.guard", "--fd", str(read_fd),
                "--coordinator", self.client.coordinator, "--place", self.place,
                "--hostname", self.client.hostname, "--username", self.client.username]
        if self.log:
            argv += ["--log", str(self.log)]
        try:
            self._proc = subprocess.Popen(argv, pass_fds=(read_fd,), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                          stderr=subprocess.DEVNULL, start_new_session=True, env=env, cwd=root)
        finally:
            os.close(read_fd)
        self._write_fd = write_fd
        ready, _, _ = select.select([self._proc.stdout], [], [], START_TIMEOUT)
        line = self._proc.stdout.readline() if ready else b""
        if line.strip() != b"watching":
            self.dismiss()
            raise BoardError(f"place {self.place}: the release guard did not start within {START_TIMEOUT:g} s"
                             + (f" (see {self.log})" if self.log else ""))
        return self

    def dismiss(self, timeout: float = 5.0) -> None:
        """The holder released the place itself: tell the guard to stand down and reap it (idempotent)."""
        if self._write_fd is not None:
            try:
                os.write(self._write_fd, b"done\n")
            except OSError:
                pass  # the guard is already gone
            os.close(self._write_fd)
            self._write_fd = None
        if self._proc is not None:
            try:
                self._proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()  # by its own pid: ours, a child of this process
                self._proc.wait(timeout=timeout)
            if self._proc.stdout:
                self._proc.stdout.close()
            self._proc = None


    def abandon(self) -> None:
        """The holder could not release (coordinator unreachable): close the pipe without ``done`` so the guard
        releases on its own, retrying for RELEASE_RETRY_S; it is not waited for."""
        if self._write_fd is not None:
            os.close(self._write_fd)
            self._write_fd = None


def _say(log: Path | None, text: str) -> None:
    if log:
        with open(log, "a") as out:
            out.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} guard {os.getpid()}: {text}\n")


def _release(client: LabgridClient, place: str, log: Path | None) -> int:
    deadline = time.monotonic() + RELEASE_RETRY_S
    while True:
        try:
            released = client.release(place)
            _say(log, f"released place {place}" if released else f"place {place} was not acquired")
            return 0
        except HarnessError as exc:
            _say(log, f"release of {place} failed: {exc}")
            if time.monotonic() >= deadline:
                return 1
            time.sleep(1.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.lab.labgrid.guard", description=__doc__)
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--coordinator", required=True)
    parser.add_argument("--place", required=True)
    parser.add_argument("--hostname", required=True)
    parser.add_argument("--username", required=True)
    parser.add_argument("--log", type=Path)
    args = parser.parse_args(argv)
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)  # a terminal's Ctrl-C / hang-up must not skip the release
    client = LabgridClient(args.coordinator, ident=(args.hostname, args.username))
    _say(args.log, f"watching place {args.place} for {client.me}")
    sys.stdout.write("watching\n")
    sys.stdout.flush()
    data = b""
    while True:
        chunk = os.read(args.fd, 64)
        if not chunk:
            break
        data += chunk
    if b"done" in data:
        _say(args.log, f"holder released place {args.place} itself")
        return 0
    _say(args.log, f"holder of place {args.place} is gone: releasing")
    return _release(client, args.place, args.log)


if __name__ == "__main__":
    sys.exit(main())
