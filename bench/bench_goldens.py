"""Bench: golden comparison throughput on 100 MB of float32 (target: under 1 s on a 2-core machine).

Why: real models' outputs (detection heads, segmentation maps, per-layer dumps) reach tens of MB, and a
release run compares hundreds of them. ``compare`` works in chunks of 1 Mi elements, one pass, with no
whole-array float64 copy; this shows what that costs against numpy's own ``allclose`` (which stops at a yes or
no and allocates several full-size temporaries) for exact, tolerance, NaN-bearing and cosine+top-k runs, and
the time of saving and loading the golden file. Best of N; figures only, no assertions (the machine is
shared: compare the rows of one run, not runs with each other).

Run: .venv/bin/python bench/bench_goldens.py [--mb 100] [--runs 3]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
from pathlib import Path

import numpy as np
from _common import best_seconds

from harness.npu.goldens import compare, load_golden, save_golden


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=100, help="size of each output, MB of float32")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    n = args.mb * 1_000_000 // 4
    rng = np.random.default_rng(0)
    golden = rng.standard_normal(n, dtype=np.float32).reshape(-1, 1000)
    noisy = golden + rng.standard_normal(golden.shape, dtype=np.float32) * np.float32(1e-4)
    with_nan = noisy.copy()
    with_nan.reshape(-1)[::1000] = np.nan
    golden_nan = golden.copy()
    golden_nan.reshape(-1)[::1000] = np.nan
    rows = [
        ("exact, equal", lambda: compare(golden, golden)),
        ("atol=1e-3 rtol=1e-3, noisy", lambda: compare(noisy, golden, atol=1e-3, rtol=1e-3)),
        ("atol=1e-3, 25k NaN pairs", lambda: compare(with_nan, golden_nan, atol=1e-3)),
        ("atol + min_cosine + top-5 per row", lambda: compare(noisy, golden, atol=1e-3, min_cosine=0.99, top_k=5)),
        ("numpy allclose (yes/no only)", lambda: np.allclose(noisy, golden, atol=1e-3, rtol=1e-3)),
    ]
    print(f"{args.mb} MB float32 per output ({n:,} elements), best of {args.runs}")
    for label, action in rows:
        seconds = best_seconds(action, args.runs)
        print(f"  {label:38s} {seconds * 1000:8.1f} ms  {args.mb / seconds:8.0f} MB/s")
    print(f"  result: {compare(noisy, golden, atol=1e-3, rtol=1e-3, top_k=5).message()[:150]}")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "g"
        save_s = best_seconds(lambda: save_golden(path, [golden], {"precision": "float32"}), args.runs)
        load_s = best_seconds(lambda: load_golden(path), args.runs)
    print(f"  save_golden {save_s * 1000:.1f} ms, load_golden {load_s * 1000:.1f} ms")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  peak RSS of this process: {peak:.0f} MB (inputs alone: {4 * args.mb} MB)")


if __name__ == "__main__":
    main()
