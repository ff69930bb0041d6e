"""``npu-hil nightly``: the lab's night in one line of cron.

Runs the suites (``pytest`` in the current folder, its testpaths) on every board with the tag, one xdist worker
per board; gates the night against the accepted baseline and the policy; keeps it in the archive
(``reports/nightly/<night>/``, with ``gate/gate.html`` and ``gate.md``); appends one line per board to the
archive's ``history.jsonl`` (:mod:`harness.report.history`); and prunes nights beyond ``--keep``, never the
history. Exit 0 GO, 1 NO-GO, 2 when the night could not be made (no board with the tag, no board reachable,
pytest interrupted or past ``--timeout``): cron's mail then says which.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from harness.cli._boards import cli_inventory
from harness.errors import ConfigError
from harness.report.baseline import DEFAULT_DIR
from harness.report.gate import gate
from harness.report.gate_html import write_html
from harness.report.gate_input import Run, load_run
from harness.report.gate_md import write_markdown
from harness.report.gate_policy import GatePolicy, load_policy
from harness.report.history import append, night_records, read, trends
from harness.session import new_run_id

DEFAULT_ARCHIVE = Path("reports/nightly")
DEFAULT_KEEP = 30
DEFAULT_TIMEOUT_S = 6 * 3600.0
#: How long pytest gets after SIGINT (to end the session and write its results) before SIGTERM
STOP_GRACE_S = 15.0
#: Written into every night folder this command made: the only folders ``--keep`` ever removes
NIGHT_MARK = ".npu-hil-night"
#: pytest's exit codes for a run that happened (all passed, some failed); any other means it could not be made
RAN = (0, 1)


def _nightly(args: argparse.Namespace) -> int:
    if args.keep < 1:
        raise ConfigError(f"--keep must be at least 1 (got {args.keep})")
    inventory = cli_inventory(args.boards_file)
    boards = [spec.name for spec in inventory.select([], [args.tag])]  # ConfigError when no board has it
    policy = load_policy(Path(args.policy)) if args.policy else GatePolicy()
    if args.baseline and not Path(args.baseline).is_dir():
        raise ConfigError(f"baseline folder {args.baseline} does not exist")
    baseline = Path(args.baseline) if args.baseline else (DEFAULT_DIR if DEFAULT_DIR.is_dir() else None)
    archive = Path(args.archive)
    night = f"night-{new_run_id()}"
    night_dir = archive / night
    night_dir.mkdir(parents=True, exist_ok=True)
    (night_dir / NIGHT_MARK).write_text(" ".join(boards) + "\n")
    print(f"npu-hil nightly {night}: boards {', '.join(boards)} (tag {args.tag}); archive {archive}", flush=True)

    problem = _run_pytest(args, boards, archive, night)
    report = gate([night_dir], baseline_dir=baseline, expect_boards=policy.boards or boards,
                  expect_suites=policy.suites, latency_tolerance=policy.tolerance)
    run = load_run(night_dir)
    problem = problem or _unreachable(run, boards)
    history = append(archive, night_records(run, report, boards, problem=problem))
    shown = trends(read(archive))  # this night included
    html = write_html(report, night_dir / "gate" / "gate.html", shown)
    write_markdown(report, night_dir / "gate" / "gate.md", shown)
    removed = _prune(archive, args.keep)
    print(f"{'NOT RUN: ' + problem if problem else report.verdict}: {len(report.reasons)} reason(s); "
          f"gate {html}; history {history}" + (f"; removed {len(removed)} old night(s)" if removed else ""))
    for reason in report.reasons[:10]:
        print(f"  - {reason.kind}: {reason.text}")
    return 2 if problem else 0 if report.go else 1


def _run_pytest(args: argparse.Namespace, boards: list[str], archive: Path, night: str) -> str | None:
    """Run the suites; None when pytest ran them, else why the night could not be made."""
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--board-tag", args.tag,
               "--reports-dir", str(archive), "--run-id", night, "--junitxml", str(archive / night / "junit.xml")]
    if len(boards) > 1:
        command += ["-n", "auto"]  # the plugin makes it one worker per board
    if args.boards_file:
        command += ["--boards-file", args.boards_file]
    command += [a for a in args.pytest_args if a != "--"]
    print("$ " + " ".join(command), flush=True)
    # its own process group, so a night past --timeout (or a Ctrl-C here) ends pytest and its xdist workers
    # together, by pytest's PID; the simulated boards they started follow their owners down
    proc = subprocess.Popen(command, start_new_session=True)
    try:
        code = proc.wait(timeout=args.timeout)
    except subprocess.TimeoutExpired:
        _stop_group(proc)
        return f"pytest did not finish within --timeout {args.timeout:g} s (stopped with its workers)"
    finally:
        if proc.poll() is None:
            _stop_group(proc)
    if code not in RAN:
        return f"pytest exited {code} (2 interrupted, 3 internal error, 4 usage error, 5 no tests)"
    return None


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGINT to pytest's process group (its PID), as Ctrl-C: pytest ends the session and writes what ran (a
    partial results.json the gate reads as incomplete); SIGTERM, then SIGKILL, if it does not end in time."""
    for sig, grace in ((signal.SIGINT, STOP_GRACE_S), (signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def _unreachable(run: Run, boards: list[str]) -> str | None:
    """Why the night is void when no selected board could be opened (each recorded broken, no test passed)."""
    data = run.data
    if data is None:
        return None
    down = [b for b in boards if b in data.boards and data.boards[b].broken
            and not any(t.board == b and t.outcome == "passed" for t in data.tests)]
    if boards and len(down) == len(boards):
        return "no board was reachable: " + "; ".join(f"{b}: {data.boards[b].broken}" for b in down)[:2000]
    return None


def _prune(archive: Path, keep: int) -> list[Path]:
    """Remove the oldest night folders beyond ``keep`` (only folders this command made; the history stays)."""
    nights = sorted(p for p in archive.iterdir() if (p / NIGHT_MARK).is_file())
    old = nights[:-keep]
    for folder in old:
        shutil.rmtree(folder, ignore_errors=True)
    return old


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("nightly", help="run the suites on every board with a tag, gate, archive, keep a history",
                       description="The lab's nightly run in one command (for cron or a CI job on a lab runner): "
                                   "pytest over the current folder's suites on every board with --tag (one "
                                   "worker per board), gated against the baseline and policy, archived under "
                                   "--archive with gate.html / gate.md, one line per board appended to "
                                   "history.jsonl there. Exit 0 GO, 1 NO-GO, 2 when the night could not be made. "
                                   "Arguments after -- go to pytest (e.g. -- -k latency suites/).")
    p.add_argument("--tag", default="nightly", help="boards to run: those with this tag (default: nightly)")
    p.add_argument("--boards-file", metavar="PATH", help="inventory file (default: ./boards.toml)")
    p.add_argument("--archive", default=str(DEFAULT_ARCHIVE), metavar="DIR",
                   help=f"where nights and history.jsonl are kept (default: {DEFAULT_ARCHIVE})")
    p.add_argument("--baseline", metavar="DIR",
                   help=f"accepted latency baselines (default: {DEFAULT_DIR} when it exists)")
    p.add_argument("--policy", metavar="FILE", help="what the release requires (boards, suites, latency_tolerance)")
    p.add_argument("--keep", type=int, default=DEFAULT_KEEP, metavar="N",
                   help=f"nights kept in the archive; older night folders are removed, the history stays "
                        f"(default {DEFAULT_KEEP})")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
                   help=f"the whole pytest run's deadline (default {DEFAULT_TIMEOUT_S:g})")
    p.add_argument("pytest_args", nargs=argparse.REMAINDER, metavar="-- PYTEST_ARGS",
                   help="passed to pytest as they are")
    p.set_defaults(func=_nightly)
