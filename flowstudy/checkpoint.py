"""Checkpoint files: atomic save, and a load that explains what is wrong with a bad file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from flowstudy.config import differences
from flowstudy.errors import UserError
from flowstudy.fileio import atomic_path

FORMAT_VERSION = 1
COMPATIBLE_SECTIONS = ("arch", "flow", "dataset")


class CheckpointError(UserError):
    pass


# What a run's checkpoints hold and resuming reads; a file without them is damaged or foreign.
RESUMABLE = ("config", "model", "ema", "optimizer", "early_stopping", "generators", "epoch",
                 "step", "batch", "window", "nonfinite", "rng")


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    try:
        # Through a Python file, so a full disk is an OSError (ENOSPC) that torch's zip writer
        # at most wraps: its own file writer reports only a RuntimeError about stream positions.
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            torch.save({"format_version": FORMAT_VERSION, **state}, f)
    except (OSError, RuntimeError) as e:  # disk full, quota, vanished directory: say so
        os_error = next((c for c in (e, e.__cause__, e.__context__) if isinstance(c, OSError)),
                        None)
        if os_error is None:  # torch's own failure, not the file's
            raise
        raise CheckpointError(f"could not write {path} ({os_error.strerror or os_error}); the "
                              f"previous {Path(path).name}, if any, is intact") from e


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device,
                    require: tuple[str, ...] = ()) -> dict:
    """The checkpoint at ``path``, with the ``require``d keys (e.g. ``RESUMABLE``), or one line
    saying what is wrong with it."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"resume={path}: no such file")
    if p.is_dir():
        raise CheckpointError(f"resume={path}: is a directory; give the checkpoint file inside "
                              f"it, e.g. resume={p / 'best.pt'}")
    try:
        ckpt = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises several types for truncated or foreign files
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"resume={path}: not a readable checkpoint ({reason})") from e
    if not isinstance(ckpt, dict) or "format_version" not in ckpt:
        raise CheckpointError(f"resume={path}: not a flowstudy checkpoint")
    if ckpt["format_version"] > FORMAT_VERSION:
        raise CheckpointError(
            f"resume={path}: checkpoint format {ckpt['format_version']} is newer than this "
            f"flowstudy reads (up to {FORMAT_VERSION}); upgrade flowstudy"
        )
    missing = [k for k in require if k not in ckpt]
    if missing:
        raise CheckpointError(f"resume={path}: damaged checkpoint, it lacks {', '.join(missing)}")
    return ckpt


def check_compatible(path: str | os.PathLike[str], saved: dict, current: dict) -> None:
    """The model, flow and data of a resumed run must be the ones the checkpoint was trained on."""
    diffs = [d for s in COMPATIBLE_SECTIONS for d in differences(saved[s], current[s], s)]
    if diffs:
        raise CheckpointError(
            f"resume={path}: checkpoint was trained with {', '.join(diffs)}; "
            f"resume with the same arch, flow and dataset settings"
        )
