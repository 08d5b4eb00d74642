"""Pictures of samples against data, written as PNG files: a scatter plot for 2-d data, an image
grid for digits, and a 2-d PCA projection for other vectors."""

from __future__ import annotations

import os
from typing import Any

import torch

from flowstudy.fileio import atomic_path


def pyplot() -> Any:
    import matplotlib  # imported here: matplotlib costs start-up time every run would pay

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | os.PathLike[str]) -> None:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
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


def pca_scatter(samples: torch.Tensor, data: torch.Tensor, path: str | os.PathLike[str],
                title: str) -> None:
    """Both sets projected on the top two principal components of the data."""
    mean = data.mean(0)
    _, _, v = torch.linalg.svd(data - mean, full_matrices=False)
    basis = v[:2].T
    scatter((samples - mean) @ basis, (data - mean) @ basis, path, title, axes="PC")


def image_grid(samples: torch.Tensor, path: str | os.PathLike[str], title: str,
               side: int = 8, rows: int = 10, vmax: float = 16.0) -> None:
    """The first rows x rows samples as side x side grey images (digits: values 0..16)."""
    plt = pyplot()
    n = min(rows * rows, samples.shape[0])
    images = samples[:n].clamp(0, vmax).reshape(n, side, side)
    canvas = torch.zeros(rows * (side + 1), rows * (side + 1))
    for i in range(n):
        r, c = divmod(i, rows)
        top, left = r * (side + 1), c * (side + 1)
        canvas[top:top + side, left:left + side] = images[i]
    fig, ax = plt.subplots(figsize=(5, 5.3), dpi=120)
    ax.imshow(canvas.numpy(), cmap="gray_r", vmin=0, vmax=vmax)
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    save_figure(fig, path)
