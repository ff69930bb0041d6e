"""Power drivers: switch a board off and on, chosen per board by ``power = {type = ...}`` in boards.toml.

Why a driver per lab setup: benches switch power differently (a relay or PDU with its own CLI, a USB hub
port through uhubctl, a simulated board's supervisor), and a board without any must say so plainly instead
of a test waiting out a boot that never comes. Every driver runs its action to completion or raises
:class:`~harness.errors.BoardError`; commands run as real subprocesses with a deadline, in their own process
group, and a command that overstays is killed by its group id (its pid) with everything it started.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from string import Formatter
from typing import Any, Protocol, runtime_checkable

from harness.errors import BoardError, ConfigError, HarnessError, printable

DEFAULT_OFF_SECONDS = 2.0  # long enough for a board's capacitors to drain, so it really resets


@runtime_checkable
class PowerDriver(Protocol):
    """What the Board needs from a power switch."""

    name: str

    def on(self) -> None: ...

    def off(self) -> None: ...

    def cycle(self, off_seconds: float | None = None) -> None: ...


class NoPower:
    """A board with no power control: any use is an error that says how to add one."""

    def __init__(self, board_name: str) -> None:
        self.board_name = board_name
        self.name = "none"

    def _refuse(self, action: str) -> None:
        raise BoardError(f"board {self.board_name} has no power control; set [boards.{self.board_name}.power] "
                         f"to power it {action}",
                         fix='e.g. power = { type = "uhubctl", location = "1-2", port = 3 } or type = "command"')

    def on(self) -> None:
        self._refuse("on")

    def off(self) -> None:
        self._refuse("off")

    def cycle(self, off_seconds: float | None = None) -> None:
        self._refuse("off and on")


class SimPower:
    """A simulated board's power: its supervisor kills and restarts the board's processes."""

    def __init__(self, board_name: str) -> None:
        self.board_name = board_name
        self.name = f"sim:{board_name}"

    def _do(self, action: str) -> None:
        from harness.sim import api  # here, not at import: the harness must not load the simulator to exist

        try:
            api.power(self.board_name, action)
        except (HarnessError, OSError, ValueError) as exc:
            raise BoardError(f"cannot power {action} simulated board {self.board_name}: {exc}") from None

    def on(self) -> None:
        self._do("on")

    def off(self) -> None:
        self._do("off")

    def cycle(self, off_seconds: float | None = None) -> None:
        """The supervisor's own cycle (a short off time), or off/wait/on when ``off_seconds`` is given."""
        if off_seconds is None:
            self._do("cycle")
            return
        self._do("off")
        time.sleep(off_seconds)
        self._do("on")


