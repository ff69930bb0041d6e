"""The labgrid coordinator, reached through ``labgrid-client`` subprocesses, each with a deadline.

Why a subprocess and not labgrid's Python ``ClientSession``: the client is an asyncio + gRPC session whose
channel threads must not live inside pytest (and its xdist workers, which fork and exec); a subprocess is
killed at its deadline whatever state gRPC is in, keeps the coordinator's own error text (stderr) for our
one-line errors, and is exactly what an engineer types to check a place by hand. The price is ~0.6 s of Python
start-up per call, measured in bench/bench_lab_place.py.

Who holds a place: labgrid records ``HOST/USER``. Two runs of one user on one host would look the same (and
labgrid lets the same identity use a place it holds), so each run acquires as ``USER-pidPID``: a second run of
the same user is a different holder, and a waiter can name the holder's pid. The guard (guard.py) releases
with the same identity.
"""

from __future__ import annotations

import ast
import getpass
import os
import re
import socket
import subprocess
from dataclasses import dataclass, field

from harness.errors import BoardError, ConfigError
from harness.lab.labgrid.stand_procs import find_tool

#: Deadline of one labgrid-client call that only talks to the coordinator (it answers in ~0.1 s).
CALL_TIMEOUT = 10.0
_HOLDER = re.compile(r"^(?P<host>[^/]*)/(?P<user>.*?)(?:-pid(?P<pid>\d+))?$")


class CoordinatorDown(BoardError):
    """The coordinator does not answer (not started, wrong address, network)."""


class UnknownPlace(ConfigError):
    """boards.toml (or --board-tag) names a place the coordinator does not have."""


class PlaceTaken(BoardError):
    """An acquire lost: the place is held by someone else (or reserved for someone else)."""


@dataclass(frozen=True)
class Holder:
    """Who holds a place, parsed from labgrid's ``HOST/USER`` (``USER-pidPID`` when it is one of our runs)."""

    host: str
    user: str
    pid: int | None = None

    @classmethod
    def parse(cls, acquired: str) -> Holder:
        match = _HOLDER.match(acquired)
        if not match:
            return cls(host="?", user=acquired)
        pid = match.group("pid")
        return cls(host=match.group("host"), user=match.group("user"), pid=int(pid) if pid else None)

    def describe(self, since: str = "") -> str:
        """``alice on host lab1 (pid 1234, since 2026-11-24 10:00:00)``: the file lock's wording."""
        extra = ", ".join(x for x in (f"pid {self.pid}" if self.pid else "", f"since {since}" if since else "") if x)
        return f"{self.user} on host {self.host}" + (f" ({extra})" if extra else "")


@dataclass(frozen=True)
class Resource:
    """One exported resource a place matches: ``path`` is EXPORTER/GROUP/CLASS/NAME."""

    name: str
    path: str
    cls: str
    params: dict
    avail: bool
    acquired: str | None


@dataclass
class PlaceInfo:
    """What ``labgrid-client show`` tells about a place (times as the coordinator host prints them)."""

    name: str
    tags: dict[str, str] = field(default_factory=dict)
    matches: list[str] = field(default_factory=list)
    acquired: str | None = None
    created: str = ""
    changed: str = ""
    reservation: str | None = None
    resources: list[Resource] = field(default_factory=list)

    @property
    def holder(self) -> Holder | None:
        return Holder.parse(self.acquired) if self.acquired else None


def identity(pid: int | None = None) -> tuple[str, str]:
    """(LG_HOSTNAME, LG_USERNAME) this process acquires places as."""
    user = re.sub(r"[^A-Za-z0-9_.@+-]", "_", getpass.getuser())
    return socket.gethostname(), f"{user}-pid{pid or os.getpid()}"


