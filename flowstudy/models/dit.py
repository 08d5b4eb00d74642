"""DiT-style transformer over patches of a vector, with adaLN-Zero time conditioning."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from flowstudy.models.time_embedding import SinusoidalTimeEmbedding


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale[:, None, :]) + shift[:, None, :]


class DiTBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"),
                                 nn.Linear(hidden, dim))
        # adaLN-Zero: shift/scale/gate for attention and MLP, zero-initialised so every block
        # starts as the identity.
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        nn.init.zeros_(self.modulation[1].weight)
        nn.init.zeros_(self.modulation[1].bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(c).chunk(6, dim=1)
        b, n, d = x.shape
        q, k, v = self.qkv(_modulate(self.norm1(x), shift1, scale1)).view(
            b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attn = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d)
        x = x + gate1[:, None, :] * self.proj(attn)
        return x + gate2[:, None, :] * self.mlp(_modulate(self.norm2(x), shift2, scale2))


class DiT(nn.Module):
    """The vector [B, D] is zero-padded to ``tokens * patch`` dims and cut into tokens."""

    def __init__(self, dim_in: int, dim: int, depth: int, heads: int, patch: int,
                 mlp_ratio: float) -> None:
        super().__init__()
        self.dim_in = dim_in
        self.patch = patch
        self.tokens = math.ceil(dim_in / self.patch)
        self.embed = nn.Linear(self.patch, dim)
        self.pos = nn.Parameter(torch.randn(1, self.tokens, dim) * 0.02)
        self.time = SinusoidalTimeEmbedding(dim, freqs=256, mlp=True)
        self.blocks = nn.ModuleList(DiTBlock(dim, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.final_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.out = nn.Linear(dim, self.patch)
        for layer in (self.final_modulation[1], self.out):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        x = F.pad(x, (0, self.tokens * self.patch - self.dim_in))
        h = self.embed(x.view(b, self.tokens, self.patch)) + self.pos
        c = self.time(t)
        for block in self.blocks:
            h = block(h, c)
        shift, scale = self.final_modulation(c).chunk(2, dim=1)
        out = self.out(_modulate(self.norm(h), shift, scale))
        return out.reshape(b, -1)[:, :self.dim_in]
