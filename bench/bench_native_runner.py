"""What the native runner measures on the simulated boards, against the simulated NPU's own figure.

Each board runs the repo's latency suite (``pytest --board NAME suites/test_latency.py -s``, a fresh simulator
home and runner cache), and the suite's printed line per model gives the steady mean the runner measured around
rknn_run (the figure the budgets and baselines judge) and, for the native runner, the runtime's own time
(RKNN_QUERY_PERF_RUN: the simulated NPU's time). Their difference is what the simulator's plumbing (qemu-user,
the gate's round trip) adds. The Python runner's clock is the simulated one, so it has none. Also printed: the
wall-clock time of the whole run, which for a native board includes building the runner on first use.

Prints figures; asserts nothing.

    .venv/bin/python bench/bench_native_runner.py
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _common import down_all  # noqa: E402

BOARDS = """
[defaults]
toolkit = { rknpu1 = "1.7.1", rknpu2 = "2.3.2" }

[boards.sim-rv1126]
chip = "rv1126"
sim = { profile = "rv1126" }

[boards.sim-rv1126-stock]
chip = "rv1126"
sim = { profile = "rv1126-stock" }

[boards.rk3588-native]
chip = "rk3588"
sim = { profile = "rk3588" }
runner = "native"
"""
LINE = re.compile(r"^\.?(?P<model>\S+) on (?P<board>\S+): first run .* steady: mean (?P<mean>[\d.]+) ms.*?"
                  r"(?:the runtime's own time: mean (?P<own>[\d.]+) ms)?$")


def run(board: str, work: Path, models: Path) -> tuple[float, list[re.Match[str]]]:
    env = {**os.environ, "NPU_HIL_SIM_HOME": str(work / "sim"), "NPU_HIL_CACHE": str(work / "cache")}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-s", "--board", board,
                           "--boards-file", str(work / "boards.toml"), "--models-dir", str(models),
                           "--reports-dir", str(work / "reports"), str(REPO / "suites" / "test_latency.py")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - started
    down_all(work / "sim")
    return seconds, [m for line in done.stdout.splitlines() if (m := LINE.match(line.strip()))]


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-native-") as tmp:
        work = Path(tmp)
        (work / "boards.toml").write_text(BOARDS)
        models = work / "models"
        shutil.copytree(REPO / "suites" / "models", models)
        for manifest in models.glob("*/model.toml"):  # our runner on rk3588 too (the packages name rknn_benchmark)
            lines = manifest.read_text().splitlines()
            manifest.write_text("\n".join(line for line in lines if "rknn_benchmark" not in line) + "\n")
        print(f"{'board':18} {'model':18} {'measured':>10} {'runtime':>10} {'added':>8}")
        for board in ("sim-rv1126", "sim-rv1126-stock", "rk3588-native"):
            seconds, found = run(board, work, models)
            for m in found:
                own = m["own"]
                added = f"{float(m['mean']) - float(own):+.3f}" if own else "-"
                print(f"{board:18} {m['model']:18} {float(m['mean']):>8.3f}ms {own or '-':>8}{'ms' if own else '  '} "
                      f"{added:>8}")
            print(f"{board:18} whole run (3 models, fresh board{', runner built' if board != 'sim-rv1126' else ''})"
                  f": {seconds:.1f} s")


if __name__ == "__main__":
    main()
