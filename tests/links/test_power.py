"""Power drivers with real subprocesses: the lab's commands, a uhubctl stand-in, a simulated board.

No USB hub exists on the test host, so uhubctl is replaced at the subprocess boundary by a small script that
keeps a hub's port state in a file and prints uhubctl's real output format (uhubctl.c: "Current status for
hub %s [%s]", "  Port %d: %04x" with " off" / " power" ... flags, "Sent power %s request", "New status ...").
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from harness.errors import BoardError, ConfigError
from harness.links.power import CommandPower, NoPower, PowerDriver, SimPower, UhubctlPower, make_power, port_states

ROOT = Path(__file__).resolve().parents[2]


def _gone(pid: int) -> bool:
    """The process no longer runs: absent, or a zombie waiting for a parent that is not us."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return True
    return fields[0] in ("Z", "X")


def _wait_gone(pid: int, deadline_s: float = 10.0) -> bool:
    deadline = time.monotonic() + deadline_s
    while not _gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture
def pidfiles(tmp_path):
    """PID files a test's commands write; whatever still runs at the end is killed by its PID."""
    files: list[Path] = []
    yield lambda name: files.append(tmp_path / name) or tmp_path / name
    for f in files:
        if f.exists() and f.read_text().strip():
            pid = int(f.read_text())
            if not _gone(pid):
                os.kill(pid, signal.SIGKILL)


# ---- none, sim --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("action", ["on", "off", "cycle"])
def test_no_power_says_how_to_add_it(action):
    driver = make_power({"type": "none"}, "rv1126-bench-01")
    with pytest.raises(BoardError) as info:
        getattr(driver, action)()
    assert "board rv1126-bench-01 has no power control; set [boards.rv1126-bench-01.power]" in str(info.value)
    assert "uhubctl" in info.value.fix


def test_every_driver_is_a_power_driver():
    drivers = [NoPower("b"), SimPower("b"), CommandPower("true", "true"), UhubctlPower("1-2", 3),
               make_power({}, "b")]
    assert all(isinstance(d, PowerDriver) and d.name for d in drivers)


def test_power_module_does_not_load_the_simulator():
    code = "import sys, harness.links.power; print(any(m.startswith('harness.sim') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


def test_sim_power_without_that_board_is_a_board_error(tmp_path, monkeypatch):
    monkeypatch.setenv("NPU_HIL_SIM_HOME", str(tmp_path))
    with pytest.raises(BoardError, match="cannot power off simulated board nowhere-01: .*no simulated board"):
        SimPower("nowhere-01").off()


@pytest.fixture
def sim_board(tmp_path, monkeypatch):
    from harness.sim import api

    monkeypatch.setenv("NPU_HIL_SIM_HOME", str(tmp_path / "sim"))
    name = f"power-{os.getpid()}"
    api.up("rv1126", name=name, owner_pid=os.getpid(), fresh=True, timeout=60)
    try:
        yield name
    finally:
        api.down(name)  # stops the supervisor and the board by their PIDs


SETTLED = {"running", "halted", "crashed", "failed"}


def test_sim_power_switches_a_simulated_board(sim_board):
    from harness.sim import api

    power = make_power({"type": "sim"}, sim_board)
    power.off()
    assert api.status(sim_board)["power"] == "off"
    power.on()
    assert api.wait_state(sim_board, SETTLED, timeout=60) == "running"
    boots = api.status(sim_board)["status"]["boot"]
    power.cycle()
    assert api.wait_state(sim_board, SETTLED, timeout=60) == "running"
    assert api.status(sim_board)["status"]["boot"] == boots + 1


# ---- command ----------------------------------------------------------------------------------------------

def test_command_power_runs_the_lab_commands(tmp_path):
    log = tmp_path / "relay log.txt"  # a space: the placeholder must stay one word inside sh -c
    power = make_power({"type": "command", "on_cmd": 'sh -c "echo {board} on {outlet} >> {log}"',
                        "off_cmd": 'sh -c "echo {board} off {outlet} >> {log}"', "off_seconds": 0,
                        "vars": {"outlet": 3, "log": str(log)}}, "rk3588-01")
    power.on()
    power.off()
    power.cycle()
    assert log.read_text().splitlines() == ["rk3588-01 on 3", "rk3588-01 off 3", "rk3588-01 off 3",
                                            "rk3588-01 on 3"]


