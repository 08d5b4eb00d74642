"""The start-up reference: a minimal Hydra app that builds flowstudy's default MLP on 2-d data,
takes one AdamW step and writes a marker file. ``python -m benchmarks.minimal_app marker=PATH``"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import hydra
import torch
import torch.nn.functional as F
from hydra.core.config_store import ConfigStore


@dataclass
class MinimalConfig:
    marker: str = "first_step.done"
    width: int = 256
    batch: int = 256


ConfigStore.instance().store(name="minimal", node=MinimalConfig)


@hydra.main(version_base="1.3", config_path=None, config_name="minimal")
def main(cfg: MinimalConfig) -> None:
    from flowstudy.models.mlp import MLP

    model = MLP(2, cfg.width, 3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x1, x0, t = torch.randn(cfg.batch, 2), torch.randn(cfg.batch, 2), torch.rand(cfg.batch)
    loss = F.mse_loss(model((1 - t[:, None]) * x0 + t[:, None] * x1, t), x1 - x0)
    loss.backward()
    optimizer.step()
    Path(cfg.marker).write_text("done\n")


if __name__ == "__main__":
    main()
