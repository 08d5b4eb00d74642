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
    autocast_cache: bool = True  # off in a captured CUDA graph step

    @classmethod
    def create(cls, kind: str, device: torch.device) -> Precision:
        scaler = torch.amp.GradScaler(device.type) if kind == "fp16" else None
        return cls(kind, device.type, scaler)

    def autocast(self) -> Any:
        if self.kind == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=DTYPES[self.kind],
                              cache_enabled=self.autocast_cache)

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        """Bring gradients back to their true scale before they are clipped or inspected."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer, skip: torch.Tensor, fused: bool) -> None:
        """Apply the update unless ``skip`` (1.0, a device tensor) is set; then fp16 adapts its
        loss scale (lowered after an inf, as the scaler decides on the device). A fused optimizer
        takes ``skip`` as its ``found_inf`` (no weight, moment or step count changes); any other
        must be told on the host."""
        if fused:
            optimizer.found_inf = skip
            try:
                optimizer.step()
            finally:
                del optimizer.found_inf
        elif not skip.item():
            optimizer.step()
        if self.scaler is not None:
            self.scaler.update()  # from the inf checks unscale() recorded on the device
