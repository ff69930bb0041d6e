"""``npu-hil nightly``: two real nights on simulated boards, the second with an injected version mismatch.

Each night is the real command (a subprocess), which runs the real pytest over the repo's suites on every board
with the tag, gates, archives and appends to the history. Exit codes: 0 GO, 1 NO-GO, 2 when the night could not
be made.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.browser import element, render

from harness.report import history

REPO = Path(__file__).resolve().parents[2]
SUITES = [str(REPO / "suites" / name) for name in ("test_versions.py", "test_inference.py", "test_latency.py")]
RUN_SUITES = ("-q", "-p", "fixtures.suite_packages", *SUITES)
BOARDS = """
[defaults]
toolkit = {{ rknpu1 = "1.7.1", rknpu2 = "2.3.2" }}

[boards.lab-rv1126]
chip = "rv1126"
sim = {{ profile = "rv1126"{versions} }}
tags = ["nightly"]

[boards.lab-rk3588]
chip = "rk3588"
sim = {{ profile = "rk3588" }}
tags = ["nightly"]
"""


@pytest.fixture
def lab(tmp_path: Path) -> Path:
    (tmp_path / "sim").mkdir()
    return tmp_path


def nightly(lab: Path, *args: str, versions: str = "",
            pytest_args: tuple[str, ...] = RUN_SUITES) -> subprocess.CompletedProcess:
    (lab / "boards.toml").write_text(BOARDS.format(versions=versions))
    env = dict(os.environ, NPU_HIL_SIM_HOME=str(lab / "sim"), PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "harness", "nightly", "--boards-file", "boards.toml", *args,
                           "--", *pytest_args], cwd=lab, env=env, capture_output=True, text=True, timeout=600)


def test_two_nights_give_a_history_whose_second_night_is_no_go(lab: Path) -> None:
    first = nightly(lab)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    second = nightly(lab, "--keep", "1", versions=', versions = { rknn_server = "1.6.0" }')
    assert second.returncode == 1, second.stdout[-3000:] + second.stderr[-3000:]
    assert "rknn_server: expected 1.7.1, found 1.6.0" in second.stdout

    archive = lab / "reports" / "nightly"
    records = history.read(archive)
    nights = sorted({r["night"] for r in records})
    assert len(nights) == 2 and len(records) == 4  # two nights x two boards
    by = {(r["night"], r["board"]): r for r in records}
    assert by[(nights[0], "lab-rv1126")]["verdict"] == "GO" and by[(nights[0], "lab-rk3588")]["verdict"] == "GO"
    bad = by[(nights[1], "lab-rv1126")]
    assert bad["verdict"] == "NO-GO" and bad["night_verdict"] == "NO-GO"
    assert bad["versions"]["rknn_server"] == "1.6.0" and by[(nights[0], "lab-rv1126")]["versions"][
        "rknn_server"] == "1.7.1"
    assert by[(nights[1], "lab-rk3588")]["verdict"] == "GO"  # the other board's night was fine
    good = by[(nights[0], "lab-rv1126")]
    assert good["counts"]["passed"] > 0 and good["counts"]["failed"] == 0
    assert set(good["latency_ms"]) >= {"classifier"} and good["latency_ms"]["classifier"] > 0
    assert good["accuracy"]["classifier"] == 1.0 and good["firmware"]
    # --keep 1: the first night's folder is gone, its history is not
    assert not (archive / nights[0]).exists() and (archive / nights[1] / "gate" / "gate.html").is_file()

    # the second night's page, as Chromium renders it, shows both nights: GO then NO-GO for the board
    dom, _ = render(lab, archive / nights[1] / "gate" / "gate.html")
    assert element(dom, "verdict").attrs["data-verdict"] == "NO-GO"
    table = element(dom, "history")
    cells = [(a.get("data-night"), a.get("data-verdict")) for tag, a in table.inside if "data-night" in a]
    # rows by board (lab-rk3588, lab-rv1126), a cell per night, oldest first
    assert cells == [(nights[0], "GO"), (nights[1], "GO"), (nights[0], "GO"), (nights[1], "NO-GO")], cells
    charts = element(dom, "history-latency")
    drawn = {(a.get("data-board"), a.get("data-model")) for tag, a in charts.inside if "data-model" in a}
    assert ("lab-rv1126", "classifier") in drawn and any(tag == "polyline" for tag, _ in charts.inside)
    md = (archive / nights[1] / "gate" / "gate.md").read_text()
    assert "## The last 2 night(s)" in md and "| lab-rv1126 | ✓ GO | ✗ NO-GO |" in md


def test_a_night_that_cannot_be_made_exits_2_and_is_recorded(lab: Path) -> None:
    broken = nightly(lab, pytest_args=("--no-such-option",))  # pytest refuses to start: exit 4
    assert broken.returncode == 2, broken.stdout + broken.stderr
    assert "NOT RUN: pytest exited 4" in broken.stdout
    last = [r for r in history.read(lab / "reports" / "nightly") if r["night_verdict"] == "NOT-RUN"]
    assert {r["board"] for r in last} == {"lab-rv1126", "lab-rk3588"}


def test_no_board_with_the_tag_is_one_line_and_exit_2(lab: Path) -> None:
    (lab / "boards.toml").write_text(BOARDS.format(versions=""))
    result = subprocess.run([sys.executable, "-m", "harness", "nightly", "--boards-file", "boards.toml", "--tag",
                             "nowhere"], cwd=lab, env=dict(os.environ, NPU_HIL_SIM_HOME=str(lab / "sim")),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "nowhere" in result.stderr and not (lab / "reports" / "nightly").exists()


def test_a_history_line_cut_short_is_skipped(tmp_path: Path) -> None:
    history.append(tmp_path, [{"night": "n1", "board": "b", "verdict": "GO"}])
    with (tmp_path / history.HISTORY_FILE).open("a") as out:
        out.write('{"night": "n2", "board": "b", "verd')  # the machine died mid-line
    assert [r["night"] for r in history.read(tmp_path)] == ["n1"]
    assert json.loads((tmp_path / history.HISTORY_FILE).read_text().splitlines()[0])["verdict"] == "GO"


def test_trends_keep_the_last_nights_in_the_order_they_ran() -> None:
    records = [{"night": f"night-2026120{d}-020000-1", "board": "b", "verdict": v, "latency_ms": {"m": ms}}
               for d, v, ms in ((1, "GO", 3.0), (2, "NO-GO", None), (3, "GO", 3.5))]
    shown = history.trends(records, last=2)
    assert shown.nights == ["night-20261202-020000-1", "night-20261203-020000-1"]
    assert shown.verdicts == {"b": {"night-20261202-020000-1": "NO-GO", "night-20261203-020000-1": "GO"}}
    assert shown.latency == {("b", "m"): [("night-20261203-020000-1", 3.5)]}  # a night that measured none: no point
    assert history.night_label("night-20261203-020000-1") == "12-03 02:00" and history.night_label("x") == "x"


def test_gate_history_must_name_a_nightly_archive(tmp_path: Path) -> None:
    from support.gate_runs import good_pair, npu_hil

    run, _ = good_pair(tmp_path)
    refused = npu_hil("gate", run, "--history", tmp_path / "empty", cwd=tmp_path)
    assert refused.returncode == 2 and "no nightly history in" in refused.stderr, refused.stderr
    history.append(tmp_path / "archive", [{"night": "night-20261201-020000-1", "board": "b1", "verdict": "GO"}])
    shown = npu_hil("gate", run, "--history", tmp_path / "archive", "--out", tmp_path / "gate", cwd=tmp_path)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert 'data-night="night-20261201-020000-1" data-verdict="GO"' in (tmp_path / "gate" / "gate.html").read_text()


def test_a_night_past_its_timeout_is_stopped_with_its_workers_and_boards(lab: Path, monkeypatch) -> None:
    (lab / "slow").mkdir()
    (lab / "slow" / "test_slow.py").write_text("import time\n\n\ndef test_slow(board):\n    time.sleep(300)\n")
    result = nightly(lab, "--timeout", "20", pytest_args=("-q", "slow/test_slow.py"))
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert "NOT RUN: pytest did not finish within --timeout 20 s (stopped with its workers)" in result.stdout
    night = next(p.name for p in (lab / "reports" / "nightly").iterdir() if p.name.startswith("night-"))
    left = [pid for pid in os.listdir("/proc") if pid.isdigit() and night.encode() in _cmdline(pid)]
    assert left == [], "processes of the night outlived it"
    # stopped as by Ctrl-C: pytest wrote what it had, and the history says why the night is void
    results = json.loads((lab / "reports" / "nightly" / night / "results.json").read_text())
    assert results["complete"] is False
    [record] = [r for r in history.read(lab / "reports" / "nightly") if r["night"] == night][:1]
    assert record["verdict"] == "NOT-RUN" and "--timeout 20 s" in record["problem"]
    monkeypatch.setenv("NPU_HIL_SIM_HOME", str(lab / "sim"))
    from harness.sim import api

    deadline = time.monotonic() + 30  # the boards' supervisors notice their owners are gone
    while any(b["running"] for b in api.list_boards()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not any(b["running"] for b in api.list_boards()), api.list_boards()


def _cmdline(pid: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""
