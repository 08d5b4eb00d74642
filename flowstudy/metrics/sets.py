"""Every sample-set metric of one sample set against held-out data, with its two yardsticks.

Every metric is also reported for an independent real set of the same size (the *floor*: a model
cannot be expected to beat the distance between the data and itself) and for samples of a
Gaussian fitted to the train split (the *baseline*: a model that does not beat it has learnt no
more than a mean and a covariance).
"""

from __future__ import annotations

import math

import torch

from flowstudy.metrics import SET_METRICS
from flowstudy.metrics.c2st import c2st
from flowstudy.metrics.distances import frechet_distance, mmd2_unbiased, wasserstein2
from flowstudy.metrics.neighbours import density_coverage, memorization, precision_recall
from flowstudy.metrics.norms import norm_metrics


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
    def scores(x: torch.Tensor, memorized_from: torch.Tensor) -> dict[str, float]:
        if not torch.isfinite(x).all():
            return dict.fromkeys(SET_METRICS, math.nan)
        precision, recall = precision_recall(test, x)
        density, coverage = density_coverage(test, x)
        memorized, nn_dist = memorization(memorized_from.to(device), train)
        computed = {"w2": wasserstein2(x, test), "mmd": mmd2_unbiased(x, test),
                    "fd": frechet_distance(x, test), "precision": precision, "recall": recall,
                    "density": density, "coverage": coverage, "memorized": memorized,
                    "nn_dist": nn_dist, **c2st(x, test, seed).as_metrics(),
                    **norm_metrics(x, test)}
        return {key: computed[key] for key in SET_METRICS}  # the registry's order, all of it

    model, floor = scores(samples, samples), scores(reference, test)
    gauss = scores(baseline, baseline)
    return {**model, **{f"{key}_floor": value for key, value in floor.items()},
            **{f"{key}_baseline": value for key, value in gauss.items()}}
