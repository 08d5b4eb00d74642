"""flowstudy: a Hydra-configured experiment runner for flow-matching ablation studies.

``flowstudy.load(path)`` gives a trained run's EMA model, normaliser and sampler.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowstudy.loading import TrainedRun


def load(path: Any, device: Any = "cpu") -> TrainedRun:
    """A trained run from its checkpoint (``study/checkpoints/<run>/best.pt``): see
    ``flowstudy.loading.TrainedRun``. Imported on first use, so ``import flowstudy`` stays light."""
    from flowstudy.loading import load as load_run

    return load_run(path, device)
