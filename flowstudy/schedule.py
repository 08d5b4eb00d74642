"""Learning-rate schedule: linear warmup, then cosine decay to ``min_lr_ratio`` of the peak; with
``train.schedule=plateau``, also a cosine from where the monitor plateaued to the step early
stopping would stop at.

A pure function of the optimizer step and its fields; the plateau's steps, decided during the
run, are checkpointed with the training state (``TrainState.plateau``).
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
    # (start, end): from ``start`` the lr also follows a cosine from the planned one at
    # ``start`` down to the minimum at ``end``, and is the lower of the two; None: no plateau.
    plateau: tuple[int, int] | None = None

    def _cosine(self, progress: float, top: float) -> float:
        low = self.lr * self.min_lr_ratio
        return low + (top - low) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def planned(self, step: int) -> float:
        """Warmup + cosine alone, without the plateau."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        decay_steps = max(1, self.total_steps - self.warmup_steps)
        return self._cosine(min(1.0, (step - self.warmup_steps) / decay_steps), self.lr)

    def __call__(self, step: int) -> float:
        """Learning rate for the optimizer step that follows ``step`` completed steps."""
        lr = self.planned(step)
        if self.plateau is None or step < self.plateau[0]:
            return lr
        start, end = self.plateau
        progress = min(1.0, (step - start) / max(1, end - start))
        return min(lr, self._cosine(progress, self.planned(start)))

    def at(self, step: torch.Tensor) -> torch.Tensor:
        """The same on a device tensor (float64), so a step's lr needs no host read."""
        s = step.double()
        low = self.lr * self.min_lr_ratio

        def cosine(progress: torch.Tensor, top: float) -> torch.Tensor:
            return low + (top - low) * 0.5 * (1.0 + torch.cos(math.pi * progress))

        warm = self.lr * (s + 1) / max(1, self.warmup_steps)
        decay_steps = max(1, self.total_steps - self.warmup_steps)
        decayed = cosine(((s - self.warmup_steps) / decay_steps).clamp(0.0, 1.0), self.lr)
        lr = torch.where(s < self.warmup_steps, warm, decayed)
        if self.plateau is None:
            return lr
        start, end = self.plateau
        plateau = cosine(((s - start) / max(1, end - start)).clamp(0.0, 1.0), self.planned(start))
        return torch.where(s < start, lr, torch.minimum(lr, plateau))