class LabgridClient:
    """labgrid-client against one coordinator, as one identity; every call has a deadline."""

    def __init__(self, coordinator: str, *, ident: tuple[str, str] | None = None,
                 timeout: float = CALL_TIMEOUT) -> None:
        self.coordinator = coordinator
        self.hostname, self.username = ident or identity()
        self.timeout = timeout
        self.program = find_tool("labgrid-client")  # ConfigError (fix: pip install labgrid) when absent

    @property
    def me(self) -> str:
        """How the coordinator shows a place we hold (``acquired: HOST/USER``)."""
        return f"{self.hostname}/{self.username}"

    def run(self, *args: str, place: str | None = None, timeout: float | None = None,
            check: bool = True) -> subprocess.CompletedProcess:
        """One ``labgrid-client [-p PLACE] ARGS`` call; CoordinatorDown / BoardError carry its stderr."""
        argv = [self.program, "-x", self.coordinator] + (["-p", place] if place else []) + list(args)
        env = dict(os.environ, LG_COORDINATOR=self.coordinator, LG_HOSTNAME=self.hostname,
                   LG_USERNAME=self.username)
        for var in ("LG_PLACE", "LG_ENV", "LG_TOKEN", "LG_STATE"):
            env.pop(var, None)  # a user's shell settings must not redirect our calls
        limit = timeout or self.timeout
        try:
            done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=limit,
                                  stdin=subprocess.DEVNULL, check=False)
        except subprocess.TimeoutExpired:
            raise CoordinatorDown(f"labgrid coordinator {self.coordinator}: `labgrid-client {' '.join(args)}` "
                                  f"did not finish within {limit:g} s") from None
        err = _error_line(done.stderr)
        if "Could not connect to coordinator" in done.stderr or "coordinator is unavailable" in done.stderr:
            raise CoordinatorDown(f"labgrid coordinator {self.coordinator} is not reachable: {err}",
                                  fix="start it (npu-hil lab up) or fix 'coordinator' / LG_COORDINATOR")
        if check and done.returncode != 0:
            what = f"labgrid-client {'-p ' + place + ' ' if place else ''}{' '.join(args)}"
            if "matches nothing" in err:
                raise UnknownPlace(f"labgrid coordinator {self.coordinator}: {err}")
            raise BoardError(f"labgrid coordinator {self.coordinator}: `{what}` failed: {err}")
        return done

    # -- places ----------------------------------------------------------------------------------------
    def places(self) -> list[PlaceInfo]:
        """Every place with its tags and holder (no resources: that is show())."""
        return parse_show(self.run("-v", "places").stdout)

    def show(self, place: str) -> PlaceInfo:
        """The place, its holder and its matching (or acquired) resources with params and availability."""
        found = parse_show(self.run("show", place=place).stdout)
        if not found:
            raise BoardError(f"labgrid coordinator {self.coordinator}: `show {place}` printed no place")
        return found[0]

    def acquire(self, place: str) -> None:
        """Acquire ``place``; PlaceTaken when someone else holds (or reserved) it."""
        done = self.run("acquire", place=place, check=False)
        if done.returncode == 0:
            return
        err = _error_line(done.stderr)
        if "matches nothing" in err:
            raise UnknownPlace(f"labgrid coordinator {self.coordinator}: {err}")
        if re.search(r"already acquired|not reserved for", err):
            raise PlaceTaken(err)
        detail = " ".join(line.strip() for line in done.stdout.splitlines() if "already acquired" in line)
        raise BoardError(f"labgrid coordinator {self.coordinator}: acquiring place {place} failed: {err}"
                         + (f" ({detail})" if detail else ""))

    def release(self, place: str, *, kick: bool = False) -> bool:
        """Release ``place``; False when it was not acquired (releasing twice is no error)."""
        done = self.run("release", *(["--kick"] if kick else []), place=place, check=False)
        if done.returncode == 0:
            return True
        err = _error_line(done.stderr)
        if "is not acquired" in err:
            return False
        if "matches nothing" in err:
            raise UnknownPlace(f"labgrid coordinator {self.coordinator}: {err}")
        raise BoardError(f"labgrid coordinator {self.coordinator}: releasing place {place} failed: {err}")

    # -- reservations ----------------------------------------------------------------------------------
    def reserve(self, filters: dict[str, str]) -> str:
        """Ask for any place carrying every tag in ``filters``; returns the reservation token."""
        done = self.run("reserve", "--shell", *(f"{k}={v}" for k, v in filters.items()))
        match = re.search(r"LG_TOKEN=(\S+)", done.stdout)
        if not match:
            raise BoardError(f"labgrid coordinator {self.coordinator}: reserve printed no token: "
                             f"{done.stdout.strip()[:200]!r}")
        return match.group(1)

    def wait(self, token: str, timeout: float) -> bool:
        """Wait up to ``timeout`` s until the reservation has a place; False when it is still waiting."""
        try:
            self.run("wait", token, timeout=max(timeout, 0.1))
        except CoordinatorDown as exc:
            if "did not finish" in str(exc):
                return False
            raise
        return True

    def reserved_place(self, token: str) -> str:
        """The place a reservation was allocated (``+TOKEN`` names it for any command)."""
        return self.show("+" + token).name

    def cancel_reservation(self, token: str) -> None:
        done = self.run("cancel-reservation", token, check=False)
        if done.returncode != 0 and "does not exist" not in done.stderr:
            raise BoardError(f"labgrid coordinator {self.coordinator}: cancelling reservation {token} failed: "
                             f"{_error_line(done.stderr)}")


