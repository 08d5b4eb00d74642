"""Learning-rate schedule: linear warmup, then cosine decay to ``min_lr_ratio`` of the peak.

A pure function of the optimizer step, so its state is the global step the checkpoint already holds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class WarmupCosine:
    lr: float
    warmup_steps: int
    total_steps: int
    min_lr_ratio: float

    def __call__(self, step: int) -> float:
        """Learning rate for the optimizer step that follows ``step`` completed steps."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        decay_steps = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / decay_steps)
        cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.lr * (self.min_lr_ratio + (1.0 - self.min_lr_ratio) * cosine)

    def at(self, step: torch.Tensor) -> torch.Tensor:
        """The same on a device tensor (float64), so a step's lr needs no host read."""
        s = step.double()
        warm = self.lr * (s + 1) / max(1, self.warmup_steps)
        decay_steps = max(1, self.total_steps - self.warmup_steps)
        progress = ((s - self.warmup_steps) / decay_steps).clamp(0.0, 1.0)
        cosine = 0.5 * (1.0 + torch.cos(math.pi * progress))
        decayed = self.lr * (self.min_lr_ratio + (1.0 - self.min_lr_ratio) * cosine)
        return torch.where(s < self.warmup_steps, warm, decayed)
