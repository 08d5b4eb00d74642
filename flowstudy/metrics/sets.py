"""Every sample-set metric of one sample set against held-out data, with its two yardsticks.

Every metric is also reported for an independent real set of the same size (the *floor*: a model
cannot be expected to beat the distance between the data and itself) and for samples of a
Gaussian fitted to the train split (the *baseline*: a model that does not beat it has learnt no
more than a mean and a covariance).
"""

from __future__ import annotations

import logging
import math

import torch

from flowstudy.metrics import SET_METRICS
from flowstudy.metrics.c2st import c2st
from flowstudy.metrics.distances import frechet_distance, mmd2_unbiased, wasserstein2
from flowstudy.metrics.neighbours import (
    PRDC_K,
    density_coverage,
    memorization,
    min_points,
    precision_recall,
)
from flowstudy.metrics.norms import norm_metrics

log = logging.getLogger("flowstudy")
C2ST_FOLDS = 5


def undefined_at(n: int) -> list[str]:
    """The set metrics not defined for sets of ``n`` points (reported as NaN): k-NN metrics need
    k + 1 points, the C2ST two per fold and class."""
    small = [key for key, k in PRDC_K.items() if n < min_points(k)]
    return small + (["c2st", "c2st_std", "c2st_lr", "c2st_mlp"] if n < 2 * C2ST_FOLDS else [])


def undefined_note(n: int) -> str | None:
    """The one line that says which metrics are NaN because ``n`` points are too few, or None."""
    small = undefined_at(n)
    if not small:
        return None
    needs: dict[int, list[str]] = {}
    for key, k in PRDC_K.items():
        if key in small:
            needs.setdefault(min_points(k), []).append(key)
    if "c2st" in small:
        needs.setdefault(2 * C2ST_FOLDS, []).append("c2st")
    names = [key for keys in needs.values() for key in keys]
    why = ", ".join(f"{'/'.join(keys)} need {count}" for count, keys in needs.items())
    return (f"{', '.join(names)}: NaN, not defined at this n ({n} points per set; {why}); "
            f"more test points and samples (sample.n, dataset.n_test) define them")


def set_scores(x: torch.Tensor, test: torch.Tensor, memorized_from: torch.Tensor,
               train: torch.Tensor, device: torch.device | str = "cpu",
               seed: int = 0) -> dict[str, float]:
    """Every metric in ``SET_METRICS`` of the set ``x`` against ``test``, memorisation measured
    for ``memorized_from``; NaN throughout where ``x`` is not finite."""
    if not torch.isfinite(x).all():
        return dict.fromkeys(SET_METRICS, math.nan)
    precision, recall = precision_recall(test, x)
    density, coverage = density_coverage(test, x)
    memorized, nn_dist = memorization(memorized_from.to(device), train)
    computed = {"w2": wasserstein2(x, test), "mmd": mmd2_unbiased(x, test),
                "fd": frechet_distance(x, test), "precision": precision, "recall": recall,
                "density": density, "coverage": coverage, "memorized": memorized,
                "nn_dist": nn_dist, **c2st(x, test, seed, C2ST_FOLDS).as_metrics(),
                **norm_metrics(x, test)}
    return {key: computed[key] for key in SET_METRICS}  # the registry's order, all of it


def sample_metrics(samples: torch.Tensor, test: torch.Tensor, reference: torch.Tensor,
                   baseline: torch.Tensor, train: torch.Tensor,
                   device: torch.device | str = "cpu", seed: int = 0) -> dict[str, float]:
    """Every metric in ``SET_METRICS`` of ``samples`` against ``test``, with two yardsticks:

    ``<key>_floor``: the same metric for ``reference``, real points from the train split
    (for memorisation: the test points themselves, fresh real points the model never saw);
    ``<key>_baseline``: the same metric for ``baseline``, samples of a Gaussian fitted to train.
    ``samples``, ``test``, ``reference`` and ``baseline`` must have the same size (exact W2).
    Non-finite samples give NaN metrics. The distances to the train set, the one cost that
    grows with the data, are computed on ``device``. ``seed`` (the data seed) fixes the C2ST's
    folds and classifier initialisation, the same for all three sets.
    """
    note = undefined_note(min(len(samples), len(test)))
    if note:
        log.warning("%s", note)
    model = set_scores(samples, test, samples, train, device, seed)
    floor = set_scores(reference, test, test, train, device, seed)
    gauss = set_scores(baseline, test, baseline, train, device, seed)
    return {**model, **{f"{key}_floor": value for key, value in floor.items()},
            **{f"{key}_baseline": value for key, value in gauss.items()}}
