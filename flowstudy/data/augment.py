"""Augmentations of training batches (never of val or test), in normalised coordinates."""

from __future__ import annotations

from collections.abc import Callable

import torch

from flowstudy.config import AugConfig, MixupAugConfig, NoiseAugConfig
from flowstudy.options import build

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def gaussian_noise(std: float) -> Augment:
    def apply(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return x + std * torch.randn(x.shape, generator=g, device=x.device)

    return apply


def mixup(alpha: float) -> Augment:
    """x <- lam x + (1 - lam) x[perm] with lam ~ Beta(alpha, alpha) per row."""

    def apply(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        perm = torch.randperm(x.shape[0], generator=g, device=x.device)
        # Inverse-CDF sampling keeps every draw on the seeded generator (torch's Beta takes none).
        from scipy.special import betaincinv  # only mixup needs it: spare every run the import

        u = torch.rand(x.shape[0], generator=g, device=x.device, dtype=torch.float64)
        lam = torch.from_numpy(betaincinv(alpha, alpha, u.cpu().numpy())).to(x)[:, None]
        return lam * x + (1 - lam) * x[perm]

    return apply


# The builders of flowstudy.options' aug rows.


def no_augment(cfg: AugConfig) -> None:
    return None


def noise(cfg: NoiseAugConfig) -> Augment:
    return gaussian_noise(cfg.std)


def mixup_of(cfg: MixupAugConfig) -> Augment:
    return mixup(cfg.alpha)


def build_augment(cfg: AugConfig) -> Augment | None:
    """The augmentation of aug config ``cfg``, by its option's row."""
    return build("aug", cfg)
