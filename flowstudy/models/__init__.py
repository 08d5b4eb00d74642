"""Velocity-field architectures: each maps (x_t [B, D], t [B]) to a velocity [B, D]."""

from __future__ import annotations

from torch import nn

from flowstudy.config import ArchConfig, MLPConfig
from flowstudy.models.mlp import MLP


def build_model(cfg: ArchConfig, dim: int) -> nn.Module:
    if isinstance(cfg, MLPConfig):
        return MLP(dim, width=cfg.width, depth=cfg.depth)
    raise TypeError(f"no model for arch config {type(cfg).__name__}")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
