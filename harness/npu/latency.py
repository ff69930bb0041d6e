"""On-board latency: statistics with honest percentiles, budgets, noise-aware regressions, and the runners' output.

Why figures come from the board's own output: host-side timing around adb is 2-10x the NPU's time (manual
4.2.2), so the only numbers judged here are the ones the board printed (``rknn_benchmark``, our runner).
The first inference is slow (lazy load, 4.2.3) and is kept apart from the steady-state samples.

Why a percentile may be "not claimable": with n samples, the largest one bounds the true p-th percentile only
with confidence 1 - p**n. MLPerf's early-stopping rule, with no run over the bound, asks for 64 runs before
claiming p90 and 662 before claiming p99 (both give 1 - p**n ~ 99.87 %). The same rule gives 10 runs for p50
(0.5**10 ~ 0.1 %), which is our choice for the median: a median of 3 runs is an anecdote. Percentiles are
nearest-rank (numpy's ``inverted_cdf``): always an observed sample, as MLPerf reports them.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.errors import ConfigError, ProductError
from harness.npu.runner.npu_hil_runner import FORMATS

MIN_SAMPLES = {"p50": 10, "p90": 64, "p99": 662}
BUDGET_KEYS = {"mean_ms": "mean", "p50_ms": "p50", "p90_ms": "p90", "p99_ms": "p99", "max_ms": "max",
               "first_run_ms": "first_run_ms"}  # budget key -> LatencyStats attribute
#: rknn_api.h (RKNPU1 and RKNPU2 share these codes).
RKNN_ERRORS = {-1: "RKNN_ERR_FAIL", -2: "RKNN_ERR_TIMEOUT", -3: "RKNN_ERR_DEVICE_UNAVAILABLE",
               -4: "RKNN_ERR_MALLOC_FAIL", -5: "RKNN_ERR_PARAM_INVALID", -6: "RKNN_ERR_MODEL_INVALID",
               -7: "RKNN_ERR_CTX_INVALID", -8: "RKNN_ERR_INPUT_INVALID", -9: "RKNN_ERR_OUTPUT_INVALID",
               -10: "RKNN_ERR_DEVICE_UNMATCH", -11: "RKNN_ERR_INCOMPATILE_PRE_COMPILE_MODEL",
               -12: "RKNN_ERR_INCOMPATILE_OPTIMIZATION_LEVEL_VERSION", -13: "RKNN_ERR_TARGET_PLATFORM_UNMATCH"}
RKNN_CODES = {name: code for code, name in RKNN_ERRORS.items()}


# ------------------------------------------------------------------------------------------------ statistics
@dataclass(frozen=True)
class LatencyStats:
    """Steady-state latency of one model on one board (ms); a percentile is None while it cannot be claimed."""

    count: int
    mean: float
    stdev: float  # sample standard deviation (n - 1); 0.0 for one sample
    min: float
    max: float
    p50: float | None
    p90: float | None
    p99: float | None
    first_run_ms: float | None = None
    samples_ms: tuple[float, ...] = field(default=(), repr=False)

    @classmethod
    def from_samples(cls, samples_ms: list[float], *, first_run_ms: float | None = None) -> LatencyStats:
        values = [float(v) for v in samples_ms]
        if not values:
            raise ConfigError("no latency samples: the run printed no timed iteration")
        if any(not math.isfinite(v) or v < 0 for v in values):
            raise ConfigError(f"latency samples must be finite and >= 0 (got {values[:5]}...)")
        data = np.asarray(values, dtype=np.float64)
        pct = {name: (float(np.percentile(data, int(name[1:]), method="inverted_cdf"))
                      if len(values) >= need else None) for name, need in MIN_SAMPLES.items()}
        return cls(len(values), float(data.mean()), statistics.stdev(values) if len(values) > 1 else 0.0,
                   float(data.min()), float(data.max()), pct["p50"], pct["p90"], pct["p99"], first_run_ms,
                   tuple(values))

    def to_dict(self, *, include_samples: bool = False) -> dict[str, Any]:
        record = {"count": self.count, "mean_ms": self.mean, "stdev_ms": self.stdev, "min_ms": self.min,
                  "max_ms": self.max, "p50_ms": self.p50, "p90_ms": self.p90, "p99_ms": self.p99,
                  "first_run_ms": self.first_run_ms}
        if include_samples:
            record["samples_ms"] = list(self.samples_ms)
        return record


def _budget_findings(stats: LatencyStats, budget: Mapping[str, float]) -> list[tuple[str, str]]:
    """(kind, text) pairs: kind "config" for a budget that cannot be judged, "product" for one that is missed."""
    findings = []
    for key, limit in budget.items():
        if key not in BUDGET_KEYS:
            findings.append(("config", f"unknown latency budget {key!r}: use {', '.join(BUDGET_KEYS)}"))
            continue
        if not isinstance(limit, (int, float)) or isinstance(limit, bool) or not limit > 0:
            findings.append(("config", f"latency budget {key} must be a number of ms > 0 (got {limit!r})"))
            continue
        name = key[:-3]
        value = getattr(stats, BUDGET_KEYS[key])
        if name in MIN_SAMPLES and value is None:
            findings.append(("config", (f"{name} budget of {limit:g} ms cannot be claimed from {stats.count} "
                                       f"runs: run at least {MIN_SAMPLES[name]} iterations")))
        elif value is None:
            findings.append(("config", f"{name} budget of {limit:g} ms: the runner reported no first run"))
        elif value > limit:
            findings.append(("product", (f"{name} {value:.3f} ms exceeds the budget of {limit:g} ms "
                                        f"({(value / limit - 1) * 100:+.1f} %, {stats.count} runs)")))
    return findings


def check_budget(stats: LatencyStats, budget: Mapping[str, float]) -> list[str]:
    """Every way ``stats`` misses ``budget`` (keys: mean_ms, p50_ms, p90_ms, p99_ms, max_ms, first_run_ms).

    A budget on a percentile this many runs cannot claim is a problem (it names the runs needed), never a pass;
    so is an unknown key or a budget on a first run that was not reported."""
    return [text for _, text in _budget_findings(stats, budget)]


def enforce_budget(stats: LatencyStats, budget: Mapping[str, float]) -> None:
    """Raise ConfigError when the budget cannot be judged (the test's setup is wrong), else ProductError when
    it is missed (the model or firmware is too slow)."""
    findings = _budget_findings(stats, budget)
    for kind, error in (("config", ConfigError), ("product", ProductError)):
        texts = [text for k, text in findings if k == kind]
        if texts:
            raise error("; ".join(texts))


@dataclass(frozen=True)
class Regression:
    """A slowdown beyond both the relative tolerance and the baseline's own noise."""

    baseline_mean: float
    baseline_stdev: float
    current_mean: float
    change_pct: float
    threshold_ms: float
    message: str


def _baseline(baseline: LatencyStats | Mapping[str, Any]) -> tuple[float, float, str]:
    """Mean, spread and how the spread was obtained; stored samples win (robust sigma: 1.4826 * MAD)."""
    if isinstance(baseline, LatencyStats):
        samples, mean, stdev = list(baseline.samples_ms), baseline.mean, baseline.stdev
    else:
        samples = list(baseline.get("samples_ms") or [])
        try:
            mean, stdev = float(baseline["mean_ms"]), float(baseline.get("stdev_ms") or 0.0)
        except (KeyError, TypeError, ValueError):
            if not samples:
                raise ConfigError("latency baseline needs mean_ms (and stdev_ms) or samples_ms") from None
            mean, stdev = 0.0, 0.0
    if len(samples) >= 3:
        data = np.asarray(samples, dtype=np.float64)
        median = float(np.median(data))
        return float(data.mean()), 1.4826 * float(np.median(np.abs(data - median))), "sigma from samples' MAD"
    if not (math.isfinite(mean) and mean > 0 and math.isfinite(stdev) and stdev >= 0):
        raise ConfigError(f"latency baseline is unusable: mean {mean} ms, stdev {stdev} ms")
    return mean, stdev, "stdev"


@dataclass(frozen=True)
class Tolerance:
    """How much slower than its baseline a mean may get before it is a regression: more than ``rel`` (a
    fraction) AND more than ``k_sigma`` times the baseline's spread. One setting serves the latency suite and the
    release gate, so a latency cannot pass one and fail the other.

    Written ``25%`` or ``25%,4sigma`` on the command line (``--latency-tolerance``, ``npu-hil gate
    --latency-tolerance``, a gate policy's ``latency_tolerance``), in the spirit of pytest-benchmark's
    ``--benchmark-compare-fail=mean:5%``. The default is loose enough for a loaded CI host's simulated board.
    """

    rel: float = 0.25
    k_sigma: float = 4.0

    @classmethod
    def parse(cls, text: str) -> Tolerance:
        """``PCT%`` and optionally ``,Ksigma`` (either order); ConfigError in one line otherwise."""
        rel, k_sigma = cls.rel, cls.k_sigma
        parts = [p.strip().lower() for p in str(text).split(",") if p.strip()]
        try:
            if not parts or len(parts) > 2:
                raise ValueError
            for part in parts:
                if part.endswith("%"):
                    rel = float(part[:-1]) / 100
                elif part.endswith("sigma"):
                    k_sigma = float(part[:-5])
                else:
                    raise ValueError
        except ValueError:
            raise ConfigError(f"latency tolerance {text!r}: expected PCT% and optionally Ksigma, e.g. 25% or "
                              f"10%,3sigma") from None
        if not (math.isfinite(rel) and rel >= 0 and math.isfinite(k_sigma) and k_sigma >= 0):
            raise ConfigError(f"latency tolerance {text!r}: both figures must be finite and not negative")
        return cls(rel, k_sigma)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Tolerance | None:
        """The tolerance a results.json entry recorded (None when it recorded none, or an unreadable one)."""
        try:
            return cls(float(data["rel"]), float(data["k_sigma"])) if data else None
        except (KeyError, TypeError, ValueError):
            return None

    def to_dict(self) -> dict[str, float]:
        return {"rel": self.rel, "k_sigma": self.k_sigma}

    def __str__(self) -> str:
        return f"{self.rel * 100:g}%,{self.k_sigma:g}sigma"


def regression(current: LatencyStats, baseline: LatencyStats | Mapping[str, Any],
               tolerance: Tolerance = Tolerance()) -> Regression | None:
    """A Regression when the current mean is more than ``tolerance.rel`` slower than the baseline AND above the
    baseline mean + ``tolerance.k_sigma`` * its spread; None otherwise (a faster run is never a regression)."""
    rel_tol, k_sigma = tolerance.rel, tolerance.k_sigma
    base_mean, spread, how = _baseline(baseline)
    change = (current.mean - base_mean) / base_mean if base_mean > 0 else math.inf
    threshold = max(base_mean * (1 + rel_tol), base_mean + k_sigma * spread)
    if current.mean <= threshold:
        return None
    message = (f"latency regression: mean {current.mean:.3f} ms vs baseline {base_mean:.3f} ± {spread:.3f} ms "
               f"({how}), {change * 100:+.1f} %; threshold {threshold:.3f} ms = max(+{rel_tol * 100:g} %, "
               f"{k_sigma:g} sigma); {current.count} runs")
    return Regression(base_mean, spread, current.mean, change * 100, threshold, message)


# ------------------------------------------------------------------------------------------------ runner output
@dataclass(frozen=True)
class TensorInfo:
    """One tensor as the tool printed it (fields it did not print stay None)."""

    io: str  # "input" or "output"
    index: int
    name: str | None = None
    dims: tuple[int, ...] = ()
    n_elems: int | None = None
    size: int | None = None
    fmt: str | None = None
    type: str | None = None
    qnt_type: str | None = None
    zp: int | None = None
    scale: float | None = None
    path: str | None = None


@dataclass(frozen=True)
class RunError:
    """One error line; ``code`` is the RKNN error code when the line carries one (``ret=-13``, a name)."""

    line: str
    code: int | None = None
    name: str | None = None


@dataclass
class BenchmarkRun:
    """What a run printed: steady-state iterations (warm-up excluded), first run, outputs, versions, errors."""

    tool: str
    iterations_ms: list[float] = field(default_factory=list)
    warmup_ms: list[float] = field(default_factory=list)
    #: the runtime's own time of each timed run (RKNN_QUERY_PERF_RUN), where the runner could ask for it
    npu_ms: list[float] = field(default_factory=list)
    first_run_ms: float | None = None
    average_ms: float | None = None
    average_fps: float | None = None
    outputs: list[str] = field(default_factory=list)
    tensors: list[TensorInfo] = field(default_factory=list)
    runtime_version: str | None = None
    driver_version: str | None = None
    model_info: str | None = None
    errors: list[RunError] = field(default_factory=list)
    complete: bool = False  # the tool reached its normal end (outputs saved / ``done``)

    def stats(self) -> LatencyStats:
        return LatencyStats.from_samples(self.iterations_ms, first_run_ms=self.first_run_ms)

    @property
    def error_code(self) -> int | None:
        return next((e.code for e in self.errors if e.code is not None), None)


def _float(text: str) -> float | None:
    try:
        value = float(text)
    except (ValueError, OverflowError):
        return None
    return value if math.isfinite(value) else None


def _int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:  # includes Python's limit on very long digit strings
        return None


NUM = r"[-+]?\d{1,30}(?:\.\d{1,30})?"
_ELAPSE = re.compile(rf"^\s*\d{{1,9}}: Elapse Time = ({NUM})ms, FPS = \S+$")
_AVG = re.compile(rf"^Avg Time ({NUM}|-?nan)ms, Avg FPS = ({NUM}|-?nan)$")
_VERSION = re.compile(r"^rknn_api/rknnrt version: (.*), driver version: (.*)$")
_TENSOR = re.compile(r"^\s+index=(\d{1,9}), (.*)$")
_SAVE = re.compile(r"^Save output to (\S.*)$")
_RET = re.compile(r"ret\s?=\s?(-\d{1,3})\b")
_ERR_NAME = re.compile(r"\b(RKNN_ERR_[A-Z_]+)\b")
_RUNTIME = re.compile(r"(?:librknnrt|librknnmrt|librknn_runtime) version:? (.+)$|^\S+ RKNNAPI:\s+API: (.+)$")
_DRIVER = re.compile(r"RKNN Driver Information, version: (.+)$|^\S+ RKNNAPI:\s+DRV: (.+)$")
_MODEL = re.compile(r"RKNN Model Information[,:] (.+)$")
_ERROR_LINE = re.compile(r"^(E RKNN(API)?: |E [a-z_]+: |error: |Exception: |terminate called)|"
                         r"(fail! ret|run error|failed to submit)")


def _error(line: str) -> RunError:
    code = name = None
    if m := _RET.search(line):
        code = _int(m.group(1))
        name = RKNN_ERRORS.get(code) if code is not None else None
    elif m := _ERR_NAME.search(line):
        name = m.group(1)
        code = RKNN_CODES.get(name)
    elif m := re.search(r"rknn run error (-\d{1,3})\b", line):
        code = _int(m.group(1))
        name = RKNN_ERRORS.get(code) if code is not None else None
    return RunError(line, code, name)


def _common(run: BenchmarkRun, line: str) -> bool:
    """Lines both tools can print (the runtime's log, errors); True when the line was used."""
    if m := _RUNTIME.search(line):
        run.runtime_version = run.runtime_version or (m.group(1) or m.group(2)).strip()
    if m := _DRIVER.search(line):
        run.driver_version = run.driver_version or (m.group(1) or m.group(2)).strip()
    if m := _MODEL.search(line):
        run.model_info = run.model_info or m.group(1).strip()
    if _ERROR_LINE.search(line):
        run.errors.append(_error(line))
        return True
    return False


def _tensor(io: str, match: re.Match[str]) -> TensorInfo:
    fields = dict(part.split("=", 1) for part in re.split(r", (?=\w+=)", match.group(2)) if "=" in part)
    dims = tuple(v for v in (_int(d) for d in re.findall(r"\d{1,12}", fields.get("dims", ""))) if v is not None)
    return TensorInfo(io, _int(match.group(1)) or 0, fields.get("name"), dims, _int(fields.get("n_elems", "")),
                      _int(fields.get("size", "")), fields.get("fmt"), fields.get("type"), fields.get("qnt_type"),
                      _int(fields.get("zp", "")), _float(fields.get("scale", "")))


def parse_rknn_benchmark(text: str) -> BenchmarkRun:
    """Rockchip's rknn_benchmark output (stdout, stderr or both). The 5 warm-up runs come first; the first of
    them is the first inference after rknn_init, so it is reported as ``first_run_ms``. Never raises."""
    run, section, io = BenchmarkRun("rknn_benchmark"), "head", "input"
    for line in str(text).splitlines():
        stripped = line.strip()
        if stripped == "Warmup ...":
            section = "warmup"
        elif stripped == "Begin perf ...":
            section = "perf"
        elif stripped in ("input tensors:", "output tensors:"):
            io = stripped.split()[0]
        elif m := _ELAPSE.match(line):
            value = _float(m.group(1))
            if value is not None:
                (run.warmup_ms if section == "warmup" else run.iterations_ms).append(value)
        elif m := _AVG.match(stripped):
            run.average_ms, run.average_fps = _float(m.group(1)), _float(m.group(2))
        elif m := _VERSION.match(stripped):
            run.runtime_version, run.driver_version = m.group(1).strip(), m.group(2).strip()
        elif m := _TENSOR.match(line):
            run.tensors.append(_tensor(io, m))
        elif m := _SAVE.match(stripped):
            run.outputs.append(m.group(1).strip())
            run.complete = True
        else:
            _common(run, line)
    run.first_run_ms = run.warmup_ms[0] if run.warmup_ms else None
    return run


def _runner_patterns() -> dict[str, re.Pattern[str]]:
    """Regexes built from the runner's own FORMATS, so the parser follows the protocol it reads."""
    patterns = {}
    for key, fmt in FORMATS.items():
        body = re.sub(r"\\\{(\w+)(?::[^}]*)?\\\}", r"(?P<\1>.+?)", re.escape(fmt))
        patterns[key] = re.compile("^" + body + "$")
    return patterns


#: One regex per line of the runner's protocol, built from its FORMATS (the soak reads ``sample`` lines too)
RUNNER_LINES = _runner_patterns()


def parse_runner_output(text: str) -> BenchmarkRun:
    """Our runner's protocol-1 output (stdout, stderr or both); warm-up runs are kept apart. Never raises."""
    run = BenchmarkRun("npu-hil-runner")
    for line in str(text).splitlines():
        line = line.rstrip("\r")
        if (m := RUNNER_LINES["first"].match(line)) and run.first_run_ms is None:
            run.first_run_ms = _float(m["ms"])
        elif m := RUNNER_LINES["warmup"].match(line):
            if (value := _float(m["ms"])) is not None:
                run.warmup_ms.append(value)
        elif m := RUNNER_LINES["iteration"].match(line):
            if (value := _float(m["ms"])) is not None:
                run.iterations_ms.append(value)
        elif m := RUNNER_LINES["npu_time"].match(line):
            if (value := _float(m["ms"])) is not None:
                run.npu_ms.append(value)
        elif m := RUNNER_LINES["average"].match(line):
            run.average_ms = _float(m["ms"])
        elif m := RUNNER_LINES["output"].match(line):
            dims = tuple(v for v in (_int(d) for d in re.findall(r"\d{1,12}", m["shape"])) if v is not None)
            run.outputs.append(m["path"])
            run.tensors.append(TensorInfo("output", _int(m["index"]) or 0, dims=dims, type=m["dtype"],
                                          path=m["path"]))
        elif RUNNER_LINES["done"].match(line):
            run.complete = True
        else:
            _common(run, line)
    return run
