"""labgrid places as boards, against a real stand: coordinator, exporter, ser2net, adb server, simulated boards.

Each test talks to the coordinator the way a run does (PlaceLock, resolve_links, open_board) and checks the
outcome the way an engineer would, with ``labgrid-client`` (support.lab.labgrid_client) or over the links.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from support.lab import holder_of, lab_fixture, labgrid_client
from support.processes import alive, wait_until

from harness.config.loader import load_inventory, parse_inventory
from harness.connect import open_board
from harness.errors import BoardBusy, BoardError, ConfigError
from harness.lab.labgrid.client import LabgridClient
from harness.lab.labgrid.place import PlaceLock, held_place, resolve_links
from harness.lab.labgrid.stand import restart_exporter
from harness.lab.labgrid.stand_files import read_state
from harness.sim import api

pytestmark = pytest.mark.timeout(180)
REPO = Path(__file__).resolve().parents[2]

#: Helper P's adb server ports; a port still in TIME_WAIT from a previous run is skipped.
ADB_PORTS = range(15190, 15195)


lab = lab_fixture(adb_ports=ADB_PORTS)


def inventory(lab):
    return load_inventory(lab.boards_file)


def start_holder(lab, place: str, tmp_path: Path) -> subprocess.Popen:
    """Another run, in its own process: acquires ``place`` through PlaceLock and keeps it until killed."""
    code = textwrap.dedent(f"""
        import sys, time
        from harness.config.loader import load_inventory
        from harness.lab.labgrid.place import PlaceLock
        inv = load_inventory({str(lab.boards_file)!r})
        lock = PlaceLock(inv.get({place!r}), inv)
        lock.guard_log = {str(tmp_path / "guard.log")!r}
        lock.acquire(30)
        print("held", flush=True)
        time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)
    line = proc.stdout.readline()
    if line.strip() != "held":
        proc.kill()
        proc.wait(timeout=10)
        pytest.fail(f"holder did not acquire {place}: {line!r}")
    return proc


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)
    proc.stdout.close()


