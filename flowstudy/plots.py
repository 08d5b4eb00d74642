"""Pictures of samples against data, written as PNG files."""

from __future__ import annotations

import os

import torch

from flowstudy.fileio import atomic_path


def scatter(samples: torch.Tensor, data: torch.Tensor, path: str | os.PathLike[str],
            title: str) -> None:
    """Generated samples over held-out data, on shared axes."""
    import matplotlib  # imported here: matplotlib costs start-up time every run would pay

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    ax.scatter(data[:, 0], data[:, 1], s=3, alpha=0.5, color="tab:gray", label="test data")
    ax.scatter(samples[:, 0], samples[:, 1], s=3, alpha=0.6, color="tab:blue", label="samples")
    ax.set_title(title, fontsize=9)
    ax.set_aspect("equal")
    ax.legend(loc="upper right", fontsize=8, markerscale=3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
