"""Datasets as fixed, seeded train/val/test splits in memory, normalised with train statistics."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from flowstudy.config import DatasetConfig, MoonsConfig
from flowstudy.data.normalize import Normalizer
from flowstudy.data.toy2d import moons


@dataclass
class DataSplits:
    """Raw (data-space) splits and the normaliser fitted on ``train``; models see encoded data."""

    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor
    normalizer: Normalizer

    @property
    def dim(self) -> int:
        return self.train.shape[1]


def _generate(cfg: DatasetConfig, n: int, generator: torch.Generator) -> torch.Tensor:
    if isinstance(cfg, MoonsConfig):
        return moons(n, cfg.noise, generator)
    raise TypeError(f"no generator for dataset config {type(cfg).__name__}")


def build_data(cfg: DatasetConfig) -> DataSplits:
    generator = torch.Generator().manual_seed(cfg.seed)
    points = _generate(cfg, cfg.n_train + cfg.n_val + cfg.n_test, generator)
    train, val, test = points.split([cfg.n_train, cfg.n_val, cfg.n_test])
    return DataSplits(train, val, test, Normalizer.fit(train))
