"""Velocity-field architectures: each maps (x_t [B, D], t [B]) to a velocity [B, D]."""

from __future__ import annotations

from torch import nn

from flowstudy.config import ArchConfig, DiTConfig, MLPConfig, UNetConfig
from flowstudy.models.dit import DiT
from flowstudy.models.mlp import MLP
from flowstudy.models.unet import UNet1D
from flowstudy.options import build

# The builders of flowstudy.options' arch rows: (arch config, data dim) -> model; the sizes must
# be resolved already (flowstudy.resolve: a run's built config, or a checkpoint's ``resolved``).


def mlp(c: MLPConfig, dim: int) -> nn.Module:
    return MLP(dim, width=c.width, depth=c.depth)


def dit(c: DiTConfig, dim: int) -> nn.Module:
    return DiT(dim, dim=c.dim, depth=c.depth, heads=c.heads, patch=c.patch, mlp_ratio=c.mlp_ratio)


def unet(c: UNetConfig, dim: int) -> nn.Module:
    return UNet1D(dim, channels=c.channels, mults=list(c.mults), blocks=c.blocks)


def build_model(cfg: ArchConfig, dim: int) -> nn.Module:
    """The model of arch config ``cfg`` for ``dim``-d data, by its option's row."""
    return build("arch", cfg, dim)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
