"""What the report's figures share: intervals, number formats, run order, sample files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from flowstudy.labels import Configs, differing, flat, seedless, short_labels
from flowstudy.results import RunResult, checkpoint_dir_in


def samples_file(study: Path, run: RunResult) -> Path | None:
    path = checkpoint_dir_in(study, run) / "samples.npz"
    return path if path.exists() else None


def in_order(configs: Configs) -> list[tuple[tuple[str, list[RunResult]], str]]:
    """Each configuration with its label, ordered by the settings that differ (numbers as
    numbers: steps 2, 4, 16 rather than 16, 2, 4), then by name."""
    flats = [flat(seedless(runs[0])) for _, runs in configs]
    keys = differing(flats)

    def order(i: int) -> list[tuple[int, Any]]:
        values = [flats[i].get(k) for k in keys]
        return [(0, v) if isinstance(v, (int, float)) else (1, str(v)) for v in values] + [
            (1, configs[i][0])]

    labels = short_labels(configs)
    return [(configs[i], labels[i]) for i in sorted(range(len(configs)), key=order)]


def number(value: float) -> str:
    return f"{value:.3f}" if 1e-3 <= abs(value) < 1 else f"{value:.3g}"


def ci(values: list[float]) -> Any:
    """The mean of ``values`` and its 95% interval over seeds (flowstudy.stats)."""
    from flowstudy import stats  # imported here: training imports this module, not scipy.stats

    return stats.interval(values)


def half_widths(values: np.ndarray) -> np.ndarray:
    """Per column of ``values`` (seeds x points), the half-width of the t interval of the mean
    (flowstudy.stats's default interval); zeros for one seed."""
    n = values.shape[0]
    if n < 2:
        return np.zeros(values.shape[1])
    from scipy import stats as sps

    return sps.t.ppf(0.975, n - 1) * values.std(0, ddof=1) / np.sqrt(n)


def spread(values: list[float]) -> str:
    """``0.120 [0.081, 0.159]``: the mean with its 95% interval over seeds."""
    iv = ci(values)
    if iv.known:
        return f"{number(iv.mean)} [{number(iv.low)}, {number(iv.high)}]"
    return number(iv.mean)


# --- every metric with its interval ------------------------------------------------------------


def y_range(lows: list[float], highs: list[float]) -> tuple[float, float]:
    """From the lowest point of any band to the 95th percentile of the curves' later values,
    with a margin: the end of training fills the plot, the first epochs run off its top."""
    low, high = min(lows), float(np.percentile(highs, 95))
    margin = 0.06 * (high - low) if high > low else 0.05 * abs(high) + 1e-6
    return low - margin, high + margin


