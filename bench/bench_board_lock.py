"""How fast a file board lock is taken and how soon a waiting run notices its release (one host, no labgrid).

* ``acquire+release``: FileBoardLock.acquire(0) + release() on a free board;
* ``notice``: another process holds the board; this one waits in acquire(wait=30); the holder releases and prints
  the wall-clock time its release returned (t0); the waiter's acquire returns at t1: t1 - t0. The waiter polls
  every ``harness.lab.locks.POLL_S`` seconds, so the notice time is bounded by that poll.

    .venv/bin/python bench/bench_board_lock.py --rounds 20
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _common import release_notice_seconds, timed  # noqa: E402

from harness.lab.locks import POLL_S, FileBoardLock  # noqa: E402  (after the path tweak)

HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from harness.lab.locks import FileBoardLock
    lock = FileBoardLock("bench-board", Path(sys.argv[1]), run_id="holder")
    lock.acquire(0)
    print("held", flush=True)
    sys.stdin.readline()
    lock.release()
    print(f"released {time.time()!r}", flush=True)
""")


def notice_once(lock_dir: Path) -> float:
    waiter = FileBoardLock("bench-board", lock_dir, run_id="waiter")
    return release_notice_seconds([sys.executable, "-c", HOLDER, str(lock_dir)], REPO,
                                  lambda: waiter.acquire(wait=30), waiter.release, settle=0.5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-lock-") as tmp:
        lock_dir = Path(tmp)
        takes, notices = [], []
        for _ in range(args.rounds):
            lock = FileBoardLock("bench-board", lock_dir, run_id="bench")
            takes.append(timed(lambda lock=lock: (lock.acquire(0), lock.release())))
        for _ in range(max(1, args.rounds // 4)):
            notices.append(notice_once(lock_dir))
    for label, values in (("acquire+release", takes), ("notice release", notices)):
        print(f"{label:16s} median {statistics.median(values) * 1000:.2f} ms  min {min(values) * 1000:.2f}  "
              f"max {max(values) * 1000:.2f}  ({len(values)} rounds; waiter polls every {POLL_S * 1000:.0f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
