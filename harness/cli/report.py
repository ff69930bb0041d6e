"""``npu-hil report allure``: render a run's allure results as HTML with the Allure command line.

Allure Report 3 is the npm package ``allure`` (pure Node.js). It is found, in order, at ``--allure``,
``$NPU_HIL_ALLURE``, on PATH, or in ``.tools/node_modules/.bin`` (where ``scripts/setup`` installs it); when it is
nowhere, the command says how to install it instead of failing obscurely.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
from pathlib import Path

from harness.errors import ConfigError, HarnessError

INSTALL_HINT = ("the Allure command line is not installed: `npm install -g allure` (Allure Report 3, needs Node.js), "
                "or `npm install --prefix .tools allure`, or pass --allure PATH")
TIMEOUT_S = 300


def find_allure(explicit: str | None = None) -> str:
    candidates = [explicit, os.environ.get("NPU_HIL_ALLURE"), shutil.which("allure"),
                  str(Path(".tools/node_modules/.bin/allure"))]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    if explicit:
        raise ConfigError(f"--allure {explicit}: no such executable; {INSTALL_HINT}")
    raise ConfigError(INSTALL_HINT)


def render(results: Path, out: Path, *, allure: str | None = None) -> Path:
    """Generate the HTML report from an allure results folder; returns the index.html path."""
    if not results.is_dir() or not any(results.glob("*-result.json")):
        raise ConfigError(f"{results} holds no allure results (run pytest with --alluredir {results})")
    command = [find_allure(allure), "generate", str(results), "--output", str(out)]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S,
                              env=dict(os.environ, NO_COLOR="1"))
    except subprocess.TimeoutExpired:
        raise HarnessError(f"allure generate did not finish within {TIMEOUT_S} s") from None
    index = out / "index.html"
    if proc.returncode != 0 or not index.exists():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise HarnessError(f"allure generate failed (exit {proc.returncode}): " + " | ".join(tail))
    return index


def _allure(args: argparse.Namespace) -> int:
    out = Path(args.out) if args.out else Path(args.results).parent / "allure-report"
    print(render(Path(args.results), out, allure=args.allure))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    report = sub.add_parser("report", help="render reports (allure HTML)")
    cmds = report.add_subparsers(dest="report_command", metavar="KIND", required=True)
    p = cmds.add_parser("allure", help="render allure results (pytest --alluredir DIR) as an HTML report",
                        description="Runs `allure generate` (Allure Report 3, npm package `allure`) on a results "
                                    "folder. " + INSTALL_HINT.capitalize() + ".")
    p.add_argument("results", help="the folder given to pytest --alluredir")
    p.add_argument("--out", help="output folder (default: allure-report beside the results)")
    p.add_argument("--allure", metavar="PATH", help="the allure executable to use")
    p.set_defaults(func=_allure)
