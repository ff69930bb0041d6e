"""The Board a test holds: one facade over its links, so a test says *what* to do, not over which wire.

``shell`` goes over the first healthy link in the board's order (adb, ssh, console by default) and falls back
when a link is down; a command that timed out is never silently re-run elsewhere (it may have had effects).
Transfers are verified by checksum on the board. Reboots are followed on every link until the board answers.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from harness.chips import Chip
from harness.errors import BoardError, HarnessError, LinkDown, LinkTimeout
from harness.links.base import ShellResult

_EVIDENCE_COUNTER = itertools.count()


class CommandLink(Protocol):
    def shell(self, command: str, timeout: float) -> ShellResult: ...
    def is_alive(self) -> bool: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class LinkCheck:
    """A suspect board's command links probed side by side: the ones that did not answer, and why."""

    problems: dict[str, str]
    links: tuple[str, ...]

    @property
    def every_link_down(self) -> bool:
        return bool(self.links) and set(self.links) <= set(self.problems)

    def diagnosis(self) -> str | None:
        """One sentence for a failure report, or None when every link answers."""
        if not self.problems:
            return None
        if self.every_link_down:
            return f"the board stopped answering on every link ({', '.join(self.problems)})"
        answering = [name for name in self.links if name not in self.problems]
        return f"links lost ({', '.join(self.problems)}) while {', '.join(answering)} still answer"


