"""Per-dimension standardisation with statistics taken from the train split only."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Normalizer:
    mean: torch.Tensor
    std: torch.Tensor

    @classmethod
    def fit(cls, x: torch.Tensor, eps: float = 1e-8) -> Normalizer:
        return cls(mean=x.mean(dim=0), std=x.std(dim=0).clamp_min(eps))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.device)) / self.std.to(x.device)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.std.to(z.device) + self.mean.to(z.device)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"mean": self.mean.clone(), "std": self.std.clone()}

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> Normalizer:
        return cls(mean=state["mean"].cpu(), std=state["std"].cpu())