def test_command_values_stay_one_argument(tmp_path, monkeypatch):
    out = tmp_path / "argv.txt"
    hostile = "a b; touch pwned $(id)"
    power = CommandPower(on_cmd="{python} -c 'import sys; open(sys.argv[1], \"w\").write(repr(sys.argv[2:]))' "
                                "{out} {value}", off_cmd="true",
                         values={"python": sys.executable, "out": str(out), "value": hostile})
    monkeypatch.chdir(tmp_path)  # where an injected `touch pwned` would land
    power.on()
    assert out.read_text() == repr([hostile])
    assert not (tmp_path / "pwned").exists()


def test_command_env_is_passed(tmp_path):
    out = tmp_path / "env.txt"
    power = CommandPower("sh -c 'printf %s \"$RELAY_HOST\" > {out}'", "true", env={"RELAY_HOST": "pdu-2 rack 4"},
                         values={"out": str(out)})
    power.on()
    assert out.read_text() == "pdu-2 rack 4"


def test_failing_command_reports_its_stderr():
    power = CommandPower("sh -c 'echo relay 3 is busy >&2; exit 3'", "true")
    with pytest.raises(BoardError, match="power on .* exited with 3: relay 3 is busy"):
        power.on()


def test_missing_program_is_a_board_error():
    with pytest.raises(BoardError, match="cannot run /nonexistent/relayctl off 3"):
        CommandPower("true", "/nonexistent/relayctl off 3").off()


def test_hanging_command_is_killed_with_its_children(tmp_path, pidfiles):
    shell, child = pidfiles("shell.pid"), pidfiles("child.pid")
    power = CommandPower("sh -c 'echo $$ > {shell}; sleep 300 & echo $! > {child}; wait'", "true", timeout=1,
                         values={"shell": str(shell), "child": str(child)})
    with pytest.raises(BoardError, match="did not finish within 1 s .killed."):
        power.on()
    assert _wait_gone(int(shell.read_text())), "the command's shell still runs"
    assert _wait_gone(int(child.read_text())), "the command's child still runs"


@pytest.mark.parametrize("spec, error", [
    ({"type": "relay"}, "unknown power type 'relay'; one of none, sim, command, uhubctl"),
    ({"type": "command", "on_cmd": "x"}, "type 'command' needs off_cmd"),
    ({"type": "command", "on_cmd": "x", "off_cmd": "y", "on": "z"}, r"unknown key\(s\) on for type 'command'"),
    ({"type": "command", "on_cmd": "relayctl {outlet} on", "off_cmd": "y"}, r"uses \{outlet\} with no value"),
    ({"type": "command", "on_cmd": "sh -c 'unclosed", "off_cmd": "y"}, "No closing quotation"),
    ({"type": "command", "on_cmd": "x", "off_cmd": "y", "timeout": 0}, "positive number of seconds"),
    ({"type": "command", "on_cmd": "x", "off_cmd": " ", "vars": {}}, "off_cmd must be a command"),
    ({"type": "uhubctl", "location": "1-2"}, "type 'uhubctl' needs port"),
    ({"type": "uhubctl", "location": "hub one", "port": 3}, "not a hub location"),
    ({"type": "uhubctl", "location": "1-2", "port": "3; reboot"}, "port number from 1 to 31"),
    ({"type": "sim", "board": "x"}, r"unknown key\(s\) board for type 'sim'; allowed: none"),
])
def test_bad_power_tables_are_config_errors(spec, error):
    with pytest.raises(ConfigError, match=error) as info:
        make_power(spec, "bench-7")
    assert str(info.value).startswith("[boards.bench-7.power]: ")


# ---- uhubctl ----------------------------------------------------------------------------------------------

FAKE_UHUBCTL = textwrap.dedent('''\
    #!{python}
    """uhubctl stand-in: hub {hub} (USB 2.0, 4 ports), port state kept in a file; prints uhubctl's format."""
    import argparse, json, pathlib, sys
    here = pathlib.Path(__file__).parent
    ap = argparse.ArgumentParser()
    ap.add_argument("-l"); ap.add_argument("-p", type=int); ap.add_argument("-a"); ap.add_argument("-d")
    args = ap.parse_args()
    with open(here / "calls.log", "a") as log:
        log.write(json.dumps(sys.argv[1:]) + "\\n")
    if args.l != "{hub}":
        sys.stderr.write(f"No compatible devices detected at location {{args.l}}!\\nRun with -h to get usage info.\\n")
        sys.exit(1)
    state_file = here / "port_on.json"
    ports = json.loads(state_file.read_text()) if state_file.exists() else {{"1": 1, "2": 1, "3": 1, "4": 1}}
    def show(kind):
        print(f"{{kind}} status for hub {hub} [05e3:0608 GenesysLogic USB2.0 Hub, USB 2.00, 4 ports, ppps]")
        status = 0x0503 if ports[str(args.p)] else 0
        flags = " power highspeed enable connect [2207:0006 rockchip rk3588 a1b2c3]" if status else " off"
        print(f"  Port {{args.p}}: {{status:04x}}{{flags}}")
    for k in ([0, 1] if args.a == "cycle" else [1 if args.a == "on" else 0]):
        show("Current")
        if not {ganged}:
            ports[str(args.p)] = k
        print(f"Sent power {{'on' if k else 'off'}} request")
        show("New")
    state_file.write_text(json.dumps(ports))
''')


