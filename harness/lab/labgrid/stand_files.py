"""The files a lab stand leaves in its folder: ``stand.json`` (every PID, port and name), ``boards.toml``,
``known_hosts``.

Why a state file: ``lab up`` returns while its processes keep running; ``lab down``, ``lab status`` and
``restart_exporter`` run later, possibly in another process, and must find exactly those processes again.
It is rewritten after every process the stand starts, so a ``lab up`` that fails half-way can still be torn down.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

STATE_NAME = "stand.json"
BOARDS_NAME = "boards.toml"
KNOWN_HOSTS_NAME = "known_hosts"


def state_path(lab_dir: Path) -> Path:
    return Path(lab_dir) / STATE_NAME


def read_state(lab_dir: Path) -> dict[str, Any] | None:
    """The recorded stand, or None if there is none (or the file is unreadable: a stand we cannot know)."""
    try:
        return json.loads(state_path(lab_dir).read_text())
    except (OSError, ValueError):
        return None


def write_state(lab_dir: Path, state: Mapping[str, Any]) -> None:
    """Replace the state file atomically (a reader never sees half of it)."""
    path = state_path(lab_dir)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
    tmp.replace(path)


def remove_state(lab_dir: Path) -> None:
    state_path(lab_dir).unlink(missing_ok=True)


def _toml_str(value: str) -> str:
    """A TOML basic string (JSON's escaping is a subset TOML accepts for these plain names and addresses)."""
    return json.dumps(value)


def write_boards_toml(lab_dir: Path, coordinator: str, places: Sequence[Mapping[str, str]],
                      toolkit: Mapping[str, str], tags: Sequence[str] = ("lab",)) -> Path:
    """The inventory naming every place of the stand (schema: harness/config/models.py, owned by the config code).

    ``places`` items have ``name``, ``chip``; ``toolkit`` maps NPU generation to the toolkit version.
    """
    lines = ["# written by `npu-hil lab up`: one board per labgrid place of this stand", "[defaults]",
             f"coordinator = {_toml_str(coordinator)}",
             "toolkit = { " + ", ".join(f"{k} = {_toml_str(v)}" for k, v in sorted(toolkit.items())) + " }", ""]
    tag_list = "[" + ", ".join(_toml_str(t) for t in tags) + "]"
    for place in places:
        lines += [f"[boards.{_toml_str(place['name'])}]", f"chip = {_toml_str(place['chip'])}",
                  f"place = {_toml_str(place['name'])}", f"tags = {tag_list}",
                  # the stand knows its boards' host keys: pin them (labgrid cannot carry host keys)
                  f"place_auth = {{ ssh_known_hosts = {_toml_str(str(Path(lab_dir) / KNOWN_HOSTS_NAME))}, "
                  f'ssh_host_key_policy = "strict" }}', ""]
    path = Path(lab_dir) / BOARDS_NAME
    path.write_text("\n".join(lines))
    return path


def write_known_hosts(lab_dir: Path, entries: Sequence[tuple[str, int, str]]) -> Path:
    """OpenSSH known_hosts lines ``[host]:port keytype key`` for the simulated boards' SSH host keys.

    The places export the SSH address but labgrid cannot carry a host key; with this file a client can keep
    strict host-key checking against the stand's boards.
    """
    path = Path(lab_dir) / KNOWN_HOSTS_NAME
    path.write_text("".join(f"[{host}]:{port} {' '.join(key.split()[:2])}\n" for host, port, key in entries))
    return path
