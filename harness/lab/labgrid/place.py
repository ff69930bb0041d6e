"""A labgrid place as a board: pre-flight it, hold it as the board's lock, turn its resources into our links.

``PlaceLock`` is the :class:`harness.lab.locks.BoardLock` of a board whose ``boards.toml`` entry says
``place = "NAME"`` (or of the board ``--board-tag soc=rk3588`` makes, which reserves any matching place). The
coordinator is the lock: acquiring the place is holding the board, so runs on other hosts and engineers using
``labgrid-client`` directly are kept out too. A guard process (guard.py) releases the place if the run dies.

``resolve_links`` reads the acquired place's resources into the settings ``harness.connect`` opens:

* NetworkSerialPort (ser2net on the exporter, started at acquire) -> ``rfc2217://HOST:PORT?ign_set_control``
  (``ign_set_control``: ser2net never answers pyserial's 'control' option, plain rfc2217:// waits for it);
* NetworkService ``adb`` -> the lab host's adb server ``address:port`` with the device serial in
  ``username`` (the stand's convention, see exporter_yaml.py);
* any other NetworkService (``ssh`` first) -> ssh host/port/user/password, with ``place_auth`` for what labgrid
  cannot carry (key file, host-key policy, console login).

Resolve again after every (re)acquire or reconnect: an exporter restart starts ser2net on a new port.
"""

from __future__ import annotations

import logging
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.config.loader import Inventory
from harness.config.models import BoardSpec, PlaceAuth, SerialSpec
from harness.errors import BoardBusy, BoardError, ConfigError, HarnessError
from harness.lab.labgrid.client import (
    LabgridClient,
    PlaceInfo,
    PlaceTaken,
    UnknownPlace,
)
from harness.lab.labgrid.guard import ReleaseGuard

log = logging.getLogger("npu-hil.lab.place")

#: Pause between acquire attempts while another run holds the place (each attempt costs ~0.6 s itself).
RETRY_PAUSE_S = 0.25
#: How long a link that went down may take to come back on the place's new address (exporter restart: 3-8 s).
RERESOLVE_TIMEOUT_S = 15.0
#: Added to --board-wait for a reservation: the `labgrid-client wait` call needs about a second to start.
RESERVE_WAIT_ALLOWANCE_S = 5.0
#: Pre-flight connect to each exported network service (ssh, adb server): enough on a LAN, bounded anyway.
PROBE_TIMEOUT_S = 2.0


def _stand_down(guard: ReleaseGuard, exc: BaseException) -> None:
    """After a failed acquire: when the coordinator clearly refused (taken, unknown place), the guard just exits;
    after anything else (a timeout, Ctrl-C mid-call) the acquire may have been recorded, so the guard releases
    the place itself (releasing a place we do not hold is harmless)."""
    if isinstance(exc, (PlaceTaken, UnknownPlace, BoardBusy, ConfigError)):
        guard.dismiss()
    else:
        guard.abandon()


@dataclass
class _Holding:
    client: LabgridClient
    place: str
    guard: ReleaseGuard | None


#: The places this process holds, by board name: resolve_links and the lock of the same board meet here.
_held: dict[str, _Holding] = {}


def held_place(spec: BoardSpec) -> str | None:
    """The place this process holds for ``spec`` (a reservation's place is only known once acquired)."""
    holding = _held.get(spec.name)
    return holding.place if holding else None


