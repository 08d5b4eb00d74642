"""Pictures of samples against data, written as PNG files: a scatter plot for 2-d data, an image
grid for digits (beside real ones), and a 2-d PCA projection for other vectors."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch

from flowstudy.fileio import atomic_path


def pyplot() -> Any:
    import matplotlib  # imported here: matplotlib costs start-up time every run would pay

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | os.PathLike[str], svg: bool = False) -> None:
    """Write ``path`` (PNG), and with ``svg`` the same figure beside it as SVG."""
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    if svg:
        with atomic_path(Path(path).with_suffix(".svg")) as tmp:
            fig.savefig(tmp, format="svg")
    pyplot().close(fig)


def scatter(samples: torch.Tensor, data: torch.Tensor, path: str | os.PathLike[str],
            title: str, axes: str = "") -> None:
    """Generated samples over held-out data, on shared axes."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=120)
    ax.scatter(data[:, 0], data[:, 1], s=3, alpha=0.5, color="tab:gray", label="test data")
    ax.scatter(samples[:, 0], samples[:, 1], s=3, alpha=0.6, color="tab:blue", label="samples")
    ax.set_title(title, fontsize=9)
    if axes:
        ax.set_xlabel(f"{axes} 1")
        ax.set_ylabel(f"{axes} 2")
    else:
        ax.set_aspect("equal")
    ax.legend(loc="upper right", fontsize=8, markerscale=3)
    save_figure(fig, path)


def histogram(samples: torch.Tensor, data: torch.Tensor, path: str | os.PathLike[str],
              title: str) -> None:
    """1-d samples over held-out 1-d data: two densities on shared bins."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=120)
    both = torch.cat([samples[:, 0], data[:, 0]]).double()
    finite = both[torch.isfinite(both)]
    low, high = (float(finite.min()), float(finite.max())) if finite.numel() else (0.0, 1.0)
    bins = torch.linspace(low, high if high > low else low + 1.0, 41).numpy()
    ax.hist(data[:, 0].numpy(), bins=bins, density=True, alpha=0.5, color="tab:gray",
            label="test data")
    ax.hist(samples[:, 0].clamp(low, high).numpy(), bins=bins, density=True, alpha=0.6,
            color="tab:blue", label="samples")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("x")
    ax.legend(loc="upper right", fontsize=8)
    save_figure(fig, path)


def pca_basis(data: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, [D, 2] basis of the top two principal components) of ``data``."""
    mean = data.mean(0)
    _, _, v = torch.linalg.svd(data - mean, full_matrices=False)
    return mean, v[:2].T


def pca_scatter(samples: torch.Tensor, data: torch.Tensor, path: str | os.PathLike[str],
                title: str) -> None:
    """Both sets projected on the top two principal components of the data."""
    mean, basis = pca_basis(data)
    scatter((samples - mean) @ basis, (data - mean) @ basis, path, title, axes="PC")


def image_canvas(images: torch.Tensor, side: int = 8, rows: int = 10,
                 vmax: float = 16.0) -> torch.Tensor:
    """The first rows x rows vectors as side x side images on one canvas, 1-pixel gaps."""
    n = min(rows * rows, images.shape[0])
    tiles = images[:n].clamp(0, vmax).reshape(n, side, side)
    canvas = torch.zeros(rows * (side + 1) - 1, rows * (side + 1) - 1)
    for i in range(n):
        r, c = divmod(i, rows)
        top, left = r * (side + 1), c * (side + 1)
        canvas[top:top + side, left:left + side] = tiles[i]
    return canvas


def image_grid(samples: torch.Tensor, path: str | os.PathLike[str], title: str,
               reference: torch.Tensor | None = None, side: int = 8, rows: int = 10,
               vmax: float = 16.0) -> None:
    """Samples as side x side grey images (digits: values 0..16), beside as many real ones."""
    plt = pyplot()
    panels = [("samples", samples)] if reference is None else [("test data", reference),
                                                                ("samples", samples)]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 5.0), dpi=120,
                             squeeze=False)
    for ax, (label, images) in zip(axes.flat, panels, strict=True):
        ax.imshow(image_canvas(images, side, rows, vmax).numpy(), cmap="gray_r", vmin=0,
                  vmax=vmax)
        ax.set_title(label, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])  # the frame alone keeps real and generated images apart
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path)


def grid_shape(n: int, max_columns: int = 4) -> tuple[int, int]:
    """(rows, columns) of a panel grid for ``n`` panels."""
    columns = min(max_columns, n)
    return math.ceil(n / columns), columns