def fake_uhubctl(folder: Path, *, hub: str = "1-2", ganged: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "uhubctl"
    script.write_text(FAKE_UHUBCTL.format(python=sys.executable, hub=hub, ganged=ganged))
    script.chmod(0o755)
    return script


def _calls(folder: Path) -> list[list[str]]:
    import json

    return [json.loads(line) for line in (folder / "calls.log").read_text().splitlines()]


def test_uhubctl_switches_and_confirms_the_port(tmp_path):
    script = fake_uhubctl(tmp_path / "bin")
    power = make_power({"type": "uhubctl", "location": "1-2", "port": 3, "uhubctl": str(script),
                        "off_seconds": 0.5}, "rk3588-01")
    power.off()
    assert port_states(subprocess.run([str(script), "-l", "1-2", "-p", "3"], capture_output=True, text=True,
                                      timeout=30).stdout, "1-2", 3)[0] == ("Current", "off")
    power.on()
    power.cycle()
    calls = _calls(tmp_path / "bin")
    assert calls[0] == ["-l", "1-2", "-p", "3", "-a", "off"]
    assert calls[2] == ["-l", "1-2", "-p", "3", "-a", "on"]
    assert calls[3] == ["-l", "1-2", "-p", "3", "-a", "cycle", "-d", "0.5"]


def test_uhubctl_found_on_path(tmp_path, monkeypatch):
    fake_uhubctl(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    UhubctlPower("1-2", 1).off()
    assert _calls(tmp_path / "bin") == [["-l", "1-2", "-p", "1", "-a", "off"]]


def test_uhubctl_ganged_hub_is_caught(tmp_path):
    power = UhubctlPower("1-2", 2, uhubctl=str(fake_uhubctl(tmp_path / "bin", ganged=True)))
    with pytest.raises(BoardError, match="port is on after the request, not off") as info:
        power.off()
    assert "ganged" in info.value.fix
    with pytest.raises(BoardError, match="the port never showed off"):
        power.cycle(0)


def test_uhubctl_wrong_hub_reports_uhubctl_error(tmp_path):
    power = UhubctlPower("3-1", 2, uhubctl=str(fake_uhubctl(tmp_path / "bin")))
    with pytest.raises(BoardError, match="exited with 1: .*No compatible devices detected at location 3-1!|"
                                         "exited with 1: Run with -h"):
        power.on()


def test_uhubctl_missing_names_the_package(tmp_path):
    with pytest.raises(BoardError) as info:
        UhubctlPower("1-2", 2, uhubctl=str(tmp_path / "no-uhubctl")).on()
    assert "uhubctl not found" in str(info.value) and "apt-get install uhubctl" in info.value.fix


def test_port_states_reads_real_uhubctl_output():
    output = textwrap.dedent("""\
        Current status for hub 2-1 [2109:0813 VIA Labs, Inc. USB3.0 Hub, USB 3.00, 4 ports, ppps]
          Port 1: 02a0 power 5gbps Rx.Detect
          Port 2: 0263 power 5gbps U3 enable connect [0bda:8153 Realtek USB 10/100/1000 LAN 000001]
        Current status for hub 1-1 [2109:2813 VIA Labs, Inc. USB2.0 Hub, USB 2.10, 4 ports, ppps]
          Port 2: 0503 power highspeed enable connect [2207:350b]
        Sent power off request
        New status for hub 1-1 [2109:2813 VIA Labs, Inc. USB2.0 Hub, USB 2.10, 4 ports, ppps]
          Port 2: 0000 off
        """)
    assert port_states(output, "1-1", 2) == [("Current", "on"), ("New", "off")]
    assert port_states(output, "2-1", 2) == [("Current", "on")]
    assert port_states(output, "2-1", 3) == []
