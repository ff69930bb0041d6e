"""The labgrid exporter's resource file for a lab host's simulated boards: one group per place.

ADB THROUGH A PLACE (the convention P's ``place.py`` reads; decided after reading labgrid 26.0.1's exporter):
    labgrid has no adb resource. The exporter *would* export a class it does not know (``exports.get(cls,
    ResourceEntry)``: params passed through, always available) and ``labgrid-client env`` shows it, but a client's
    ``Environment``/``RemotePlace`` then fails with "unknown resource class" unless that class is registered on
    every client. So each place exports its adb endpoint as a plain, known class:

        adb:  cls: NetworkService
              address:  host of the lab host's adb server (the ONE server the stand runs, e.g. 127.0.0.1)
              port:     that adb server's port (e.g. 15180)
              username: the device serial as that server lists it (e.g. "127.0.0.1:28195" for a TCP adbd)

    A client uses it as ``adb -H address -P port -s username ...`` (adbutils: AdbClient(host, port).device(serial)).
    No password: the adb server has none. The resource is named ``adb`` (``ssh`` and ``console`` are the others),
    so ``target.get_resource(NetworkService, name="adb")`` finds it.

The other resources of a place (group name = place name):
    console: RawSerialPort {port: /dev/pts/N, speed: BAUD} -- clients see a NetworkSerialPort served by ser2net
             (started by the exporter only while the place is acquired). The *pty* path, not the simulator's
             symlink to it: the exporter asserts the path starts with /dev/. The simulated board's supervisor holds
             the pty for the board's life, so the path survives power cycles.
    ssh:     NetworkService {address, port, username, password}.

The file is a Jinja2 template (labgrid renders it before YAML): ``#`` starts a line statement and ``##`` a
comment, so values that Jinja would read as markup are refused rather than silently mangled.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.errors import ConfigError

#: Text Jinja2 (as labgrid configures it) would treat as markup inside the resource file.
_JINJA_MARKERS = ("{{", "}}", "{%", "%}", "{#", "#}", "##")


@dataclass(frozen=True)
class PlaceExport:
    """Everything one place exports: where its console pty, SSH server and adb device are on the lab host."""

    place: str
    console_path: str
    console_speed: int
    ssh_address: str
    ssh_port: int
    ssh_username: str
    ssh_password: str | None
    adb_server_host: str
    adb_server_port: int
    adb_serial: str

    @classmethod
    def from_sim_endpoints(cls, place: str, endpoints: Mapping[str, Any], adb_server: tuple[str, int]) -> PlaceExport:
        """From what :func:`harness.sim.api.up` returned for the board, plus the lab host's adb server address."""
        try:
            console, ssh, adb = endpoints["console"], endpoints["ssh"], endpoints["adb"]
            return cls(place=place, console_path=str(console["path"]), console_speed=int(console["baud"]),
                       ssh_address=str(ssh["host"]), ssh_port=int(ssh["port"]), ssh_username=str(ssh["user"]),
                       ssh_password=ssh.get("password"), adb_server_host=adb_server[0],
                       adb_server_port=int(adb_server[1]), adb_serial=str(adb["serial"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"simulated board for place {place!r} has incomplete endpoints (missing {exc})") from None

    def group(self) -> dict[str, dict[str, Any]]:
        """The place's resource group as the exporter reads it (resource name -> params with ``cls``)."""
        ssh: dict[str, Any] = {"cls": "NetworkService", "address": self.ssh_address, "port": self.ssh_port,
                               "username": self.ssh_username}
        if self.ssh_password is not None:
            ssh["password"] = self.ssh_password
        return {
            "console": {"cls": "RawSerialPort", "port": self.console_path, "speed": self.console_speed},
            "ssh": ssh,
            "adb": {"cls": "NetworkService", "address": self.adb_server_host, "port": self.adb_server_port,
                    "username": self.adb_serial},
        }


def _check_text(place: str, value: Any) -> None:
    if isinstance(value, dict):
        for item in value.values():
            _check_text(place, item)
    elif isinstance(value, str) and any(m in value for m in _JINJA_MARKERS):
        raise ConfigError(f"place {place!r}: value {value!r} would be read as Jinja2 markup by labgrid-exporter")


def render(exports: Iterable[PlaceExport]) -> str:
    """The exporter YAML text for ``exports`` (one group per place; place names must be unique)."""
    groups: dict[str, Any] = {}
    for export in exports:
        if export.place in groups:
            raise ConfigError(f"place {export.place!r} is listed twice in the exporter configuration")
        _check_text(export.place, export.place)
        group = export.group()
        _check_text(export.place, group)
        groups[export.place] = group
    body = yaml.safe_dump(groups, default_flow_style=False, sort_keys=False)
    return "## written by `npu-hil lab up` (harness/lab/labgrid/exporter_yaml.py); regenerated on every lab up\n" + body


def write(path: Path, exports: Iterable[PlaceExport]) -> Path:
    """Write the exporter YAML to ``path`` (replacing it atomically) and return the path."""
    text = render(exports)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path


__all__ = ["PlaceExport", "render", "write"]
