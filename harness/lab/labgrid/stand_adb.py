"""The lab host's one adb server: started for the stand, ``adb connect``-ed to every simulated board's adbd.

Why one server: a real lab host has one adb server that owns its USB devices; every place exports where that
server is and its device's serial (the convention is in :mod:`.exporter_yaml`), so clients never start their own.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from adbutils.errors import AdbError

from harness.errors import HarnessError
from harness.lab.labgrid import stand_files as files
from harness.lab.labgrid import stand_procs as procs
from harness.lab.labgrid.stand_procs import StepFailed
from harness.links.adb_server import AdbServer
from harness.links.ports import free_port, port_in_use

HOST = "127.0.0.1"


def log_line(log: Path, text: str) -> None:
    with open(log, "a") as out:
        out.write(f"[npu-hil lab] {text}\n")


def start_adb_server(state: dict[str, Any], lab_dir: Path, adb_port: int | None, timeout: float) -> AdbServer:
    """The lab host's one adb server: ``adb -P PORT nodaemon server`` (loopback only), its own HOME under lab_dir.

    Debian's adb cannot bind a given address (``-L tcp:127.0.0.1:P`` aborts); ``-P`` listens on localhost only.
    """
    port = adb_port or free_port()
    log = lab_dir / "logs" / "adb-server.log"
    server = AdbServer(port=port, home=lab_dir / "adb-home", usb=False, host=HOST)
    if server.answers() or port_in_use(HOST, port):
        raise StepFailed("start adb server", f"port {port} is already in use", log)
    (server.home / "tmp").mkdir(parents=True, exist_ok=True)
    state["adb_port"] = port
    state["adb_proc"] = procs.spawn([str(server.adb), "-P", str(port), "nodaemon", "server"], log=log,
                                    cwd=lab_dir, env=server.environment())
    files.write_state(lab_dir, state)
    try:
        server.wait_answering(min(10.0, timeout))
    except HarnessError as exc:
        raise StepFailed("start adb server", str(exc), log) from None
    return server


def connect_boards(server: AdbServer, serials: list[str], log: Path, timeout: float) -> None:
    """``adb connect`` every board's adbd and wait (bounded) until the server lists each as ``device``."""
    client = server.client(socket_timeout=5.0)
    deadline = time.monotonic() + min(20.0, timeout)
    seen: dict[str, str] = {}
    while True:
        try:
            seen = dict(client.devices_raw())
        except (AdbError, OSError) as exc:
            log_line(log, f"adb devices: {exc}")
        for serial in serials:
            if serial not in seen:
                try:
                    client.connect(serial, timeout=5.0)
                except (AdbError, OSError) as exc:  # the server may still be settling: the wait below judges
                    log_line(log, f"adb connect {serial}: {exc}")
        if all(seen.get(s) == "device" for s in serials):
            return
        if time.monotonic() >= deadline:
            bad = ", ".join(f"{s} ({seen.get(s, 'absent')})" for s in serials if seen.get(s) != "device")
            raise StepFailed("adb connect boards", f"not online on the lab adb server: {bad}", log)
        time.sleep(0.1)
