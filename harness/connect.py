"""Turn a board entry into an open, health-checked Board: start its simulator if it has one, open its links.

This is the only place that knows a board may be simulated: a simulated board's entry is resolved into the same
links a real one has (a pty path for the console, an adb network address, an ssh host and key), after which
nothing differs. A labgrid place board (``place = ...``) is resolved the same way from the acquired place's
resources (harness.lab.labgrid.place), and may re-resolve a link that went down (the exporter restarted).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from harness.board import Board
from harness.chips import chip as lookup_chip
from harness.config.loader import Inventory
from harness.config.models import BoardSpec, SerialSpec
from harness.errors import BoardError, HarnessError

log = logging.getLogger("npu-hil.connect")


def start_simulator(spec: BoardSpec, *, owner_pid: int | None) -> tuple[dict[str, Any], bool]:
    """Start (or attach to an already running) simulated board; returns its endpoints and whether we started it."""
    from harness.sim import api

    assert spec.sim is not None
    try:
        existing = api.endpoints(spec.name)
    except api.SimError:
        existing = None
    if existing and not spec.sim.faults and not spec.sim.versions:
        log.info("attaching to the running simulated board %s", spec.name)
        return existing, False
    if existing:
        api.down(spec.name)
    return api.up(spec.sim.profile, name=spec.name, faults=list(spec.sim.faults), versions=dict(spec.sim.versions),
                  owner_pid=owner_pid), True


def _sim_links_spec(spec: BoardSpec, endpoints: dict[str, Any], board_dir: Path) -> dict[str, Any]:
    """The link settings a simulated board's endpoints amount to (a known_hosts file pins its host key)."""
    ssh = endpoints["ssh"]
    known_hosts = board_dir / "known_hosts"
    known_hosts.write_text(f"[{ssh['host']}]:{ssh['port']} {ssh['host_key']}\n")
    return {
        "serial": SerialSpec(port=endpoints["console"]["path"], baud=endpoints["console"]["baud"],
                             login=endpoints["console"]["login"], password=endpoints["console"]["password"]),
        "adb": {"address": endpoints["adb"]["serial"], "serial": endpoints["adb"]["serial"]},
        "ssh": {"host": ssh["host"], "port": ssh["port"], "user": ssh["user"], "key": ssh["key"],
                "password": None, "host_key_policy": "strict", "known_hosts": str(known_hosts)},
    }


def power_for(spec: BoardSpec) -> Any:
    """The board's power driver, as open_board gives it (a simulated board's is the simulator's)."""
    from harness.links.power import make_power

    return make_power({"type": "sim"} if spec.sim else dict(spec.power), spec.name)


def open_board(spec: BoardSpec, inventory: Inventory, *, run_dir: Path, adb_server: Any = None,
               owner_pid: int | None = None, health_timeout: float | None = None, booting: bool = False) -> Board:
    """Open every configured link of ``spec`` and check each answers; BoardError lists every failing link.

    ``booting``: the board was just powered on, so a link that refuses is tried again until ``health_timeout``
    (its service is not up yet) instead of failing at once."""
    from harness.links.power import make_power

    chip = lookup_chip(spec.chip)
    board_dir = run_dir / spec.name
    board_dir.mkdir(parents=True, exist_ok=True)
    logger = _board_logger(spec.name, board_dir)
    defaults = inventory.defaults
    if spec.sim:
        endpoints, started = start_simulator(spec, owner_pid=owner_pid if owner_pid is not None else os.getpid())
        settings = _sim_links_spec(spec, endpoints, board_dir)
        power = make_power({"type": "sim"}, spec.name)
    elif spec.is_place:
        from harness.lab.labgrid.place import resolve_links

        settings = resolve_links(spec, inventory, board_dir)
        power = make_power(dict(spec.power), spec.name)
        started = False
    else:
        settings = {"serial": spec.serial, "adb": spec.adb and spec.adb.model_dump(),
                    "ssh": spec.ssh and spec.ssh.model_dump()}
        power = make_power(dict(spec.power), spec.name)
        started = False
    timeout = health_timeout or min(defaults.boot_timeout, 60.0)
    links, problems = _open_links(settings, timeout, booting=booting, board_dir=board_dir, chip=chip,
                                  adb_server=adb_server, logger=logger)
    board = Board(name=spec.name, chip=chip, links=links, power=power,
                  link_order=list(spec.link_order or defaults.link_order), run_dir=board_dir,
                  toolkit=inventory.toolkit_for(spec, chip.npu), command_timeout=defaults.command_timeout,
                  boot_timeout=defaults.boot_timeout, simulated=spec.is_simulated, log=logger,
                  runner=spec.runner)
    board.owns_simulator = started
    if spec.is_place:
        board.relink = _place_relinker(spec, inventory, board_dir, chip=chip, timeout=timeout, logger=logger)
    if problems:
        board.close()
        if started:
            from harness.sim import api

            api.down(spec.name)
        raise BoardError(f"board {spec.name} failed its health check: " + "; ".join(problems))
    return board


