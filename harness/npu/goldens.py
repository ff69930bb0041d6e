"""Golden outputs: compare a model's outputs with stored ones, say how they differ, and keep the golden files.

Why tolerances and not bit-exactness: the NPU's results move with batch size (manual 4.2.6), runtime version
and core count, so float outputs are judged with ``atol``/``rtol`` (``|a - g| <= atol + rtol * |g|``, numpy's
``isclose`` rule), optionally a cosine similarity floor and, for classifiers, top-k agreement. The default is
exact (atol = rtol = 0) so a test that wants slack has to say so.

Why precision in the metadata: a quantized (int8/uint8) result compared with a float golden, or the reverse,
measures the quantization, not the board (manual 3.1 (3)): :func:`judge` refuses it.

Why an all-zero check: an NPU hang can end with all-zero outputs and no error (manual 4.2.13); zeros where the
golden is not zero are reported as a hang (the board's fault), not as a wrong answer.

Comparison is chunked: each chunk of at most 64 Ki elements is cast once (float32, or float64 for float64 and
integer data) and every figure is taken from it, so 100 MB of float32 is judged in one pass with no whole-array
float64 copy.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np

from harness.errors import BoardError, ConfigError, ProductError

CHUNK = 1 << 16  # 256 KiB of float32: a chunk and its temporaries stay in cache (4x faster than 1 Mi)
OUTPUTS_FILE, META_FILE = "outputs.npz", "golden.json"
Policy = Literal["check", "update", "regen"]
QUANTIZED = frozenset({"int8", "uint8", "int16", "i8", "u8", "asymmetric_quantized-8", "dynamic_fixed_point-8",
                       "dynamic_fixed_point-16", "w8a8", "w8a16", "w4a16"})
FLOAT = frozenset({"float32", "float16", "fp32", "fp16", "bfloat16", "float"})
TOLERANCE_KEYS = frozenset({"atol", "rtol", "min_cosine", "top_k"})
MANUAL_3_1_3 = ("a quantized result must be compared with a quantized golden and a float result with a float "
                "golden: comparing across precisions measures the quantization error, not the board "
                "(RKNN-Toolkit manual 3.1 (3))")


@dataclass(frozen=True)
class Comparison:
    """How one output compares with its golden; ``message()`` is the paragraph a person reads."""

    name: str
    passed: bool
    reason: str | None = None  # shape or dtype mismatch: no element figures then
    atol: float = 0.0
    rtol: float = 0.0
    n_elements: int = 0
    n_mismatched: int = 0
    nan_actual: int = 0
    nan_golden: int = 0
    max_abs_err: float = 0.0
    mean_abs_err: float = 0.0
    cosine: float | None = None
    min_cosine: float | None = None
    worst_index: tuple[int, ...] | None = None
    worst_actual: float | None = None
    worst_golden: float | None = None
    top_k: int | None = None
    top_k_agree: int | None = None  # classes of the golden's top-k found in the actual's top-k, summed over rows
    top_k_total: int | None = None
    top1_equal: bool | None = None

    def message(self) -> str:
        if self.reason:
            return f"{self.name}: {self.reason}"
        verdict = (f"{self.n_mismatched} of {self.n_elements} elements differ beyond atol={self.atol:g} "
                   f"rtol={self.rtol:g}")
        parts = [f"{self.name}: {verdict}: max abs err {self.max_abs_err:.4g}"]
        if self.worst_index is not None and self.n_mismatched:
            parts[0] += (f" at {self.worst_index} (actual {self.worst_actual:.6g}, "
                         f"golden {self.worst_golden:.6g})")
        parts.append(f"mean {self.mean_abs_err:.4g}")
        if self.cosine is not None:
            floor = f" (min {self.min_cosine:g})" if self.min_cosine is not None else ""
            parts.append(f"cosine {self.cosine:.6f}{floor}")
        if self.nan_actual or self.nan_golden:
            parts.append(f"NaN: {self.nan_actual} in actual, {self.nan_golden} in golden")
        text = ", ".join(parts)
        if self.top_k is not None:
            text += (f"; top-{self.top_k} agree {self.top_k_agree}/{self.top_k_total}, "
                     f"top-1 {'equal' if self.top1_equal else 'differs'}")
        return text + ("" if not self.passed else " (passed)")


def _work_dtype(actual: np.ndarray, golden: np.ndarray) -> type:
    """float32 unless a side is float64 or an integer type (int32/int64 lose digits in float32)."""
    if actual.dtype == np.float64 or golden.dtype == np.float64:
        return np.float64
    if all(a.dtype.kind == "f" for a in (actual, golden)):
        return np.float32
    return np.float64


def _kind(dtype: np.dtype) -> str:
    return "bool" if dtype.kind == "b" else ("integer" if dtype.kind in "iu" else
                                             ("float" if dtype.kind == "f" else "other"))


def _mismatch_reason(actual: np.ndarray, golden: np.ndarray) -> str | None:
    if actual.shape != golden.shape:
        return f"shape {actual.shape} differs from the golden's {golden.shape}: not compared"
    kinds = _kind(actual.dtype), _kind(golden.dtype)
    if "other" in kinds:
        return f"dtype {actual.dtype} vs golden {golden.dtype}: only numeric tensors are compared"
    if kinds[0] != kinds[1]:
        return (f"dtype {actual.dtype} ({kinds[0]}) differs in kind from the golden's {golden.dtype} "
                f"({kinds[1]}): not compared")
    return None


def _rank_keys(rows: np.ndarray) -> np.ndarray:
    """Values to rank classes by: NaN never counts as large; integers widened so negation cannot wrap."""
    return np.where(np.isnan(rows), -np.inf, rows) if rows.dtype.kind == "f" else rows.astype(np.float64)


def _top_indices(rows: np.ndarray, k: int) -> np.ndarray:
    """Each row's k largest entries, largest first: argpartition, O(n) per row."""
    keys = _rank_keys(rows)
    if k >= keys.shape[1]:
        return np.argsort(-keys, axis=1, kind="stable")
    part = np.argpartition(-keys, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(keys, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def _top_k(actual: np.ndarray, golden: np.ndarray, k: int) -> tuple[int, int, bool]:
    """Top-k class agreement along the last axis (one row per batch item): (agree, total, all top-1 equal).
    Top-1 is each row's first maximum (argmax), so ties resolve the same way on both sides."""
    width = actual.shape[-1] if actual.ndim else 1
    rows_a, rows_g = actual.reshape(-1, width), golden.reshape(-1, width)
    k = min(k, width)
    top_a, top_g = _top_indices(rows_a, k), _top_indices(rows_g, k)
    agree = int((top_a[:, :, None] == top_g[:, None, :]).any(axis=2).sum())
    top1_equal = np.argmax(_rank_keys(rows_a), axis=1) == np.argmax(_rank_keys(rows_g), axis=1)
    return agree, k * rows_a.shape[0], bool(np.all(top1_equal))


def compare(actual: np.ndarray, golden: np.ndarray, *, atol: float = 0.0, rtol: float = 0.0,
            min_cosine: float | None = None, top_k: int | None = None, name: str = "output0") -> Comparison:
    """Compare one output with its golden. NaN equals NaN only where both are NaN; equal infinities are equal."""
    actual, golden = np.asarray(actual), np.asarray(golden)
    if not (atol >= 0 and rtol >= 0):  # also refuses NaN
        raise ConfigError(f"{name}: tolerances must be >= 0 (atol={atol}, rtol={rtol})")
    if top_k is not None and top_k < 1:
        raise ConfigError(f"{name}: top_k must be >= 1 (got {top_k})")
    reason = _mismatch_reason(actual, golden)
    if reason:
        return Comparison(name, False, reason, atol, rtol, n_elements=int(actual.size))
    work = _work_dtype(actual, golden)
    flat_a, flat_g = actual.reshape(-1), golden.reshape(-1)
    n = flat_a.size
    mismatched = nan_a = nan_g = 0
    err_sum, max_err, worst_flat, worst_bad, n_finite = 0.0, 0.0, None, -1.0, 0
    dot = norm_a = norm_g = 0.0
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf and overflow are sorted out below
        for start in range(0, n, CHUNK):
            a = flat_a[start:start + CHUNK].astype(work, copy=False)
            g = flat_g[start:start + CHUNK].astype(work, copy=False)
            diff = np.abs(a - g)  # the chunk's one big temporary; the figures below reuse it
            bad = ~(diff <= atol + rtol * np.abs(g)) if rtol else ~(diff <= atol)
            special = np.flatnonzero(~np.isfinite(diff))  # NaN or infinity on a side (or an overflowing difference)
            worst_here = None
            if special.size:
                sa, sg = a[special], g[special]
                na, ng = np.isnan(sa), np.isnan(sg)
                nan_a, nan_g = nan_a + int(na.sum()), nan_g + int(ng.sum())
                unequal = ~((na & ng) | (sa == sg))  # equal: both NaN, or the same infinity
                bad[special] = unequal
                if unequal.any():  # a NaN or infinity mismatch is the worst error there is
                    worst_here, worst_err = int(special[np.argmax(unequal)]), math.inf
                diff[special] = 0.0  # max and mean errors cover the elements finite on both sides
                a, g = np.where(np.isfinite(a), a, 0), np.where(np.isfinite(g), g, 0)
            n_finite += diff.size - special.size
            count = int(np.count_nonzero(bad))
            mismatched += count
            if count and worst_here is None:
                worst_here = int(np.argmax(np.where(bad, diff, -1.0)))
                worst_err = float(diff[worst_here])
            if worst_here is not None and worst_err > worst_bad:
                worst_bad, worst_flat = worst_err, start + worst_here
            err_sum += float(np.add.reduce(diff, dtype=np.float64))
            max_err = max(max_err, float(diff.max(initial=0.0)))
            dot += float(np.einsum("i,i->", a, g, dtype=np.float64))  # float64 sums, no float64 copy
            norm_a += float(np.einsum("i,i->", a, a, dtype=np.float64))
            norm_g += float(np.einsum("i,i->", g, g, dtype=np.float64))
    cosine = _cosine(dot, norm_a, norm_g, n)
    worst_index = worst_a = worst_g = None
    if worst_flat is not None:
        worst_index = tuple(int(i) for i in np.unravel_index(worst_flat, actual.shape)) if actual.ndim else ()
        worst_a, worst_g = float(flat_a[worst_flat]), float(flat_g[worst_flat])
    agree = total = top1 = None
    if top_k is not None and n:
        agree, total, top1 = _top_k(actual, golden, top_k)
    passed = (mismatched == 0 and (min_cosine is None or (cosine is not None and cosine >= min_cosine))
              and (top_k is None or (top1 is not False and agree == total)))
    return Comparison(name, passed, None, atol, rtol, n, mismatched, nan_a, nan_g, max_err,
                      err_sum / n_finite if n_finite else 0.0, cosine, min_cosine, worst_index, worst_a, worst_g,
                      top_k, agree, total, top1)


def _cosine(dot: float, norm_a: float, norm_g: float, n: int) -> float | None:
    """Cosine similarity; two all-zero tensors are identical (1.0), one all-zero tensor shares nothing (0.0)."""
    if n == 0:
        return None
    if norm_a == 0.0 or norm_g == 0.0:
        return 1.0 if norm_a == norm_g else 0.0
    return max(-1.0, min(1.0, dot / math.sqrt(norm_a * norm_g)))


def is_all_zero(arrays: Sequence[np.ndarray]) -> bool:
    """True when the outputs hold at least one element and every element is zero (NaN is not zero)."""
    arrays = [np.asarray(a) for a in arrays]
    return sum(a.size for a in arrays) > 0 and not any(bool(np.any(a != 0)) for a in arrays)


def hang_suspected(actuals: Sequence[np.ndarray], goldens: Sequence[np.ndarray]) -> str | None:
    """Manual 4.2.13: all-zero outputs where the golden is not all zero are an NPU hang, not a wrong answer.
    Returns the sentence to report, or None."""
    if not is_all_zero(actuals) or is_all_zero(goldens) or not goldens:
        return None
    return ("every output is all zeros while the golden is not: the NPU likely hung (manual 4.2.13); "
            "collect dmesg and recover the board")


# ------------------------------------------------------------------------------------------------ golden files
def save_golden(path: Path, outputs: Sequence[np.ndarray], meta: Mapping[str, Any]) -> None:
    """Write ``outputs.npz`` (output0, output1, ...) and ``golden.json`` atomically (temp file + rename)."""
    path = Path(path)
    record = dict(meta)
    record.setdefault("date", datetime.now(UTC).isoformat(timespec="seconds"))
    record["outputs"] = [{"name": f"output{i}", "shape": list(np.shape(a)), "dtype": str(np.asarray(a).dtype)}
                         for i, a in enumerate(outputs)]
    try:
        text = json.dumps(record, indent=2, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"golden metadata for {path} is not JSON: {exc}") from None
    path.mkdir(parents=True, exist_ok=True)
    arrays = {f"output{i}": np.asarray(a) for i, a in enumerate(outputs)}
    _atomic_write(path / OUTPUTS_FILE, lambda handle: np.savez(handle, **arrays))
    _atomic_write(path / META_FILE, lambda handle: handle.write(text.encode() + b"\n"))


def _atomic_write(target: Path, write: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_golden(path: Path, *, create_command: str | None = None) -> tuple[list[np.ndarray], dict[str, Any]]:
    """The golden outputs (in output order) and their metadata; ConfigError naming the command that makes them."""
    path = Path(path)
    missing = [name for name in (OUTPUTS_FILE, META_FILE) if not (path / name).is_file()]
    if missing:
        fix = f"create it with: {create_command}" if create_command else "create it with --regen-goldens"
        raise ConfigError(f"no golden at {path} ({', '.join(missing)} missing)", fix=fix)
    try:
        meta = json.loads((path / META_FILE).read_text(encoding="utf-8"))
        with np.load(path / OUTPUTS_FILE, allow_pickle=False) as npz:
            names = sorted(npz.files, key=lambda s: (len(s), s))
            outputs = [npz[name] for name in names]
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"golden at {path} is unreadable: {exc}",
                          fix=f"recreate it with: {create_command}" if create_command else None) from None
    if not isinstance(meta, dict):
        raise ConfigError(f"golden metadata {path / META_FILE} is not a JSON object")
    return outputs, meta


# ------------------------------------------------------------------------------------------------ verdicts
@dataclass(frozen=True)
class Verdict:
    """The judgement of one run's outputs against one golden set, after the policy was applied."""

    passed: bool
    policy: str
    comparisons: tuple[Comparison, ...] = ()
    problems: tuple[str, ...] = ()  # count mismatches and other whole-set findings
    hang: str | None = None
    rewritten: tuple[str, ...] = field(default=())  # outputs whose golden was (re)written

    def message(self) -> str:
        lines = [c.message() for c in self.comparisons if not c.passed] + list(self.problems)
        if self.hang:
            lines.insert(0, self.hang)
        if self.rewritten:
            lines.append(f"golden rewritten ({self.policy}): {', '.join(self.rewritten)}")
        return "\n".join(lines) if lines else f"{len(self.comparisons)} outputs match their goldens"

    def raise_for_failure(self) -> None:
        """BoardError for a hang (the board is broken), ProductError for wrong outputs; nothing when passed."""
        if self.hang:
            raise BoardError(self.message())
        if not self.passed:
            raise ProductError(self.message())


def _precision_class(value: Any, where: str) -> str | None:
    if value is None:
        return None
    text = str(value).lower()
    if text in QUANTIZED:
        return "quantized"
    if text in FLOAT:
        return "float"
    raise ConfigError(f"unknown precision {value!r} in {where}",
                      fix=f"use one of {', '.join(sorted(QUANTIZED | FLOAT))}")


def _tolerances_for(tolerances: Mapping[str, Any], name: str) -> dict[str, Any]:
    per_output = tolerances.get("per_output", {}) or {}
    merged = {k: v for k, v in tolerances.items() if k != "per_output"}
    merged.update(per_output.get(name, {}))
    unknown = set(merged) - TOLERANCE_KEYS
    if unknown:
        raise ConfigError(f"unknown tolerance key(s) {', '.join(sorted(unknown))}",
                          fix=f"use {', '.join(sorted(TOLERANCE_KEYS))} (and per_output)")
    return merged


def judge(actuals: Sequence[np.ndarray], golden_dir: Path, *, tolerances: Mapping[str, Any] | None = None,
          policy: Policy = "check", meta: Mapping[str, Any] | None = None,
          create_command: str = "pytest --regen-goldens") -> Verdict:
    """Compare ``actuals`` with the golden set in ``golden_dir`` and apply the policy.

    ``check``: compare only. ``update`` (``--update-goldens``): rewrite the failing outputs' goldens and FAIL, so
    a person reviews the change. ``regen`` (``--regen-goldens``): rewrite every golden and pass, except when the
    outputs look like a hang against the old golden (zeros must never become the truth).
    """
    golden_dir, meta, tolerances = Path(golden_dir), dict(meta or {}), dict(tolerances or {})
    if policy not in ("check", "update", "regen"):
        raise ConfigError(f"unknown golden policy {policy!r}", fix="use check, update or regen")
    names = [f"output{i}" for i in range(len(actuals))]
    exists = (golden_dir / OUTPUTS_FILE).is_file() and (golden_dir / META_FILE).is_file()
    if not exists and policy == "check":
        load_golden(golden_dir, create_command=create_command)  # raises the ConfigError naming the command
    goldens, old_meta = load_golden(golden_dir, create_command=create_command) if exists else ([], {})
    hang = hang_suspected(actuals, goldens) if goldens else None
    if policy == "regen":
        if hang:
            return Verdict(False, policy, problems=("golden kept: refusing to regenerate from all-zero outputs",),
                           hang=hang)
        save_golden(golden_dir, actuals, {**meta, "golden_policy": policy})
        return Verdict(True, policy, rewritten=tuple(names))
    mine = _precision_class(meta.get("precision"), "this run's metadata")
    theirs = _precision_class(old_meta.get("precision"), str(golden_dir / META_FILE))
    if exists and mine and theirs and mine != theirs:
        refusal = (f"{mine} result ({meta.get('precision')}) vs {theirs} golden ({old_meta.get('precision')}) "
                   f"at {golden_dir}: {MANUAL_3_1_3}")
        if policy == "check":
            raise ConfigError(f"refusing to compare a {refusal}",
                              fix=f"make a {mine} golden with: {create_command}")
        save_golden(golden_dir, actuals, meta)  # a golden set has one precision: replace it whole
        return Verdict(False, policy, problems=(f"precision changed, whole golden replaced: {refusal}",),
                       rewritten=tuple(names))
    comparisons = []
    for name, actual, golden in zip(names, actuals, goldens):
        tol = _tolerances_for(tolerances, name)
        comparisons.append(compare(actual, golden, name=name, atol=float(tol.get("atol", 0.0)),
                                   rtol=float(tol.get("rtol", 0.0)), min_cosine=tol.get("min_cosine"),
                                   top_k=tol.get("top_k")))
    problems = []
    if exists and len(actuals) != len(goldens):
        problems.append(f"{len(actuals)} outputs but the golden at {golden_dir} has {len(goldens)}")
    if not exists:
        problems.append(f"no golden at {golden_dir}: created from this run, review it")
    passed = not problems and all(c.passed for c in comparisons) and not hang
    if policy == "check" or passed:
        return Verdict(passed, policy, tuple(comparisons), tuple(problems), hang)
    if hang:  # update never turns a hang's zeros into the golden
        return Verdict(False, policy, tuple(comparisons), tuple(problems), hang)
    failing = {c.name for c in comparisons if not c.passed} | set(names[len(goldens):])
    new = [np.asarray(a) if n in failing else goldens[i] for i, (n, a) in enumerate(zip(names, actuals))]
    save_golden(golden_dir, new, {**meta, "golden_policy": policy,
                                  "updated_outputs": sorted(failing, key=lambda s: (len(s), s))})
    return Verdict(False, policy, tuple(comparisons), tuple(problems), None,
                   tuple(n for n in names if n in failing))