@pytest.mark.parametrize(("entry", "expected"), [
    ('chip = "rv1126"\nplace = "rv1126-01"\n', "needs a coordinator: set coordinator"),
    ('chip = "rv1126"\nplace = "rv 1126"\ncoordinator = "h:1"\n', "place: expected a labgrid place name"),
    ('chip = "rv1126"\nplace = "p"\ncoordinator = "h:1"\nssh = { host = "h" }\n', "remove serial/adb/ssh"),
    ('chip = "rv1126"\nplace = "p"\ncoordinator = "nohostport"\n', "coordinator: expected HOST:PORT"),
    ('chip = "rv1126"\nplace = "p"\ncoordinator = "h:1"\nplace_auth = { ssh_kye = "k" }\n', "ssh_kye: unknown key"),
    ('chip = "rv1126"\nssh = { host = "h" }\ncoordinator = "h:1"\n', "only apply to a labgrid board"),
])
def test_bad_place_entries_are_one_line_config_errors(entry: str, expected: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LG_COORDINATOR", raising=False)
    with pytest.raises(ConfigError) as err:
        parse_inventory("[boards.b1]\n" + entry, "lab.toml")
    assert expected in str(err.value) and str(err.value).startswith("lab.toml: [boards.b1]"), str(err.value)
    assert "\n" not in str(err.value)


def test_coordinator_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LG_COORDINATOR", "10.0.0.5:20408")
    inv = parse_inventory('[boards.b1]\nchip = "rk3588"\nplace = "rk3588-01"\n', "lab.toml")
    assert inv.coordinator_for(inv.get("b1")) == "10.0.0.5:20408"
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        inv.select([], ["nightly"])  # no board has it; a bare tag cannot be a reservation filter
    with pytest.raises(ConfigError, match="needs soc=<chip>"):
        inv.select([], ["npu=rknpu2"])


def test_acquire_resolve_open_release(lab, tmp_path: Path) -> None:
    inv = inventory(lab)
    spec = inv.get("rv1126-01")
    lock = PlaceLock(spec, inv)
    lock.check()
    lock.acquire(wait=10)
    try:
        me = LabgridClient(lab.coordinator).me
        assert holder_of(lab.coordinator, "rv1126-01") == me
        settings = resolve_links(spec, inv, tmp_path)
        assert settings["serial"].url.startswith("rfc2217://127.0.0.1:")
        assert settings["serial"].url.endswith("?ign_set_control")
        assert settings["adb"]["server"] == lab.adb_server
        board = open_board(spec, inv, run_dir=tmp_path)
        try:
            for link in ("console", "ssh", "adb"):
                result = board.shell("cat /proc/device-tree/compatible 2>/dev/null || hostname", link=link)
                assert result.exit_code == 0 and "rv1126" in result.stdout, (link, result)
        finally:
            board.close()
        guard_pid = lock.guard_pid
        assert guard_pid and alive(guard_pid)
    finally:
        lock.release()
        lock.release()  # idempotent
    assert holder_of(lab.coordinator, "rv1126-01") is None
    assert held_place(spec) is None
    assert not alive(guard_pid)  # told to stand down and reaped: it did not release a second time


def test_held_place_is_busy_then_freed_when_holder_is_killed(lab, tmp_path: Path) -> None:
    holder = start_holder(lab, "rv1126-01", tmp_path)
    try:
        inv = inventory(lab)
        with pytest.raises(BoardBusy) as busy:
            PlaceLock(inv.get("rv1126-01"), inv).acquire(wait=1)
        message = str(busy.value)
        assert f"pid {holder.pid}" in message and "since " in message and "--board-wait" in message, message
        assert "\n" not in message
        os.kill(holder.pid, signal.SIGKILL)  # no release, no atexit: only the guard can free the place
        holder.wait(timeout=10)
        waiter = PlaceLock(inv.get("rv1126-01"), inv)
        waiter.acquire(wait=30)
        try:
            assert holder_of(lab.coordinator, "rv1126-01") == waiter.client.me
        finally:
            waiter.release()
        assert "is gone: releasing" in (tmp_path / "guard.log").read_text()
    finally:
        stop(holder)


def test_waiter_gets_the_place_the_holder_releases(lab, tmp_path: Path) -> None:
    inv = inventory(lab)
    first = PlaceLock(inv.get("rk3588-02"), inv)
    first.acquire(wait=5)
    code = textwrap.dedent(f"""
        from harness.config.loader import load_inventory
        from harness.lab.labgrid.place import PlaceLock
        inv = load_inventory({str(lab.boards_file)!r})
        lock = PlaceLock(inv.get("rk3588-02"), inv)
        print("waiting", flush=True)
        lock.acquire(60)
        print("acquired", flush=True)
        lock.release()
    """)
    waiter = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True,
                              stdin=subprocess.DEVNULL)
    try:
        assert waiter.stdout.readline().strip() == "waiting"
        first.release()
        assert waiter.stdout.readline().strip() == "acquired"
        assert waiter.wait(timeout=30) == 0
    finally:
        first.release()
        stop(waiter)
    assert holder_of(lab.coordinator, "rk3588-02") is None


def test_links_come_back_after_an_exporter_restart(lab, tmp_path: Path) -> None:
    inv = inventory(lab)
    spec = inv.get("rv1126-01")
    lock = PlaceLock(spec, inv)
    lock.acquire(wait=10)
    try:
        board = open_board(spec, inv, run_dir=tmp_path)
        try:
            before = board.links["console"].url
            restart_exporter(lab.lab_dir)
            result = board.shell("echo back-on-$((40+2))", link="console")
            assert result.exit_code == 0 and "back-on-42" in result.stdout
            assert board.links["console"].url != before  # ser2net came back on a new port, resolved again
            assert board.shell("echo ssh-ok", link="ssh").stdout.strip() == "ssh-ok"
        finally:
            board.close()
    finally:
        lock.release()
    assert holder_of(lab.coordinator, "rv1126-01") is None


