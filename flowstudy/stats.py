"""Statistics over seeds: intervals, paired comparisons and verdicts, with scipy.stats.

Pure functions of numbers (no torch, no files); the report and its figures call them.

**Which interval.** The default is a Student-t interval for the mean over seeds
(``scipy.stats.ttest_1samp(...).confidence_interval``). A study has 2-5 seeds per
configuration, and there a bootstrap is the wrong tool: it resamples the few values it has, so
its interval can never be wider than their range (with 2 seeds the percentile interval is
the segment between them) and it covers the true mean far less than 95% of the time. Measured
on normal data (300 draws each, scipy 1.17): percentile and BCa cover 48% at 2 seeds, 75% at 3,
83% at 5 and still 88% at 10, the t interval 94-95% at every n, because its quantile (12.7 at 2
seeds, 4.3 at 3, 2.8 at 5) pays for not knowing the spread. The t interval assumes the
seed-to-seed noise is roughly normal, plausible for a metric that is itself an average over
many samples. ``method="percentile"`` or ``"bca"`` asks for scipy.stats.bootstrap instead, for
many seeds or skewed metrics; rliable's stratified bootstrap is that bootstrap when runs of
several tasks are pooled (each task resampled on its own), which a report row never does: a
difference of unpaired arms is resampled arm by arm, the same stratification.

**Comparisons.** Configurations that share seeds are compared seed by seed: the interval is
the t interval of the per-seed differences (``ttest_rel``), since a seed fixes the
initialisation, noise and sampling draws, so most of the seed noise cancels. Otherwise (fewer
than two shared seeds) the two sets of seeds are compared as independent samples with Welch's
interval (``ttest_ind(equal_var=False)``). The probability of improvement is rliable's
P(A better than B): the fraction of all (run of A, run of B) pairs in which A's run is better,
ties counting half, i.e. the Mann-Whitney U statistic over n_A * n_B (scipy.stats.mannwhitneyu);
the paired wins (seeds on which A is better) are given beside it.

**Verdicts.** The best configuration is named only when the interval of its difference to the
runner-up excludes 0 in its favour. Otherwise there is no clear winner, and the report says how
many seeds per configuration the observed spread suggests would settle it: the sample size of
a two-sided test at 5% with 80% power, n = ((z_.975 + z_.8) * sd_diff / |mean_diff|)^2, solved
with t quantiles at the n's own degrees of freedom in place of z (by iteration: with a handful
of seeds z understates it). sd_diff is the spread of the per-seed differences when paired,
sqrt(sd_A^2 + sd_B^2) when not. It is an estimate from a few seeds, not a promise.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from scipy import stats as sps

Method = Literal["t", "percentile", "bca"]
METHODS: tuple[str, ...] = ("t", "percentile", "bca")
CONFIDENCE = 0.95
POWER = 0.8
MAX_SEEDS = 10_000  # seeds_to_settle gives up beyond this


@dataclass(frozen=True)
class Interval:
    """The mean of ``n`` values with its two-sided interval (low, high); an interval needs two
    values (None for one)."""

    mean: float
    low: float | None
    high: float | None
    n: int
    sd: float | None  # the values' standard deviation (ddof=1)
    method: str

    @property
    def known(self) -> bool:
        return self.low is not None and self.high is not None

    def excludes(self, value: float) -> bool:
        return self.known and (self.low > value or self.high < value)  # type: ignore[operator]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _clean(values: Sequence[float]) -> np.ndarray:
    a = np.asarray([float(v) for v in values], dtype=float)
    return a[np.isfinite(a)]


def _rng_kwarg(seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    takes_rng = "rng" in inspect.signature(sps.bootstrap).parameters  # scipy >= 1.15
    return {"rng": rng} if takes_rng else {"random_state": rng}


def interval(values: Sequence[float], method: Method = "t", confidence: float = CONFIDENCE,
             n_resamples: int = 9999, seed: int = 0) -> Interval | None:
    """The mean of the finite ``values`` and its interval (None when there are none). Equal
    values give a zero-width interval: every seed agreed."""
    a = _clean(values)
    if not len(a):
        return None
    mean = float(a.mean())
    if len(a) == 1:
        return Interval(mean, None, None, 1, None, method)
    sd = float(a.std(ddof=1))
    if np.ptp(a) == 0:
        return Interval(mean, mean, mean, len(a), 0.0, method)
    if method == "t":
        ci = sps.ttest_1samp(a, 0.0).confidence_interval(confidence)
    else:
        ci = sps.bootstrap((a,), np.mean, confidence_level=confidence, method=method.upper()
                           if method == "bca" else method, n_resamples=n_resamples,
                           **_rng_kwarg(seed)).confidence_interval
    return Interval(mean, float(ci.low), float(ci.high), len(a), sd, method)


def welch_interval(a: Sequence[float], b: Sequence[float], method: Method = "t",
                   confidence: float = CONFIDENCE, n_resamples: int = 9999,
                   seed: int = 0) -> Interval | None:
    """mean(a) - mean(b) for independent samples: Welch's t interval, or a bootstrap that
    resamples each sample on its own (stratified). None unless both have two values."""
    x, y = _clean(a), _clean(b)
    if len(x) < 2 or len(y) < 2:
        return None
    mean = float(x.mean() - y.mean())
    sd = math.sqrt(x.var(ddof=1) + y.var(ddof=1))
    if sd == 0:
        return Interval(mean, mean, mean, min(len(x), len(y)), 0.0, method)
    if method == "t":
        ci = sps.ttest_ind(x, y, equal_var=False).confidence_interval(confidence)
    else:
        ci = sps.bootstrap((x, y), lambda u, v, axis=-1: u.mean(axis) - v.mean(axis),
                           confidence_level=confidence, n_resamples=n_resamples,
                           method="BCa" if method == "bca" else method,
                           **_rng_kwarg(seed)).confidence_interval
    return Interval(mean, float(ci.low), float(ci.high), min(len(x), len(y)), sd, method)


def better(a: float, b: float, direction: str) -> bool:
    return a < b if direction == "minimize" else a > b


def probability_of_improvement(a: Sequence[float], b: Sequence[float],
                               direction: str) -> float | None:
    """rliable's P(A better than B): over every pair of a run of A and a run of B, the fraction
    in which A's is better, ties counting half (Mann-Whitney U / (n_A n_B))."""
    x, y = _clean(a), _clean(b)
    if not len(x) or not len(y):
        return None
    if direction == "minimize":
        x, y = -x, -y
    u = sps.mannwhitneyu(x, y, alternative="two-sided").statistic
    return float(u) / (len(x) * len(y))


