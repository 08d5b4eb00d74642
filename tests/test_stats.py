"""flowstudy.stats against scipy computed another way, and its verdicts on synthetic seeds."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

from flowstudy import stats


def test_the_t_interval_of_a_known_case_is_scipys() -> None:
    values = [0.12, 0.081, 0.159, 0.131]
    iv = stats.interval(values)
    mean, sem = np.mean(values), scipy.stats.sem(values)
    low, high = scipy.stats.t.interval(0.95, len(values) - 1, loc=mean, scale=sem)
    assert (iv.mean, iv.low, iv.high) == pytest.approx((mean, low, high), rel=1e-12)
    assert iv.n == 4 and iv.sd == pytest.approx(np.std(values, ddof=1))
    # 1, 2, 3: mean 2, sd 1, t_.975(2) = 4.3027 standard errors of 1/sqrt(3) each side.
    assert stats.interval([1, 2, 3]).low == pytest.approx(2 - 4.302653 / math.sqrt(3), abs=1e-6)


@pytest.mark.parametrize("method", ["percentile", "bca"])
def test_a_bootstrap_interval_of_a_known_case_is_scipys(method: str) -> None:
    values = np.random.default_rng(3).normal(1.0, 0.2, size=12)
    iv = stats.interval(list(values), method, seed=7)  # type: ignore[arg-type]
    ref = scipy.stats.bootstrap((values,), np.mean, method="BCa" if method == "bca" else method,
                                n_resamples=9999, rng=np.random.default_rng(7))
    assert (iv.low, iv.high) == (ref.confidence_interval.low, ref.confidence_interval.high)
    assert iv.mean == pytest.approx(values.mean()) and iv.method == method


def test_one_seed_has_no_interval_and_equal_seeds_a_zero_width_one() -> None:
    one = stats.interval([0.3])
    assert one.mean == 0.3 and not one.known and one.n == 1
    same = stats.interval([0.3, 0.3, 0.3])
    assert (same.low, same.high, same.sd) == (0.3, 0.3, 0.0)
    assert stats.interval([]) is None
    assert stats.interval([0.1, float("nan"), 0.3]).n == 2  # a diverged seed has no value


def test_a_paired_difference_is_scipys_ttest_rel_and_an_unpaired_one_welchs() -> None:
    a = {0: 0.40, 1: 0.45, 2: 0.43, 3: 0.47}
    b = {0: 0.31, 1: 0.38, 2: 0.33, 3: 0.36}
    c = stats.compare(a, b, "w2", "minimize", ("a", "b"))
    ref = scipy.stats.ttest_rel(list(a.values()), list(b.values())).confidence_interval()
    assert c.paired and c.shared == 4 and c.wins == 0
    assert (c.difference.low, c.difference.high) == pytest.approx((ref.low, ref.high))
    assert c.b_better and not c.a_better

    b_elsewhere = {s + 10: v for s, v in b.items()}  # no shared seeds: Welch
    w = stats.compare(a, b_elsewhere, "w2", "minimize")
    ref = scipy.stats.ttest_ind(list(a.values()), list(b.values()),
                                equal_var=False).confidence_interval()
    assert not w.paired and w.wins is None
    assert (w.difference.low, w.difference.high) == pytest.approx((ref.low, ref.high))


def test_probability_of_improvement_is_rliables_over_all_pairs_with_ties_half() -> None:
    # Pairs (a, b): (1, 1.5) a, (1, 3) a, (2, 1.5) b, (2, 3) a: 3 of 4 better for a (lower).
    assert stats.probability_of_improvement([1, 2], [1.5, 3], "minimize") == 0.75
    assert stats.probability_of_improvement([1, 2], [1.5, 3], "maximize") == 0.25
    assert stats.probability_of_improvement([1, 2], [1, 2], "minimize") == 0.5


def test_seeds_to_settle_is_the_power_formula_with_t_quantiles() -> None:
    z = scipy.stats.norm.ppf(0.975) + scipy.stats.norm.ppf(0.8)
    # Large n: the normal formula n = ((z_.975 + z_.8) sd / d)^2.
    assert stats.seeds_to_settle(0.01, 0.1) == pytest.approx((z * 10) ** 2, abs=2)
    # Small n: t quantiles ask for more than z would (8 seeds by z for sd = d, paired).
    n = stats.seeds_to_settle(1.0, 1.0)
    assert n > math.ceil(z ** 2)
    t = scipy.stats.t.ppf(0.975, n - 1) + scipy.stats.t.ppf(0.8, n - 1)
    t_before = scipy.stats.t.ppf(0.975, n - 2) + scipy.stats.t.ppf(0.8, n - 2)
    assert t <= math.sqrt(n) and t_before > math.sqrt(n - 1)  # the smallest n that has power
    assert stats.seeds_to_settle(0.0, 0.1) is None  # no difference: no number of seeds
    assert stats.seeds_to_settle(0.1, None) is None  # no spread known (one seed)


def test_a_lead_outside_the_interval_wins_and_one_inside_does_not() -> None:
    broken = {0: 0.43, 1: 0.44, 2: 0.43}
    good = {0: 0.34, 1: 0.31, 2: 0.31}
    v = stats.verdict({"broken": broken, "good": good}, "w2", "minimize", "W2")
    assert v.winner == "good" and v.runner_up == "broken"
    assert v.comparison.paired and v.comparison.difference.high < 0
    assert v.text.startswith("best by W2: good (0.32) vs broken (0.433): difference -0.113")

    # Higher is better: the same numbers make "broken" the winner.
    assert stats.verdict({"broken": broken, "good": good}, "recall", "maximize").winner == \
        "broken"

    # Two draws of the same noise: a leader, but not a winner, and a seed count.
    rng = np.random.default_rng(0)
    x = dict(enumerate(rng.normal(0.3, 0.03, 3)))
    y = dict(enumerate(rng.normal(0.3, 0.03, 3)))
    v = stats.verdict({"x": x, "y": y}, "w2", "minimize", "W2")
    assert v.winner is None and v.leader in ("x", "y")
    n = v.comparison.seeds_to_settle
    assert n is not None and n > 3
    assert v.text.startswith("no clear winner by W2: ") and f"~{n} seeds each" in v.text


def test_identical_arms_never_win_and_one_seed_never_decides() -> None:
    same = {0: 0.2, 1: 0.25, 2: 0.22}
    v = stats.verdict({"a": same, "b": dict(same)}, "fd", "minimize")
    assert v.winner is None and "agree on every seed" in v.text
    single = stats.verdict({"a": {0: 0.1}, "b": {0: 0.5}}, "fd", "minimize")
    assert single.winner is None and single.leader == "a" and "no interval" in single.text
    alone = stats.verdict({"a": same}, "fd", "minimize")
    assert alone.winner is None and alone.runner_up is None


def test_unpaired_arms_are_judged_by_welch() -> None:
    a = {0: 0.10, 1: 0.12, 2: 0.11}
    b = {5: 0.30, 6: 0.33, 7: 0.31}
    v = stats.verdict({"a": a, "b": b}, "w2", "minimize")
    assert v.winner == "a" and not v.comparison.paired and "Welch" in v.text


def test_the_yardstick_verdicts_follow_the_paired_interval_and_the_direction() -> None:
    w2 = {0: 0.30, 1: 0.32, 2: 0.31}
    assert stats.against_yardstick(w2, {s: 0.36 for s in w2}, "minimize", "baseline")[0] == \
        "beats gauss"
    assert stats.against_yardstick(w2, {s: 0.25 for s in w2}, "minimize", "baseline")[0] == \
        "worse than gauss"
    assert stats.against_yardstick(w2, {0: 0.29, 1: 0.33, 2: 0.31}, "minimize", "floor")[0] == \
        "≈ floor"
    assert stats.against_yardstick(w2, {s: 0.1 for s in w2}, "minimize", "floor")[0] == \
        "worse than floor"
    recall = {0: 0.90, 1: 0.92, 2: 0.91}  # higher is better: above the baseline beats it
    assert stats.against_yardstick(recall, {s: 0.8 for s in w2}, "maximize", "baseline")[0] == \
        "beats gauss"
    assert stats.against_yardstick({0: 0.3}, {0: 0.36}, "minimize", "baseline")[0] is None
