"""``npu-hil baseline accept RUN_DIR``: make a finished run the reference the gate compares latency with."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.report.baseline import DEFAULT_DIR, accept


def _accept(args: argparse.Namespace) -> int:
    result = accept(Path(args.run_dir), Path(args.into))
    print(f"accepted run {result.run_id} as the baseline:")
    for file in result.files:
        print(f"  {file}")
    if result.warnings:
        print(f"note: {len(result.warnings)} test(s) of this run did not pass; their figures are the reference now:")
        for text in result.warnings[:20]:
            print(f"  {text}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("baseline", help="manage accepted baselines (the gate's latency reference)")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    a = actions.add_parser("accept", help="store a finished run as the new reference, keeping the history",
                           description="Stores each chip's latency figures, goldens metadata and board versions "
                                       "of RUN_DIR as the new baseline; earlier ones stay for the gate's trend. "
                                       "An interrupted run is refused.")
    a.add_argument("run_dir", metavar="RUN_DIR", help="a finished run's folder (reports/<run-id>)")
    a.add_argument("--into", metavar="DIR", default=str(DEFAULT_DIR), help=f"baseline folder (default {DEFAULT_DIR})")
    a.set_defaults(func=_accept)