def _negligible(diff: float, scale: float) -> bool:
    """A difference that is rounding error: equal means computed in a different order."""
    return abs(diff) <= 1e-12 * max(1.0, abs(scale))


def seeds_to_settle(mean_diff: float, sd_diff: float | None, paired: bool = True,
                    confidence: float = CONFIDENCE, power: float = POWER) -> int | None:
    """Seeds per configuration at which a difference of ``mean_diff`` with a spread of
    ``sd_diff`` would be told from 0 with ``power``: the smallest n >= 2 with
    (t_{1-alpha/2} + t_{power}) * sd / |d| <= sqrt(n), at n - 1 degrees of freedom when paired,
    2n - 2 when not (sd then being sqrt(sd_A^2 + sd_B^2)). None when no number of seeds would:
    no difference (d = 0), or no spread known, or more than MAX_SEEDS."""
    if sd_diff is None or _negligible(mean_diff, sd_diff) or not math.isfinite(mean_diff):
        return None
    if sd_diff == 0:
        return 2
    ratio = sd_diff / abs(mean_diff)
    for n in range(2, MAX_SEEDS + 1):
        df = n - 1 if paired else 2 * n - 2
        need = (sps.t.ppf(1 - (1 - confidence) / 2, df) + sps.t.ppf(power, df)) * ratio
        if need <= math.sqrt(n):
            return n
        if n > 100:  # the z formula is exact enough from here on
            z = (sps.norm.ppf(1 - (1 - confidence) / 2) + sps.norm.ppf(power)) * ratio
            n_z = math.ceil(z * z)
            return n_z if n_z <= MAX_SEEDS else None
    return None


@dataclass(frozen=True)
class Comparison:
    """A against B on one metric: the difference A - B with its interval, P(A better than B),
    and on shared seeds how many A won."""

    a: str
    b: str
    metric: str
    direction: str
    paired: bool
    difference: Interval | None  # A - B: paired over shared seeds, else Welch
    p_improvement: float | None  # rliable's P(A better than B)
    wins: int | None  # seeds on which A is better (paired only)
    shared: int  # seeds both have

    @property
    def a_better(self) -> bool:
        """The interval excludes 0 on A's side."""
        d = self.difference
        if d is None or not d.known:
            return False
        return d.high < 0 if self.direction == "minimize" else d.low > 0  # type: ignore[operator]

    @property
    def b_better(self) -> bool:
        d = self.difference
        if d is None or not d.known:
            return False
        return d.low > 0 if self.direction == "minimize" else d.high < 0  # type: ignore[operator]

    @property
    def seeds_to_settle(self) -> int | None:
        d = self.difference
        if d is None or self.a_better or self.b_better:
            return None
        return seeds_to_settle(d.mean, d.sd, self.paired)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(difference=self.difference and self.difference.to_dict(),
                   a_better=self.a_better, b_better=self.b_better,
                   seeds_to_settle=self.seeds_to_settle)
        return out


