"""The distribution of sample norms against the data's: where collapse and over-spread show.

Sentence embeddings are unit vectors, and a flow that pulls its samples inward (norms 0.94) can
score FD, precision and coverage at the real-data floor. The Euclidean norm, from the origin in
data space, is one number per point, so its two distributions are compared exactly: ``norm_w1``
is the 1-d Wasserstein-1 distance between the norms of ``x`` and of ``y`` (scipy's
``wasserstein_distance``: the area between the two empirical CDFs), in the data's units. Scaling
a set by ``c`` moves it by ``|1 - c|`` times the mean norm. ``norm_mean`` and ``norm_std`` are
the norms of ``x`` alone, as context: compare them with the same numbers of real points (the
floor). On data without a meaningful origin (moons, images) it is one more 1-d marginal.

``project_norm`` is sample.project_norm's projection: each sample rescaled to the train split's
mean norm. One radius rather than, say, the norm of each sample's nearest train point: it needs
nothing of the data beyond one number, so the projected samples borrow no train point, and on
unit-norm data it is exactly the sphere. On data whose norms spread it squeezes them to one
value; it is meant for data on a sphere.
"""

from __future__ import annotations

import torch
from scipy.stats import wasserstein_distance


def norm_metrics(x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """``norm_w1`` between the norms of ``x`` and ``y``, and the mean and std of ``x``'s."""
    nx = torch.linalg.vector_norm(x.double().cpu(), dim=1)
    ny = torch.linalg.vector_norm(y.double().cpu(), dim=1)
    return {"norm_w1": float(wasserstein_distance(nx.numpy(), ny.numpy())),
            "norm_mean": float(nx.mean()),
            "norm_std": float(nx.std(correction=1)) if len(nx) > 1 else 0.0}


def project_norm(x: torch.Tensor, radius: float) -> torch.Tensor:
    """``x`` with every row rescaled to norm ``radius`` (its direction kept; a zero row stays
    zero): sample.project_norm puts samples on the sphere of the train split's mean norm."""
    norms = torch.linalg.vector_norm(x, dim=1, keepdim=True)
    return x * (radius / norms.clamp_min(torch.finfo(x.dtype).tiny))
