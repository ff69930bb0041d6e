"""Collect the runtime's verbose log for a failed step (the manual's 1.2.3), so nobody has to re-run by hand.

The manual's recipe on the board: ``export RKNN_LOG_LEVEL=5`` (``RKNN_SERVER_LOGLEVEL=5`` for RKNPU2's
server), ``restart_rknn.sh``, then run the failing step again. rknn_server logs to the console, the runtime to
the step's own output; both are kept in one file under the board's report folder. The server is restarted at
its normal level afterwards, also when the re-run fails.
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import HarnessError

if TYPE_CHECKING:
    from harness.board import Board

LEVEL = 5


@dataclass(frozen=True)
class Step:
    """A board command to run again at a higher log level, and the folder it runs in (made before the rerun
    and removed after it, since a run that passed its own checks has removed its folder already)."""

    command: str
    workdir: str | None = None


@dataclass(frozen=True)
class VerboseLog:
    command: str
    exit_code: int | None
    text: str
    path: Path


def _level_env(level: int) -> str:
    return f"RKNN_LOG_LEVEL={level} RKNN_SERVER_LOGLEVEL={level}"


def collect_verbose_log(board: "Board", step: "str | Step", *, timeout: float = 120.0,
                        level: int = LEVEL) -> VerboseLog:
    """Restart rknn_server at ``level``, re-run ``step`` with the runtime at ``level``, keep everything printed.

    ``step`` is the failed step's board command as it was run (already quoted by its builder), or a
    :class:`Step` with the folder it needs.
    """
    step = step if isinstance(step, Step) else Step(step)
    command = step.command
    mark = board.console.mark() if board.has_link("console") else None
    parts = [f"# npu-hil: verbose runtime log (manual 1.2.3), level {level}", f"# step: {command}"]
    exit_code = None
    try:
        restart = board.shell(f"{_level_env(level)} restart_rknn.sh", timeout=30)
        parts.append(f"$ {_level_env(level)} restart_rknn.sh  (exit {restart.exit_code})\n{restart.output}")
        if step.workdir:
            board.shell(f"mkdir -p {shlex.quote(step.workdir)}", timeout=30, check=True)
        result = board.shell(f"export {_level_env(level)}; {command}", timeout=timeout)
        exit_code = result.exit_code
        parts.append(f"$ {command}  (exit {result.exit_code})\n{result.stdout}\n{result.stderr}")
    except HarnessError as exc:
        parts.append(f"# re-run failed: {exc}")
    finally:
        try:
            board.shell(f"{_level_env(0)} restart_rknn.sh", timeout=30)
            if step.workdir:
                board.shell(f"rm -rf {shlex.quote(step.workdir)}", timeout=30)
        except HarnessError as exc:
            parts.append(f"# restoring the server's log level failed: {exc}")
    if mark is not None:
        parts.append("# console (rknn_server logs here)\n" + board.console.excerpt(since=mark))
    path = board.run_dir / f"runtime-verbose-{time.strftime('%H%M%S')}-{abs(hash(command)) % 10000:04d}.log"
    text = "\n".join(parts) + "\n"
    path.write_text(text)  # the caller attaches it to its report (the npu side knows no reports)
    return VerboseLog(command=command, exit_code=exit_code, text=text, path=path)


def quoted_step(*argv: str) -> str:
    """Build a step's command from argv, every word quoted (paths and names come from users)."""
    return " ".join(shlex.quote(a) for a in argv)
