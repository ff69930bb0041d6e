"""What a board entry in ``boards.toml`` may say. Unknown keys are errors: a typo must not pass silently."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

HOST_PORT = re.compile(r"^[^\s:]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$")


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SerialSpec(_Spec):
    """The serial console: a local tty (``port``) or any pyserial URL (``rfc2217://``, ``socket://``)."""

    port: str | None = None
    url: str | None = None
    baud: int | None = Field(default=None, gt=0)
    login: str = "root"
    password: str | None = None

    @model_validator(mode="after")
    def _one_of(self) -> SerialSpec:
        if bool(self.port) == bool(self.url):
            raise ValueError("give exactly one of 'port' (e.g. /dev/ttyUSB0) or 'url' (e.g. rfc2217://host:port)")
        return self

    @property
    def target(self) -> str:
        return self.url or self.port or ""


class AdbSpec(_Spec):
    """adb: a USB device by ``serial`` or a network device by ``address``; ``server`` is a remote adb server."""

    serial: str | None = None
    address: str | None = None
    server: str | None = None

    @field_validator("address", "server")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is not None and not HOST_PORT.match(value):
            raise ValueError(f"expected HOST:PORT, found {value!r}")
        return value

    @model_validator(mode="after")
    def _one_of(self) -> AdbSpec:
        if not (self.serial or self.address):
            raise ValueError("give 'serial' (from `adb devices`) or 'address' (HOST:PORT of a network device)")
        return self


class SshSpec(_Spec):
    host: str
    port: int = Field(default=22, gt=0, lt=65536)
    user: str = "root"
    key: str | None = None
    password: str | None = None
    host_key_policy: Literal["strict", "accept-new", "insecure"] = "strict"
    known_hosts: str | None = None


class UsbSpec(_Spec):
    location: str | None = None


class SimSpec(_Spec):
    """A simulated board, started on demand; its links come from the simulator's endpoints."""

    profile: str
    faults: list[str] = []
    versions: dict[str, str] = {}


class PlaceAuth(_Spec):
    """What a labgrid place cannot carry: labgrid's NetworkSerialPort has no login and its NetworkService has
    no ssh key or host key, so a place board may give them here (``place_auth = {...}`` in boards.toml).

    The console password defaults to the ssh resource's password (Rockchip images use one root password for
    both). Host keys: the place names a new address after every lab change, so the default is ``accept-new``
    into the run's own known_hosts file; pin keys with ``ssh_known_hosts`` and ``ssh_host_key_policy = "strict"``.
    """

    console_login: str = "root"
    console_password: str | None = None
    ssh_key: str | None = None
    ssh_host_key_policy: Literal["strict", "accept-new", "insecure"] = "accept-new"
    ssh_known_hosts: str | None = None


LinkName = Literal["console", "adb", "ssh"]
PLACE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
TAG_KEY = re.compile(r"^[a-z][a-z0-9_]+$")


class BoardSpec(_Spec):
    name: str
    chip: str
    serial: SerialSpec | None = None
    adb: AdbSpec | None = None
    ssh: SshSpec | None = None
    usb: UsbSpec | None = None
    power: dict[str, Any] = {"type": "none"}
    tags: list[str] = []
    sim: SimSpec | None = None
    toolkit: str | None = None
    link_order: list[LinkName] | None = None
    description: str = ""
    place: str | None = None  # a labgrid place: links come from its resources once acquired
    reserve: dict[str, str] | None = None  # any labgrid place carrying these tags (a reservation)
    coordinator: str | None = None  # HOST:PORT of the labgrid coordinator (else [defaults], else LG_COORDINATOR)
    place_auth: PlaceAuth | None = None
    #: our on-board runner: "python" (python3 + RKNN Toolkit Lite), "native" (C, for images without them),
    #: "auto": python when the board's python3 imports numpy and RKNN Toolkit Lite
    runner: Literal["auto", "python", "native"] = "auto"

    @field_validator("power")
    @classmethod
    def _power_type(cls, value: dict[str, Any]) -> dict[str, Any]:
        kind = value.get("type", "none")
        if not isinstance(kind, str):  # the power drivers are looked up by this name
            raise ValueError(f"power.type: expected a string (none, sim, command, uhubctl), found {kind!r}"[:160])
        return value

    @field_validator("place")
    @classmethod
    def _place_name(cls, value: str | None) -> str | None:
        if value is not None and not PLACE_NAME.match(value):
            raise ValueError(f"expected a labgrid place name (letters, digits, '_.+-'), found {value!r}")
        return value

    @field_validator("coordinator")
    @classmethod
    def _coordinator(cls, value: str | None) -> str | None:
        if value is not None and not HOST_PORT.match(value):
            raise ValueError(f"expected HOST:PORT, found {value!r}")
        return value

    @field_validator("reserve")
    @classmethod
    def _filters(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for key, tag in (value or {}).items():
            if not TAG_KEY.match(key) or not tag or any(c.isspace() or c in "=/" for c in tag):
                raise ValueError(f"expected labgrid tags like soc = \"rk3588\" (key: lower-case letters, digits, "
                                 f"'_'), found {key}={tag!r}")
        return value

    @model_validator(mode="after")
    def _reachable(self) -> BoardSpec:
        sources = [k for k, v in (("sim", self.sim), ("place", self.place), ("reserve", self.reserve)) if v]
        if len(sources) > 1:
            raise ValueError(f"give only one of {', '.join(repr(s) for s in sources)}")
        if not sources and not (self.serial or self.adb or self.ssh):
            raise ValueError("a board needs at least one of 'serial', 'adb', 'ssh' (or 'sim' for a simulated board, "
                             "'place' for a labgrid place)")
        if sources and (self.serial or self.adb or self.ssh):
            what = "the simulator" if self.sim else "the labgrid place's resources"
            hint = "" if self.sim else " (credentials a place cannot carry go in place_auth)"
            raise ValueError(f"a {sources[0]!r} board takes its links from {what}: remove serial/adb/ssh{hint}")
        if (self.coordinator or self.place_auth) and not (self.place or self.reserve):
            raise ValueError("'coordinator' and 'place_auth' only apply to a labgrid board: add place = \"NAME\"")
        return self

    @property
    def is_simulated(self) -> bool:
        return self.sim is not None

    @property
    def is_place(self) -> bool:
        """The board is a labgrid place (named, or any place matching ``reserve``)."""
        return bool(self.place or self.reserve)

    @property
    def link_names(self) -> list[str]:
        """The links this board has: a simulated board or a place has console, adb and ssh (from the simulator or
        the place's resources); any other board those configured here."""
        if self.is_simulated or self.is_place:
            return ["console", "adb", "ssh"]
        return [name for name, key in (("console", "serial"), ("adb", "adb"), ("ssh", "ssh"), ("usb", "usb"))
                if getattr(self, key) is not None]


class Defaults(_Spec):
    """``[defaults]``: values shared by every board unless the board says otherwise."""

    toolkit: dict[str, str] | str | None = None  # "1.7.1", or per NPU generation {rknpu1 = ..., rknpu2 = ...}
    # the board of a bare `pytest` (no --board, no --board-tag) over the lab's suites; a sim- name or a real one
    board: str | None = None
    link_order: list[LinkName] = ["adb", "ssh", "console"]
    command_timeout: float = Field(default=60.0, gt=0)
    boot_timeout: float = Field(default=120.0, gt=0)
    coordinator: str | None = None  # labgrid coordinator HOST:PORT for every place board

    @field_validator("coordinator")
    @classmethod
    def _coordinator(cls, value: str | None) -> str | None:
        if value is not None and not HOST_PORT.match(value):
            raise ValueError(f"expected HOST:PORT, found {value!r}")
        return value

    def toolkit_for(self, npu: str) -> str | None:
        if isinstance(self.toolkit, dict):
            return self.toolkit.get(npu)
        return self.toolkit