def _open_links(settings: dict[str, Any], timeout: float, *, booting: bool,
                **open_args: Any) -> tuple[dict[str, Any], list[str]]:
    """Open the configured links side by side, so a board silent on every link costs one ``timeout``, not one
    per link; the open links and each failing link's error (in link order). A ``booting`` board's links are
    tried again until the deadline."""
    names = [name for name, (_, key) in _OPENERS.items() if settings.get(key)]
    deadline = time.monotonic() + timeout

    def open_one(name: str) -> Any:
        open_link, key = _OPENERS[name]
        wait = timeout
        while True:
            try:
                return open_link(settings[key], timeout=wait, **open_args)
            except HarnessError as exc:
                if not booting or time.monotonic() + 1.0 >= deadline:
                    return exc  # each link error already starts with the link name
            time.sleep(0.5)
            wait = max(1.0, deadline - time.monotonic())

    with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
        opened = dict(zip(names, pool.map(open_one, names)))
    problems = [str(result) for result in opened.values() if isinstance(result, HarnessError)]
    return {name: link for name, link in opened.items() if not isinstance(link, HarnessError)}, problems


def _place_relinker(spec: BoardSpec, inventory: Inventory, board_dir: Path,
                    **open_args: Any) -> Callable[[str], Any]:
    """For a labgrid place: reopen a link that went down on the place's current address. An exporter restart
    moves the console to a new ser2net port within seconds, so resolve again until the link opens (bounded)."""
    from harness.lab.labgrid.place import RERESOLVE_TIMEOUT_S, resolve_links

    def relink(name: str) -> Any:
        open_link, key = _OPENERS[name]
        deadline = time.monotonic() + RERESOLVE_TIMEOUT_S
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                settings = resolve_links(spec, inventory, board_dir)
                if not settings.get(key):
                    raise BoardError(f"{name}: the place no longer exports it")
                return open_link(settings[key], board_dir=board_dir, adb_server=None, **open_args)
            except HarnessError as exc:
                last = exc
                time.sleep(0.5)
        raise BoardError(f"{name}: still down {RERESOLVE_TIMEOUT_S:g} s after resolving the place again: {last}")

    return relink


def _board_logger(name: str, board_dir: Path) -> logging.Logger:
    """The board's logger: every link exchange (command, exit code, duration, bytes) also lands in links.log."""
    logger = logging.getLogger(f"npu-hil.board.{name}")
    logger.setLevel(logging.DEBUG)
    path = board_dir / "links.log"
    if not any(getattr(h, "baseFilename", None) == str(path) for h in logger.handlers):
        handler = logging.FileHandler(path)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
    return logger


def _open_console(serial: SerialSpec, *, board_dir: Path, chip: Any, timeout: float, logger: logging.Logger,
                  **_: Any) -> Any:
    from harness.links.console import ConsoleLink

    link = ConsoleLink(serial.target, baud=serial.baud or chip.console_baud, capture=board_dir / "console.log",
                       login=serial.login, password=serial.password, log=logger)
    link.open()
    try:
        link.login(timeout=timeout)
    except HarnessError:
        link.close()
        raise
    return link


def _open_adb(adb: dict[str, Any], *, adb_server: Any, timeout: float, logger: logging.Logger, **_: Any) -> Any:
    from harness.links.adb import AdbLink
    from harness.links.adb_server import AdbServer

    if adb.get("server"):
        host, _, port = adb["server"].rpartition(":")
        server = AdbServer.remote(host, int(port))
    elif adb_server is None:
        raise BoardError("no adb server was started for this run")
    else:
        server = adb_server
    link = AdbLink(server=server, serial=adb.get("serial") or adb["address"], address=adb.get("address"), log=logger)
    link.connect(timeout=timeout)
    link.ensure_ready(timeout=timeout)
    return link


def _open_ssh(ssh: dict[str, Any], *, timeout: float, logger: logging.Logger, **_: Any) -> Any:
    from harness.links.ssh import SshLink

    known_hosts = Path(os.path.expanduser(ssh["known_hosts"])) if ssh.get("known_hosts") else None
    key = os.path.expanduser(ssh["key"]) if ssh.get("key") else None
    link = SshLink(host=ssh["host"], port=ssh["port"], user=ssh["user"], password=ssh.get("password"),
                   key_filename=key, host_key_policy=ssh["host_key_policy"], known_hosts=known_hosts,
                   connect_timeout=min(timeout, 15.0), log=logger)
    link.connect()
    return link


#: Each link's opener and the key of its settings (as built by open_board), in the order links are opened.
_OPENERS: dict[str, tuple[Callable[..., Any], str]] = {
    "console": (_open_console, "serial"), "adb": (_open_adb, "adb"), "ssh": (_open_ssh, "ssh"),
}
