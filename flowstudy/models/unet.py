"""1-D convolutional UNet over the vector as a length-D, one-channel signal."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from flowstudy.models.time_embedding import SinusoidalTimeEmbedding


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(8 if channels % 8 == 0 else 1, channels)


class ResBlock(nn.Module):
    """Conv residual block; time enters as a scale and shift of the normalised features."""

    def __init__(self, c_in: int, c_out: int, time_dim: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = _norm(c_in), nn.Conv1d(c_in, c_out, 3, padding=1)
        self.time = nn.Linear(time_dim, 2 * c_out)
        self.norm2, self.conv2 = _norm(c_out), nn.Conv1d(c_out, c_out, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.time(temb)[:, :, None].chunk(2, dim=1)
        h = self.conv2(F.silu(self.norm2(h) * (1 + scale) + shift))
        return self.skip(x) + h


class UNet1D(nn.Module):
    def __init__(self, dim_in: int, channels: int, mults: list[int], blocks: int) -> None:
        super().__init__()
        self.dim_in = dim_in
        self.multiple = 2 ** (len(mults) - 1)  # one halving between consecutive levels
        time_dim = 4 * channels
        self.time = SinusoidalTimeEmbedding(time_dim, freqs=128, mlp=True)
        self.inp = nn.Conv1d(1, channels, 3, padding=1)
        widths = [channels * m for m in mults]
        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        c = channels
        for level, width in enumerate(widths):
            self.down.append(nn.ModuleList(
                ResBlock(c if i == 0 else width, width, time_dim) for i in range(blocks)))
            c = width
            if level < len(widths) - 1:
                self.downsample.append(nn.Conv1d(c, c, 3, stride=2, padding=1))
        self.mid = ResBlock(c, c, time_dim)
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for level, width in reversed(list(enumerate(widths))):
            self.up.append(nn.ModuleList(
                ResBlock((c + width) if i == 0 else width, width, time_dim)
                for i in range(blocks)))
            c = width
            if level > 0:
                self.upsample.append(nn.Conv1d(c, c, 3, padding=1))
        self.out = nn.Sequential(_norm(c), nn.SiLU(), nn.Conv1d(c, 1, 3, padding=1))
        nn.init.zeros_(self.out[2].weight)
        nn.init.zeros_(self.out[2].bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        length = -(-self.dim_in // self.multiple) * self.multiple
        h = self.inp(F.pad(x, (0, length - self.dim_in))[:, None, :])
        temb = self.time(t)
        skips = []
        for level, blocks in enumerate(self.down):
            for block in blocks:
                h = block(h, temb)
            skips.append(h)
            if level < len(self.downsample):
                h = self.downsample[level](h)
        h = self.mid(h, temb)
        for level, blocks in enumerate(self.up):
            h = torch.cat([h, skips.pop()], dim=1)
            for block in blocks:
                h = block(h, temb)
            if level < len(self.upsample):
                h = self.upsample[level](F.interpolate(h, scale_factor=2, mode="nearest"))
        return self.out(h)[:, 0, :self.dim_in]