def compare(a: Mapping[int, float], b: Mapping[int, float], metric: str, direction: str,
            names: tuple[str, str] = ("A", "B"), method: Method = "t",
            confidence: float = CONFIDENCE) -> Comparison:
    """A against B, each {seed: value}: paired by seed where they share two or more seeds with
    finite values, else Welch over all their seeds."""
    a = {s: float(v) for s, v in a.items() if math.isfinite(v)}
    b = {s: float(v) for s, v in b.items() if math.isfinite(v)}
    shared = sorted(set(a) & set(b))
    p = probability_of_improvement(list(a.values()), list(b.values()), direction)
    if len(shared) >= 2:
        diffs = [a[s] - b[s] for s in shared]
        wins = sum(better(a[s], b[s], direction) for s in shared)
        return Comparison(*names, metric, direction, True,
                          interval(diffs, method, confidence), p, wins, len(shared))
    diff = welch_interval(list(a.values()), list(b.values()), method, confidence)
    if diff is None and a and b:  # one seed on a side: the difference, without an interval
        diff = Interval(float(np.mean(list(a.values())) - np.mean(list(b.values()))), None,
                        None, min(len(a), len(b)), None, method)
    return Comparison(*names, metric, direction, False, diff, p, None, len(shared))


@dataclass(frozen=True)
class Verdict:
    """Which configuration is best by a metric, and whether that is outside the noise."""

    metric: str
    winner: str | None  # named only when its lead is outside the interval
    leader: str | None  # the best mean, clear or not
    runner_up: str | None
    comparison: Comparison | None  # leader against runner-up
    text: str

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["comparison"] = self.comparison and self.comparison.to_dict()
        out["seeds_to_settle"] = self.comparison and self.comparison.seeds_to_settle
        return out


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}"


def verdict(arms: Mapping[str, Mapping[int, float]], metric: str, direction: str,
            label: str | None = None, method: Method = "t",
            confidence: float = CONFIDENCE) -> Verdict:
    """The best of ``arms`` ({name: {seed: value}}) by its mean, named the winner only when the
    interval of its difference to the runner-up excludes 0 (paired by seed where they share
    seeds, else Welch); otherwise "no clear winner", with the seeds that would settle it."""
    label = label or metric
    means = {name: float(np.mean(vals)) for name, v in arms.items()
             if (vals := [x for x in v.values() if math.isfinite(x)])}
    if len(means) < 2:
        return Verdict(metric, None, next(iter(means), None), None, None,
                       f"no comparison by {label}: {len(means)} configuration(s) with a value")
    ranked = sorted(means, key=lambda n: means[n] if direction == "minimize" else -means[n])
    lead, second = ranked[0], ranked[1]
    c = compare(arms[lead], arms[second], metric, direction, (lead, second), method, confidence)
    d = c.difference
    how = (f"paired over {c.shared} seeds" if c.paired else "unpaired (Welch)")
    level = f"{confidence:.0%}"
    versus = (f"{lead} ({_fmt(means[lead])}) vs {second} ({_fmt(means[second])}): difference "
              f"{_fmt(d.mean) if d else '-'}")
    if d is not None and c.a_better:
        return Verdict(metric, lead, lead, second, c,
                       f"best by {label}: {versus}, {level} interval [{_fmt(d.low)}, "
                       f"{_fmt(d.high)}] excludes 0 ({how})")
    if d is None or not d.known:
        n = min(len(arms[lead]), len(arms[second]))
        return Verdict(metric, None, lead, second, c,
                       f"no clear winner by {label}: {versus}, but with {n} seed(s) there is no "
                       f"interval; run at least 2 seeds of each")
    n = c.seeds_to_settle
    if d.sd == 0 and _negligible(d.mean, means[lead]):
        settle = "they agree on every seed: no number of seeds would separate them"
    elif _negligible(d.mean, means[lead]):
        settle = "their means are equal: no number of seeds would separate them"
    elif n is None:
        settle = f"more than {MAX_SEEDS:,} seeds would be needed to settle it"
    else:
        settle = (f"~{n} seeds each would settle it ({POWER:.0%} power at the observed "
                  f"spread)")
    return Verdict(metric, None, lead, second, c,
                   f"no clear winner by {label}: {versus}, {level} interval [{_fmt(d.low)}, "
                   f"{_fmt(d.high)}] includes 0 ({how}); {settle}")


Yardstick = Literal["floor", "baseline"]


def against_yardstick(values: Mapping[int, float], yardstick: Mapping[int, float],
                      direction: str, kind: Yardstick, method: Method = "t",
                      confidence: float = CONFIDENCE) -> tuple[str | None, Comparison]:
    """A plain verdict of a metric against its yardstick ({seed: value} each, the yardstick
    measured beside each run): for the Gaussian baseline "beats gauss" / "≈ gauss" / "worse than
    gauss", for the floor "≈ floor" / "worse than floor" / "better than floor", from the
    (paired) interval of metric - yardstick; None without an interval."""
    c = compare(values, yardstick, "", direction, ("model", kind), method, confidence)
    if c.difference is None or not c.difference.known:
        return None, c
    if kind == "baseline":
        word = "beats gauss" if c.a_better else "worse than gauss" if c.b_better else "≈ gauss"
    else:
        word = "better than floor" if c.a_better else (
            "worse than floor" if c.b_better else "≈ floor")
    return word, c
