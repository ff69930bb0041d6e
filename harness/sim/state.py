"""Where simulated boards keep their state: one folder per board name under the simulator home.

``$NPU_HIL_SIM_HOME`` (default ``~/.cache/npu-hil/sim``)/NAME/ holds ``config.json`` (what to simulate),
``endpoints.json`` (how to reach it), ``status.json`` (off, booting, running, halted), ``faults.json``,
``root/`` (the board's filesystem: /userdata persists across power cycles), keys and logs.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

#: How the board OS process tells its supervisor what to do next (kept here: importing the supervisor is slow).
EXIT_POWEROFF = 0
EXIT_REBOOT = 10
#: The board's SSH host key in its state folder: made by the supervisor (it advertises the key), served by sshd.
HOST_KEY_FILE = "ssh_host_key"

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def home() -> Path:
    return Path(os.environ.get("NPU_HIL_SIM_HOME") or Path.home() / ".cache" / "npu-hil" / "sim")


def board_dir(name: str) -> Path:
    if not NAME_RE.match(name):
        raise ValueError(f"invalid board name {name!r}: use letters, digits, '.', '_' and '-'")
    return home() / name


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.replace(tmp, path)


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False