def test_board_tag_reserves_a_matching_place(lab, tmp_path: Path) -> None:
    inv = parse_inventory(f'[defaults]\ncoordinator = "{lab.coordinator}"\n', "tags.toml", tmp_path / "tags.toml")
    (spec,) = inv.select([], ["soc=rk3588"])
    assert spec.reserve == {"soc": "rk3588"} and spec.chip == "rk3588"
    lock = PlaceLock(spec, inv)
    lock.check()
    lock.acquire(wait=10)
    try:
        assert held_place(spec) == "rk3588-02"
        assert holder_of(lab.coordinator, "rk3588-02") == lock.client.me
        assert resolve_links(spec, inv, tmp_path)["ssh"]["host"] == "127.0.0.1"
        (second,) = inv.select([], ["soc=rk3588", "npu=rknpu2"])
        other = PlaceLock(second, inv)  # the only rk3588 place is taken: a second reservation waits, then fails
        with pytest.raises(BoardBusy, match=r"rk3588-02 .*held by|held by .*pid"):
            other.acquire(wait=1)
    finally:
        lock.release()
    assert holder_of(lab.coordinator, "rk3588-02") is None
    done = labgrid_client(lab.coordinator, "reservations")
    assert "token" not in done.stdout  # every reservation was cancelled: none blocks the place for a minute


def test_coordinator_down_is_one_line(lab, tmp_path: Path) -> None:
    inv = parse_inventory('[boards.x]\nchip = "rv1126"\nplace = "rv1126-01"\ncoordinator = "127.0.0.1:9"\n',
                          "down.toml")
    with pytest.raises(BoardError) as err:
        PlaceLock(inv.get("x"), inv).check()
    assert "127.0.0.1:9 is not reachable" in str(err.value) and "\n" not in str(err.value)


def test_unknown_place_lists_the_real_ones(lab) -> None:
    inv = parse_inventory(f'[boards.x]\nchip = "rv1126"\nplace = "rv1126-99"\ncoordinator = "{lab.coordinator}"\n',
                          "unknown.toml")
    with pytest.raises(ConfigError) as err:
        PlaceLock(inv.get("x"), inv).check()
    text = str(err.value)
    assert "no place 'rv1126-99'" in text and "rv1126-01" in text and "rk3588-02" in text and "\n" not in text


def test_place_without_exported_resources(lab) -> None:
    for args in (("create",), ("add-match", "lab-host-gone/rv1126-77/*")):
        done = labgrid_client(lab.coordinator, "-p", "rv1126-77", *args)
        assert done.returncode == 0, done.stderr
    try:
        inv = parse_inventory(f'[boards.x]\nchip = "rv1126"\nplace = "rv1126-77"\n'
                              f'coordinator = "{lab.coordinator}"\n', "gone.toml")
        with pytest.raises(BoardError, match="no exported resources .*exporter running"):
            PlaceLock(inv.get("x"), inv).check()
    finally:
        labgrid_client(lab.coordinator, "-p", "rv1126-77", "delete")


def test_stopped_board_or_exporter_makes_the_place_unusable(lab) -> None:
    """Last on purpose: it stops the rk3588 board and the exporter (lab_down tolerates both being gone)."""
    inv = inventory(lab)
    lock = PlaceLock(inv.get("rk3588-02"), inv)
    lock.check()
    api.down("rk3588-02")
    with pytest.raises(BoardError) as err:
        lock.check()
    assert "not answering: ssh" in str(err.value) and "\n" not in str(err.value)
    exporter = read_state(lab.lab_dir)["exporter_proc"]["pid"]
    os.kill(exporter, signal.SIGTERM)
    assert wait_until(lambda: not alive(exporter), 10)
    inv = inventory(lab)
    lock = PlaceLock(inv.get("rv1126-01"), inv)

    def unusable() -> str | None:
        try:
            lock.check()
        except BoardError as exc:
            return str(exc)
        return None

    assert wait_until(unusable, 20), "rv1126-01 still looks usable with its exporter gone"
    assert "exporter" in unusable()