def _error_line(stderr: str) -> str:
    """labgrid-client's own error (its last non-empty line, prefix dropped), or a note that it said nothing."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in reversed(lines):
        if "Error" in line or "error" in line:
            return re.sub(r"^(labgrid-client: |Server error: )?(Error: )?", "", line)
    return lines[-1] if lines else "(no error text)"


_PLACE = re.compile(r"^Place '(?P<name>[^']*)':$")
_RESOURCE = re.compile(r"^(?:Acquired|Matching) resource '(?P<name>[^']*)' \((?P<path>[^)]*)\):$")


def parse_show(text: str) -> list[PlaceInfo]:
    """Parse ``labgrid-client show`` / ``-v places``: place blocks, each followed by its resource dicts."""
    places: list[PlaceInfo] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if m := _PLACE.match(line):
            places.append(PlaceInfo(name=m.group("name")))
        elif (m := _RESOURCE.match(line)) and places:
            block = []
            i += 1
            while i < len(lines) and lines[i].startswith("  "):
                block.append(lines[i])
                i += 1
            try:
                data = ast.literal_eval("\n".join(block).strip())  # labgrid prints pformat(dict): Python literals
                cls = data["cls"]
            except (ValueError, SyntaxError, TypeError, KeyError, MemoryError, RecursionError):
                raise BoardError(f"labgrid resource {m.group('path')}: output this client cannot read "
                                 f"(labgrid version?): {' '.join(block)[:200]!r}") from None
            places[-1].resources.append(Resource(name=m.group("name"), path=m.group("path"), cls=cls,
                                                 params=data.get("params", {}), avail=bool(data.get("avail")),
                                                 acquired=data.get("acquired")))
            continue
        elif line.startswith("  ") and places:
            _place_field(places[-1], line.strip(), lines, i)
        i += 1
    return places


def _place_field(place: PlaceInfo, line: str, lines: list[str], i: int) -> None:
    key, _, value = line.partition(": ")
    if key == "tags":
        place.tags = dict(t.split("=", 1) for t in value.split(", ") if "=" in t)
    elif line == "matches:":
        j = i + 1
        while j < len(lines) and lines[j].startswith("    "):
            place.matches.append(lines[j].strip())
            j += 1
    elif key == "acquired":
        place.acquired = None if value == "None" else value
    elif key in ("created", "changed"):
        setattr(place, key, value.split(".")[0])
    elif key == "reservation":
        place.reservation = value
