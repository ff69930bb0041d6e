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
    def _one_of(self) -> "SerialSpec":
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
    def _one_of(self) -> "AdbSpec":
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


LinkName = Literal["console", "adb", "ssh"]


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

    @model_validator(mode="after")
    def _reachable(self) -> "BoardSpec":
        if self.sim is None and not (self.serial or self.adb or self.ssh):
            raise ValueError("a board needs at least one of 'serial', 'adb', 'ssh' (or 'sim' for a simulated board)")
        if self.sim is not None and (self.serial or self.adb or self.ssh):
            raise ValueError("a simulated board ('sim') takes its links from the simulator: remove serial/adb/ssh")
        return self

    @property
    def is_simulated(self) -> bool:
        return self.sim is not None


class Defaults(_Spec):
    """``[defaults]``: values shared by every board unless the board says otherwise."""

    toolkit: dict[str, str] | str | None = None  # "1.7.1", or per NPU generation {rknpu1 = ..., rknpu2 = ...}
    link_order: list[LinkName] = ["adb", "ssh", "console"]
    command_timeout: float = Field(default=60.0, gt=0)
    boot_timeout: float = Field(default=120.0, gt=0)

    def toolkit_for(self, npu: str) -> str | None:
        if isinstance(self.toolkit, dict):
            return self.toolkit.get(npu)
        return self.toolkit
