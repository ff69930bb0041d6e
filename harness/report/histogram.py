"""A latency histogram as PNG bytes, for the report of a latency test.

Why a picture next to the numbers: a mean and a p99 hide the shape of the samples (two modes from DVFS or a
thermal throttle, one outlier from a page fault), which is what a person needs to judge a regression. Drawn with
matplotlib's Agg canvas on a bare :class:`~matplotlib.figure.Figure` (no pyplot: no global state, no display,
safe in a headless CI runner and inside pytest).
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from harness.errors import ConfigError, require_extra

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def latency_histogram_png(samples_ms: Sequence[float], *, title: str = "latency",
                          budget_ms: float | None = None, baseline_ms: float | None = None,
                          first_run_ms: float | None = None) -> bytes:
    """A histogram of ``samples_ms`` with the mean, and the budget and baseline means when given, as lines.

    The first run is shown in the legend only: it is reported apart (manual 4.2.3) and would squash the axis.
    Raises ConfigError when there is nothing to draw.
    """
    import numpy as np

    require_extra("matplotlib", "reports", "the latency histogram")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    data = np.asarray([float(v) for v in samples_ms], dtype=np.float64)
    if data.size == 0 or not np.all(np.isfinite(data)):
        raise ConfigError("a latency histogram needs at least one finite sample")
    figure = Figure(figsize=(6.4, 3.6), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    bins = "auto" if data.size > 1 and float(data.max() - data.min()) > 0 else 1
    axes.hist(data, bins=bins, color="#4c72b0", edgecolor="white")
    mean = float(data.mean())
    axes.axvline(mean, color="black", linestyle="-", label=f"mean {mean:.3f} ms")
    if budget_ms is not None:
        axes.axvline(float(budget_ms), color="#c44e52", linestyle="--", label=f"budget {float(budget_ms):g} ms")
    if baseline_ms is not None:
        axes.axvline(float(baseline_ms), color="#55a868", linestyle=":",
                     label=f"baseline {float(baseline_ms):.3f} ms")
    if first_run_ms is not None:
        axes.plot([], [], " ", label=f"first run {float(first_run_ms):.3f} ms (apart)")
    axes.set_xlabel("ms per inference (on the board)")
    axes.set_ylabel("runs")
    axes.set_title(f"{title} ({data.size} runs)")
    axes.legend(loc="best", fontsize="small")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