def run_command(argv: list[str], *, timeout: float, env: dict[str, str] | None = None,
                what: str) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` with a deadline; BoardError when it cannot start, overstays (then it is killed) or fails.

    The child gets its own session so that on timeout the whole group it started (``sh -c`` and its
    children) dies by the child's pid, leaving nothing behind holding a relay or a hub.
    """
    full_env = {**os.environ, **(env or {})}
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                text=True, env=full_env, start_new_session=True)
    except OSError as exc:
        raise BoardError(f"{what}: cannot run {shlex.join(argv)}: {exc.strerror or exc}") from None
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)
        try:
            proc.communicate(timeout=5)  # reaps it; a grandchild that left the group may still hold a pipe
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        raise BoardError(f"{what}: {shlex.join(argv)} did not finish within {timeout:g} s (killed)") from None
    if proc.returncode != 0:
        detail = (stderr.strip() or stdout.strip() or "no output").splitlines()[-1]
        raise BoardError(f"{what}: {shlex.join(argv)} exited with {proc.returncode}: {detail}")
    return subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)  # the group id is the child's pid (start_new_session)
    except ProcessLookupError:
        pass


class CommandPower:
    """Power through commands of the lab's own (relay, PDU, smart plug CLIs).

    Templates are split like a shell would (``shlex.split``) but never run by one unless they say
    ``sh -c``: placeholders such as ``{outlet}`` are filled from ``values`` with ``shlex.quote``, so a value
    stays one argument whatever it contains. Inside ``sh -c``, put the script in double quotes
    (``sh -c "echo on > {file}"``): a quoted value inside single quotes would end them.
    """

    def __init__(self, on_cmd: str, off_cmd: str, timeout: float = 30, env: dict[str, str] | None = None, *,
                 values: dict[str, Any] | None = None, off_seconds: float = DEFAULT_OFF_SECONDS,
                 name: str = "command") -> None:
        self.values = {k: str(v) for k, v in (values or {}).items()}
        self.on_argv = self._expand(on_cmd, "on_cmd")
        self.off_argv = self._expand(off_cmd, "off_cmd")
        if not timeout or timeout <= 0:
            raise ConfigError(f"power timeout must be a positive number of seconds, not {timeout!r}")
        self.timeout = float(timeout)
        self.env = {str(k): str(v) for k, v in (env or {}).items()}
        self.off_seconds = float(off_seconds)
        self.name = name

    def _expand(self, template: str, key: str) -> list[str]:
        if not isinstance(template, str) or not template.strip():
            raise ConfigError(f"power {key} must be a command, not {template!r}")
        try:
            fields = {f for _, f, _, _ in Formatter().parse(template) if f is not None}
            missing = sorted(f for f in fields if f not in self.values)
            if missing:
                raise ConfigError(f"power {key} {template!r} uses {', '.join('{' + f + '}' for f in missing)} "
                                  f"with no value; known: {', '.join(sorted(self.values)) or 'none'}")
            argv = shlex.split(template.format_map({k: shlex.quote(v) for k, v in self.values.items()}))
        except ValueError as exc:
            raise ConfigError(f"power {key} {template!r}: {exc}") from None
        if not argv:
            raise ConfigError(f"power {key} {template!r} is empty")
        return argv

    def _run(self, argv: list[str], action: str) -> None:
        run_command(argv, timeout=self.timeout, env=self.env, what=f"power {action} ({self.name})")

    def on(self) -> None:
        self._run(self.on_argv, "on")

    def off(self) -> None:
        self._run(self.off_argv, "off")

    def cycle(self, off_seconds: float | None = None) -> None:
        self.off()
        time.sleep(self.off_seconds if off_seconds is None else off_seconds)
        self.on()


_HUB_LOCATION = re.compile(r"^\d+(-\d+(\.\d+)*)?$")
_STATUS_HEADER = re.compile(r"^(Current|New) status for hub (?P<hub>\S+)")
_PORT_LINE = re.compile(r"^\s+Port (?P<port>\d+): (?P<bits>[0-9a-fA-F]{4})(?P<flags>.*)$")


def port_states(output: str, location: str, port: int) -> list[tuple[str, str]]:
    """(``Current``/``New``, ``on``/``off``) for each status uhubctl printed for ``port`` of hub ``location``."""
    states, block = [], None
    for line in output.splitlines():
        header = _STATUS_HEADER.match(line)
        if header:
            block = line.split()[0] if header["hub"] == location else None
            continue
        m = _PORT_LINE.match(line)
        if block and m and int(m["port"]) == port:
            flags = m["flags"].split("[")[0].split()
            states.append((block, "off" if "off" in flags else "on" if "power" in flags else "unknown"))
    return states


class UhubctlPower:
    """A board powered from a USB hub port that switches per-port power, driven by uhubctl."""

    def __init__(self, location: str, port: int, uhubctl: str = "uhubctl", *, timeout: float = 30,
                 off_seconds: float = DEFAULT_OFF_SECONDS) -> None:
        if not isinstance(location, str) or not _HUB_LOCATION.match(location):
            raise ConfigError(f"uhubctl location {location!r} is not a hub location like '1-2' or '1-2.4'")
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 31:
            raise ConfigError(f"uhubctl port must be a port number from 1 to 31, not {port!r}")
        self.location, self.port, self.uhubctl = location, port, uhubctl
        self.timeout, self.off_seconds = float(timeout), float(off_seconds)
        self.name = f"uhubctl {location} port {port}"

    def _run(self, action: str, off_seconds: float | None = None) -> str:
        exe = shutil.which(self.uhubctl)
        if exe is None:
            raise BoardError(f"uhubctl not found ({self.uhubctl!r}), needed to power board on hub "
                             f"{self.location} port {self.port}",
                             fix="sudo apt-get install uhubctl (and a udev rule or sudo for hub access)")
        argv = [exe, "-l", self.location, "-p", str(self.port), "-a", action]
        if off_seconds is not None:
            argv += ["-d", f"{off_seconds:g}"]
        timeout = self.timeout + (off_seconds or 0)
        return run_command(argv, timeout=timeout, what=f"power {action} ({self.name})").stdout

    def _confirm(self, output: str, action: str, wanted: str) -> None:
        states = [s for block, s in port_states(output, self.location, self.port) if block == "New"]
        if not states:
            raise BoardError(f"power {action} ({self.name}): uhubctl printed no new status for hub "
                             f"{self.location} port {self.port}")
        if states[-1] != wanted:
            raise BoardError(f"power {action} ({self.name}): port is {states[-1]} after the request, not {wanted}",
                             fix="this hub may not switch per-port power (ganged); see uhubctl's list of hubs")

    def on(self) -> None:
        self._confirm(self._run("on"), "on", "on")

    def off(self) -> None:
        self._confirm(self._run("off"), "off", "off")

    def cycle(self, off_seconds: float | None = None) -> None:
        output = self._run("cycle", self.off_seconds if off_seconds is None else off_seconds)
        states = [s for block, s in port_states(output, self.location, self.port) if block == "New"]
        if states[:1] != ["off"]:
            raise BoardError(f"power cycle ({self.name}): the port never showed off (saw {states or 'nothing'})",
                             fix="this hub may not switch per-port power (ganged); see uhubctl's list of hubs")
        self._confirm(output, "cycle", "on")


_KEYS = {
    "none": set(),
    "sim": set(),
    "command": {"on_cmd", "off_cmd", "timeout", "env", "vars", "off_seconds"},
    "uhubctl": {"location", "port", "uhubctl", "timeout", "off_seconds"},
}
_REQUIRED = {"command": {"on_cmd", "off_cmd"}, "uhubctl": {"location", "port"}}


def make_power(spec: dict[str, Any], board_name: str) -> PowerDriver:
    """The driver for a board's ``power`` table; ConfigError naming the board for unknown types or keys."""
    spec = dict(spec or {"type": "none"})
    kind = spec.pop("type", None)
    where = f"[boards.{board_name}.power]"
    if kind not in _KEYS:
        raise ConfigError(f"{where}: unknown power type {kind!r}; one of {', '.join(_KEYS)}")
    unknown = sorted(set(spec) - _KEYS[kind])
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(printable(k) for k in unknown)} for type {kind!r}; "
                          f"allowed: {', '.join(sorted(_KEYS[kind])) or 'none'}")
    missing = sorted(_REQUIRED.get(kind, set()) - set(spec))
    if missing:
        raise ConfigError(f"{where}: type {kind!r} needs {', '.join(missing)}")
    try:
        if kind == "none":
            return NoPower(board_name)
        if kind == "sim":
            return SimPower(board_name)
        if kind == "command":
            values = {"board": board_name, **(spec.pop("vars", None) or {})}
            return CommandPower(spec.pop("on_cmd"), spec.pop("off_cmd"), values=values, name=f"command:{board_name}",
                                **spec)
        return UhubctlPower(spec.pop("location"), spec.pop("port"), **spec)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc.message}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None
