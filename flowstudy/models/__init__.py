"""Velocity-field architectures: each maps (x_t [B, D], t [B]) to a velocity [B, D]."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from flowstudy.models.dit import DiT
from flowstudy.models.mlp import MLP
from flowstudy.models.unet import UNet1D

# arch option -> builder(arch config, data dim)
MODELS: dict[str, Callable[[Any, int], nn.Module]] = {
    "mlp": lambda c, d: MLP(d, width=c.width, depth=c.depth),
    "dit": lambda c, d: DiT(d, dim=c.dim, depth=c.depth, heads=c.heads, patch=c.patch,
                            mlp_ratio=c.mlp_ratio),
    "unet": lambda c, d: UNet1D(d, channels=c.channels, mults=list(c.mults), blocks=c.blocks),
}


def build_model(cfg: Any, dim: int) -> nn.Module:
    """The model of arch config ``cfg`` for ``dim``-d data; its sizes must be resolved already
    (``flowstudy.resolve``: a run's built config, or a checkpoint's ``resolved``)."""
    return MODELS[cfg.name](cfg, dim)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
