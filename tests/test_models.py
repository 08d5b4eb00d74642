from __future__ import annotations

import pytest
import torch

from flowstudy.config import DiTConfig, MLPConfig, UNetConfig
from flowstudy.models import build_model
from flowstudy.models.dit import DiT
from flowstudy.resolve import arch_sizes

CONFIGS = [MLPConfig(name="mlp", width=32, depth=2), DiTConfig(name="dit", dim=32, depth=1),
           UNetConfig(name="unet", channels=8, mults=[1, 2, 2])]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: c.name)
@pytest.mark.parametrize("dim", [1, 2, 5, 64, 1024])
def test_every_arch_maps_xt_and_t_to_a_velocity_of_the_same_shape(cfg: object, dim: int) -> None:
    model = build_model(arch_sizes(cfg, dim), dim)
    x, t = torch.randn(3, dim), torch.rand(3)
    out = model(x, t)
    assert out.shape == (3, dim) and torch.isfinite(out).all()
    (out - x).square().sum().backward()  # every architecture is trainable end to end
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_dit_patches_cover_the_vector_and_start_as_zero_velocity() -> None:
    model = DiT(1024, dim=32, depth=2, heads=4, patch=128, mlp_ratio=2.0)
    assert (model.patch, model.tokens) == (128, 8)
    odd = DiT(5, dim=32, depth=1, heads=4, patch=2, mlp_ratio=2.0)
    assert odd.tokens == 3  # zero-padded from 5 to 6 dims
    x = torch.randn(4, 1024)
    assert torch.equal(model(x, torch.rand(4)), torch.zeros(4, 1024))  # adaLN-Zero output


def test_time_changes_the_velocity_once_trained_a_few_steps() -> None:
    # Zero-initialised outputs and gates need a few steps before t can reach the output.
    for cfg in CONFIGS:
        model = build_model(arch_sizes(cfg, 4), 4)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        x = torch.randn(8, 4)
        t = torch.linspace(0, 1, 8)
        for _ in range(3):
            opt.zero_grad()
            (model(x, t) - t[:, None]).square().mean().backward()
            opt.step()
        same_x = x[:1].repeat(2, 1)
        out = model(same_x, torch.tensor([0.0, 1.0]))
        assert not torch.allclose(out[0], out[1]), cfg.name