class Board:
    def __init__(self, *, name: str, chip: Chip, links: dict[str, Any], power: Any, link_order: list[str],
                 run_dir: Path, toolkit: str | None = None, command_timeout: float = 60.0,
                 boot_timeout: float = 120.0, simulated: bool = False, log: logging.Logger | None = None,
                 runner: str = "auto") -> None:
        self.name = name
        self.chip = chip
        self.links = links
        self.power = power
        self.link_order = [n for n in link_order if n in links] + [n for n in links if n not in link_order]
        self.run_dir = run_dir
        self.toolkit = toolkit
        self.command_timeout = command_timeout
        self.boot_timeout = boot_timeout
        self.simulated = simulated
        #: our runner on this board, "python" or "native": boards.toml's choice, or None until ``auto`` has probed
        #: the board (:func:`harness.npu.board_runner.kind_for`)
        self.runner_kind: str | None = None if runner == "auto" else runner
        self.log = log or logging.getLogger(f"npu-hil.board.{name}")
        self.history: list[ShellResult] = []
        self.broken: str | None = None
        #: Why a link failed during the last use (LinkDown, LinkTimeout): the next test checks the board's health
        #: and climbs the recovery ladder if it does not answer (:meth:`harness.session.RunSession.ensure_usable`).
        self.suspect: str | None = None
        #: The last check of a suspect board's links (:meth:`check_links`), kept until the ladder uses it: a board
        #: silent on every link is not asked again for evidence (each ask would wait out its own deadline).
        self.link_check: LinkCheck | None = None
        self.owns_simulator = False
        #: The last model run's step (:class:`harness.npu.verbose_log.Step`, set by run_package): what a rerun with
        #: the runtime's verbose log repeats after a failed NPU test
        self.last_npu_step: Any = None
        #: ``relink(name) -> link``: reopens a link that went down on the board's current address (a labgrid
        #: place's console moves to a new port when its exporter restarts); None: links are fixed.
        self.relink: Callable[[str], Any] | None = None

    def __repr__(self) -> str:
        return f"<Board {self.name} chip={self.chip.name} links={','.join(self.link_order)}>"

    @property
    def npu(self) -> str:
        return self.chip.npu

    @property
    def console(self) -> Any:
        return self.link("console")

    @property
    def adb(self) -> Any:
        return self.link("adb")

    @property
    def ssh(self) -> Any:
        return self.link("ssh")

    def has_link(self, name: str) -> bool:
        return name in self.links

    def link(self, name: str) -> Any:
        try:
            return self.links[name]
        except KeyError:
            raise BoardError(f"board {self.name} has no {name} link (configure it in boards.toml)") from None

    # -- commands ------------------------------------------------------------------------------------------
    def shell(self, command: str, timeout: float | None = None, *, link: str | None = None,
              check: bool = False) -> ShellResult:
        """Run ``command`` on the board; ``check`` raises BoardError on a non-zero exit."""
        self._refuse_if_broken()
        timeout = timeout or self.command_timeout
        order = [link] if link else self.command_links()
        errors = []
        for name in order:
            try:
                result = self._run_on(name, command, timeout)
            except LinkTimeout as exc:
                self.suspect = str(exc)
                raise
            except LinkDown as exc:
                errors.append(f"{name}: {exc}")
                self.log.warning("%s: %s link down, trying the next: %s", self.name, name, exc)
                continue
            self.history.append(result)
            if check and result.exit_code != 0:
                raise BoardError(f"{self.name}: `{command}` exited {result.exit_code}: "
                                 f"{(result.stderr or result.stdout).strip()[-500:]}")
            return result
        self.suspect = "every link is down: " + "; ".join(errors or ["no command link"])
        raise LinkDown(f"{self.name}: no link could run `{command}`: " + "; ".join(errors or ["no command link"]))

    def _run_on(self, name: str, command: str, timeout: float) -> ShellResult:
        link = self.link(name)
        try:
            return link.run(command, timeout) if name == "console" else link.shell(command, timeout)
        except LinkDown as exc:
            if self.relink is None:
                raise
            self.log.warning("%s: %s link down (%s): resolving its address again", self.name, name, exc)
        link = self._replace_link(name)
        return link.run(command, timeout) if name == "console" else link.shell(command, timeout)

    def _replace_link(self, name: str) -> Any:
        """Swap in the link ``relink`` reopens (its error becomes LinkDown, so shell() still falls back)."""
        assert self.relink is not None
        try:
            self.links[name].close()
        except Exception as exc:  # noqa: BLE001 - the old link is dead anyway
            self.log.debug("%s: closing the dead %s link: %s", self.name, name, exc)
        try:
            self.links[name] = self.relink(name)
        except HarnessError as exc:
            raise LinkDown(f"{name} link down and not back: {exc}") from None
        return self.links[name]

    def command_links(self) -> list[str]:
        return [n for n in self.link_order if n in ("adb", "ssh", "console")]

    def transfer_link(self) -> str:
        for name in self.link_order:
            if name in ("adb", "ssh"):
                return name
        raise BoardError(f"board {self.name} has no adb or ssh link to transfer files over")

    def push(self, local: Path | str, remote: str, *, timeout: float | None = None) -> None:
        """Copy a file to the board, verified by sha256 on the board."""
        self._refuse_if_broken()
        with self._watching_links():
            self.link(self.transfer_link()).push(Path(local), remote, timeout=timeout or self.command_timeout)

    def pull(self, remote: str, local: Path | str, *, timeout: float | None = None) -> None:
        self._refuse_if_broken()
        with self._watching_links():
            self.link(self.transfer_link()).pull(remote, Path(local), timeout=timeout or self.command_timeout)

    @contextlib.contextmanager
    def _watching_links(self) -> Iterator[None]:
        """A transfer whose link failed makes the board suspect (checked before the next test)."""
        try:
            yield
        except (LinkDown, LinkTimeout) as exc:
            self.suspect = str(exc)
            raise

    # -- life cycle ----------------------------------------------------------------------------------------
    def reboot(self, *, timeout: float | None = None) -> float:
        """Reboot from the board's side and wait until every link answers again; returns the seconds it took."""
        self._refuse_if_broken()
        started = time.monotonic()
        if "adb" in self.links:
            self.links["adb"].reboot()
        else:
            try:
                self.shell("reboot", timeout=10)
            except (LinkDown, LinkTimeout):
                pass  # the link dropping under a reboot is the expected outcome
        self.wait_ready(timeout=timeout)
        return time.monotonic() - started

    def power_cycle(self, *, timeout: float | None = None) -> None:
        self._refuse_if_broken()
        self.power.cycle()
        self.wait_ready(timeout=timeout)

    def wait_ready(self, *, timeout: float | None = None) -> None:
        """Wait (with one deadline for all) until the console gives a shell and adb and ssh answer."""
        self._refuse_if_broken()
        deadline = time.monotonic() + (timeout or self.boot_timeout)
        for name in self.link_order:
            remaining = max(1.0, deadline - time.monotonic())
            link = self.links[name]
            if name == "console":
                link.login(timeout=remaining)
            elif hasattr(link, "wait_ready"):
                link.wait_ready(timeout=remaining)
            else:
                self._reconnect(name, link, deadline)

    def _reconnect(self, name: str, link: Any, deadline: float) -> None:
        """Reconnect a link that has no wait of its own (ssh), retrying until the shared deadline."""
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                link.close()
                link.connect()
                return
            except HarnessError as exc:
                last = exc
                time.sleep(0.2)
        raise LinkTimeout(f"{self.name}: {name} did not come back before the deadline: {last}")

    def health(self, timeout: float = 15.0) -> dict[str, str | None]:
        """Each link's problem, or None when it answers (``true`` over it exits 0 within ``timeout``).

        The links are probed side by side, so a board silent on every link costs one ``timeout``, not three."""

        def probe(name: str) -> str | None:
            try:
                result = self._run_on(name, "true", timeout)
            except HarnessError as exc:
                return str(exc)
            return None if result.exit_code == 0 else f"`true` exited {result.exit_code}"

        names = self.command_links()
        with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
            return dict(zip(names, pool.map(probe, names)))

    def check_links(self, timeout: float) -> LinkCheck:
        """Probe every command link side by side (:meth:`health`) and keep the result as ``link_check``."""
        problems = {name: problem for name, problem in self.health(timeout=timeout).items() if problem}
        self.link_check = LinkCheck(problems, tuple(self.command_links()))
        return self.link_check

    @property
    def silent(self) -> str | None:
        """Why the board is known not to answer (marked broken, or silent on every link at the last check)."""
        if self.broken:
            return f"board marked broken: {self.broken}"
        if self.link_check is not None and self.link_check.every_link_down:
            return self.link_check.diagnosis()
        return None

    # -- evidence ------------------------------------------------------------------------------------------
    def kernel_log(self, lines: int = 200, timeout: float = 20.0) -> str:
        """The tail of the board's kernel log; never raises (evidence collection must not hide a failure)."""
        if self.silent:
            return f"(not read: {self.silent})"
        try:
            return self.shell(f"dmesg | tail -n {int(lines)}", timeout=timeout).output
        except HarnessError as exc:
            return f"(dmesg unavailable: {exc})"

    def save_evidence(self, stem: str, text: str) -> Path | None:
        """Keep ``text`` in the board's run folder as ``STEM-TIME-N.txt`` (evidence is never lost); None if it
        cannot be written."""
        try:
            path = Path(self.run_dir) / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}-{next(_EVIDENCE_COUNTER)}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            return path
        except (OSError, TypeError):
            return None

    def mark_broken(self, reason: str) -> None:
        """After recovery failed: every later use fails at once with this reason instead of hanging."""
        self.broken = reason

    def broken_error(self) -> BoardError:
        """What every use of a board marked broken fails with (one line: the board and why)."""
        return BoardError(f"board {self.name} is marked broken for the rest of this run: {self.broken}")

    def _refuse_if_broken(self) -> None:
        if self.broken:
            raise self.broken_error()

    def close(self) -> None:
        for name, link in self.links.items():
            try:
                link.close()
            except Exception as exc:  # closing must never hide the test's own outcome
                self.log.warning("%s: closing %s failed: %s", self.name, name, exc)
        for handler in list(self.log.handlers):
            if isinstance(handler, logging.FileHandler):
                handler.close()
                self.log.removeHandler(handler)