class PlaceLock:
    """The labgrid place behind ``spec`` as the board's lock (the BoardLock protocol)."""

    def __init__(self, spec: BoardSpec, inventory: Inventory) -> None:
        if not spec.is_place:
            raise ConfigError(f"board {spec.name} is not a labgrid place (no 'place' in its boards.toml entry)")
        self.spec = spec
        self.inventory = inventory
        self.client = LabgridClient(inventory.coordinator_for(spec))
        self.guard_log: Path | None = None  # where the guard writes what it did (None: nowhere)

    @property
    def what(self) -> str:
        target = f"place {self.spec.place}" if self.spec.place else "a place with tags " + _tags(self.spec.reserve)
        return f"board {self.spec.name} (labgrid {target} on {self.client.coordinator})"

    @property
    def guard_pid(self) -> int | None:
        """PID of the process that releases the place if this one dies (None while not held)."""
        holding = _held.get(self.spec.name)
        return holding.guard.pid if holding and holding.guard else None

    # -- pre-flight --------------------------------------------------------------------------------------
    def check(self) -> None:
        """Coordinator answers, the place exists, its resources are exported and available: else one line."""
        if self.spec.place:
            _usable(self._show(self.spec.place))
            return
        places = self._matching()
        problems = []
        for info in places[:4]:
            try:
                _usable(self.client.show(info.name))
                return
            except BoardError as exc:
                problems.append(str(exc))
        raise BoardError(f"{self.what}: no matching place is usable: " + "; ".join(problems))

    def _show(self, place: str) -> PlaceInfo:
        try:
            return self.client.show(place)
        except UnknownPlace:
            known = ", ".join(p.name for p in self.client.places()) or "none"
            raise ConfigError(f"{self.inventory.path or 'boards.toml'}: [boards.{self.spec.name}]: place: "
                              f"no place {place!r} on coordinator {self.client.coordinator}; "
                              f"places there: {known}") from None

    def _matching(self) -> list[PlaceInfo]:
        filters = self.spec.reserve or {}
        places = self.client.places()
        found = [p for p in places if all(p.tags.get(k) == v for k, v in filters.items())]
        if not found:
            offered = "; ".join(f"{p.name} ({_tags(p.tags) or 'no tags'})" for p in places) or "none"
            raise ConfigError(f"--board-tag {_tags(filters, ' ')}: no place on coordinator "
                              f"{self.client.coordinator} has these tags; places there: {offered}")
        return found

    # -- lock ------------------------------------------------------------------------------------------
    def acquire(self, wait: float) -> None:
        """Hold the place; BoardBusy naming the holder when it is not free within ``wait`` seconds."""
        if self.spec.name in _held:
            return
        deadline = time.monotonic() + max(0.0, wait)
        if self.spec.place:
            place = self.spec.place
            guard = self._guard(place)
            try:
                self._acquire_named(place, deadline, wait)
            except BaseException as exc:
                _stand_down(guard, exc)
                raise
            _held[self.spec.name] = _Holding(client=self.client, place=place, guard=guard)
        else:
            self._acquire_reserved(deadline, wait)  # registers the place as held as soon as it is acquired
        held = _held[self.spec.name]
        log.info("%s: acquired %s as %s (guard pid %s)", self.what, held.place, self.client.me,
                 held.guard.pid if held.guard else None)

    def _guard(self, place: str) -> ReleaseGuard:
        """The guard starts before the acquire: a run killed right after acquiring must not leak the place."""
        return ReleaseGuard(self.client, place, log=self.guard_log).start()

    def _acquire_named(self, place: str, deadline: float, wait: float) -> None:
        while True:
            try:
                self.client.acquire(place)
                return
            except UnknownPlace:
                self._show(place)  # raises the ConfigError that lists the places
                raise
            except PlaceTaken:
                if time.monotonic() >= deadline:
                    raise self._busy([place], wait) from None
            time.sleep(RETRY_PAUSE_S)

    def _acquire_reserved(self, deadline: float, wait: float) -> None:
        """Reserve any matching place (the coordinator queues waiters fairly), acquire it, drop the reservation
        (an acquired place needs none, and a leftover one would block the place for a minute after release)."""
        filters = dict(self.spec.reserve or {})
        token = self.client.reserve(filters)
        guard = None
        try:
            # `labgrid-client wait` itself takes ~1 s to start: a free place must not look busy at --board-wait 0
            if not self.client.wait(token, max(0.0, deadline - time.monotonic()) + RESERVE_WAIT_ALLOWANCE_S):
                raise self._busy([p.name for p in self._matching()], wait)
            place = self.client.reserved_place(token)
            guard = self._guard(place)
            self.client.acquire("+" + token)
            _held[self.spec.name] = _Holding(client=self.client, place=place, guard=guard)
        except BaseException as exc:
            if guard is not None:
                _stand_down(guard, exc)
            self._cancel(token)
            raise
        self._cancel(token)

    def _cancel(self, token: str) -> None:
        """Drop a reservation; a failure only costs the place a minute of being reserved, so it is logged."""
        try:
            self.client.cancel_reservation(token)
        except HarnessError as exc:
            log.warning("%s: cancelling reservation %s: %s", self.what, token, exc)

    def _busy(self, places: list[str], wait: float) -> BoardBusy:
        held = []
        for name in places:
            info = self.client.show(name)
            if info.holder:
                held.append(f"{name} by {info.holder.describe(info.changed)}" if len(places) > 1
                            else info.holder.describe(info.changed))
            elif info.reservation:
                held.append(f"{name} reserved (token {info.reservation})")
        who = "; ".join(held) or "someone (released meanwhile)"
        return BoardBusy(f"{self.what} is held by {who}; waited {wait:g} s (--board-wait)")

    def release(self) -> None:
        """Release the place (idempotent). If the coordinator cannot be told, the guard keeps trying."""
        holding = _held.pop(self.spec.name, None)
        if holding is None:
            return
        try:
            holding.client.release(holding.place)
        except BoardError as exc:
            log.warning("%s: release failed, the guard retries: %s", self.what, exc)
            if holding.guard:
                holding.guard.abandon()
            return
        if holding.guard:
            holding.guard.dismiss()
        log.info("%s: released", self.what)


def _tags(tags: dict[str, str] | None, sep: str = ",") -> str:
    return sep.join(f"{k}={v}" for k, v in sorted((tags or {}).items()))


