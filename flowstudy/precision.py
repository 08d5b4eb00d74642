"""Numeric precision of the training step: fp32, bf16 autocast (CPU and CUDA), or fp16 autocast
with loss scaling (CUDA). Weights, optimizer state and EMA stay in fp32 in every case."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Precision:
    kind: str  # fp32 | bf16 | fp16
    device_type: str  # cpu | cuda
    scaler: torch.amp.GradScaler | None = None  # fp16 only; its state is checkpointed

    @classmethod
    def create(cls, kind: str, device: torch.device) -> Precision:
        scaler = torch.amp.GradScaler(device.type) if kind == "fp16" else None
        return cls(kind, device.type, scaler)

    def autocast(self) -> Any:
        if self.kind == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=DTYPES[self.kind])

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        """Bring gradients back to their true scale before they are clipped or inspected."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is None:
            optimizer.step()
        else:
            self.scaler.step(optimizer)
            self.scaler.update()

    def skip(self, optimizer: torch.optim.Optimizer) -> None:
        """A step with non-finite gradients: fp16 lowers its loss scale, nothing else changes."""
        if self.scaler is not None:
            self.scaler.step(optimizer)  # sees the inf and skips the update
            self.scaler.update()