def _usable(info: PlaceInfo) -> None:
    """A place is usable when it matches resources and each is available (its exporter runs, its device is
    there); who holds it does not matter here: acquire() waits for that."""
    where = f"labgrid place {info.name}"
    if not info.resources:
        matches = ", ".join(info.matches) or "no match patterns"
        raise BoardError(f"{where} has no exported resources (matches: {matches}): is its exporter running?")
    down = [f"{r.name} ({r.path})" for r in info.resources if not r.avail]
    if down:
        raise BoardError(f"{where}: resource(s) unavailable: {', '.join(down)}: is the board powered and "
                         f"attached to its exporter?")
    if not any(r.cls in ("NetworkSerialPort", "NetworkService") for r in info.resources):
        kinds = ", ".join(sorted({r.cls for r in info.resources}))
        raise BoardError(f"{where} has no serial port or network service to reach the board (has: {kinds})")
    if info.acquired:
        return  # in use: its holder may be rebooting it; acquire() waits and the health check judges it then
    # labgrid cannot tell whether a NetworkService answers (it is "available" by declaration): try it, briefly.
    silent = [f"{r.name} ({r.params.get('address')}:{r.params.get('port')}: {problem})"
              for r in info.resources if r.cls == "NetworkService"
              for problem in [_tcp_problem(r.params.get("address"), r.params.get("port"))] if problem]
    if silent:
        raise BoardError(f"{where}: service(s) not answering: {', '.join(silent)}: is the board up?")


def _tcp_problem(host: str | None, port: int | None, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """Why a TCP connect to host:port fails within ``timeout`` (None: it connects)."""
    if not host or not port:
        return "no address"
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    return None


# -- resources -> link settings ------------------------------------------------------------------------------
def resolve_links(spec: BoardSpec, inventory: Inventory, board_dir: Path) -> dict[str, Any]:
    """The acquired place's resources as link settings (the shape of ``harness.connect._sim_links_spec``)."""
    holding = _held.get(spec.name)
    if holding is None:
        raise BoardError(f"board {spec.name}: its labgrid place is not acquired by this process "
                         f"(acquire it first: harness.lab.locks.lock_for(spec, inventory).acquire(wait))")
    info = holding.client.show(holding.place)
    if info.acquired != holding.client.me:
        now = info.holder.describe(info.changed) if info.holder else "nobody"
        raise BoardError(f"board {spec.name}: labgrid place {info.name} "
                         f"is no longer held by this run (held by {now})")
    try:
        return links_from_resources(info, spec.place_auth or PlaceAuth(), board_dir)
    except (KeyError, ValueError, TypeError) as exc:  # a resource without address/port/username
        raise BoardError(f"board {spec.name}: labgrid place {info.name} exports a resource this harness cannot "
                         f"use: missing or bad {exc}", fix="export NetworkService resources with address, port "
                         "and username (see harness/lab/labgrid/exporter_yaml.py)") from None


def links_from_resources(info: PlaceInfo, auth: PlaceAuth, board_dir: Path) -> dict[str, Any]:
    """Map NetworkSerialPort / NetworkService resources to serial / ssh / adb settings (pure: no network)."""
    settings: dict[str, Any] = {}
    services = sorted((r for r in info.resources if r.cls == "NetworkService"), key=lambda r: r.name != "ssh")
    ssh_password = None
    for res in services:
        params = res.params
        if res.name == "adb" or res.name.startswith("adb"):
            if "adb" not in settings:
                serial = params["username"]
                settings["adb"] = {"server": f"{params['address']}:{params['port']}", "serial": serial,
                                   "address": serial if _is_host_port(serial) else None}
        elif "ssh" not in settings:
            ssh_password = params.get("password")
            known_hosts = auth.ssh_known_hosts or str(board_dir / "known_hosts")
            settings["ssh"] = {"host": params["address"], "port": int(params.get("port") or 22),
                               "user": params.get("username") or "root", "key": auth.ssh_key,
                               "password": ssh_password, "host_key_policy": auth.ssh_host_key_policy,
                               "known_hosts": known_hosts}
    consoles = sorted((r for r in info.resources if r.cls == "NetworkSerialPort"), key=lambda r: r.name != "console")
    if consoles:
        res = consoles[0]
        host, port = res.params.get("host"), res.params.get("port")
        if not port:
            raise BoardError(f"labgrid place {info.name}: serial port {res.path} has no network port yet "
                             f"(ser2net not started: is the place acquired?)")
        scheme = "socket" if res.params.get("protocol") == "raw" else "rfc2217"
        url = f"{scheme}://{host}:{port}" + ("?ign_set_control" if scheme == "rfc2217" else "")
        settings["serial"] = SerialSpec(url=url, baud=res.params.get("speed"), login=auth.console_login,
                                        password=auth.console_password or ssh_password)
    if not settings:
        raise BoardError(f"labgrid place {info.name}: no serial port, ssh or adb resource among "
                         f"{', '.join(r.path for r in info.resources) or 'none'}")
    return settings


def _is_host_port(text: str) -> bool:
    host, sep, port = text.rpartition(":")
    return bool(sep and host and port.isdigit())
