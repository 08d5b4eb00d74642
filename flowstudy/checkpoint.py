"""The one checkpoint schema: what a checkpoint file holds, written and read only here.

A file is one flat dict (``format_version`` 1, unchanged since the first release, so old
checkpoints stay readable): the training state (``TrainState.state_dict()``: model, ema,
optimizer, early_stopping, generators, epoch, step, batch, window, nonfinite, scaler,
schedule), the global RNG states, and what the run is (its requested config, lineage, the values
the data resolved, the normaliser and the W&B run id). ``Checkpoint.capture`` assembles it,
``Checkpoint.save`` writes it atomically, ``Checkpoint.load`` reads it once and explains what is
wrong with a bad file.

``early_stopping`` holds the monitor's best value (of ``train.monitor``: a val loss, or a sample
metric on the val split), its epoch, the updates since, and the EMA val loss at that epoch;
``schedule`` holds the steps a plateau decay runs from and to. Both of those additions
(``early_stopping.best_val_loss``, ``schedule``) are optional: an older file resumes as a run
that monitored a val loss and had no plateau.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from flowstudy.config import differences
from flowstudy.errors import UserError
from flowstudy.fileio import atomic_path
from flowstudy.rng import rng_state

FORMAT_VERSION = 1
ZIP_MAGIC = b"PK\x03\x04"  # what every file torch.save writes starts with
COMPATIBLE_SECTIONS = ("arch", "flow", "dataset")
# The training state a resumable file must hold; a file without it is damaged or foreign.
TRAIN_KEYS = ("model", "ema", "optimizer", "early_stopping", "generators", "epoch", "step",
              "batch", "window", "nonfinite")
HEADER_KEYS = ("config", "lineage", "resolved", "normalizer", "wandb_run_id", "full_name")


class CheckpointError(UserError):
    pass


@dataclass(frozen=True)
class RunHeader:
    """What every checkpoint of a run carries beside its training state."""

    config: dict[str, Any] = field(default_factory=dict)  # as requested (to_dict)
    lineage: list[dict[str, Any]] = field(default_factory=list)
    resolved: dict[str, Any] = field(default_factory=dict)  # flowstudy.resolve.Resolved
    normalizer: dict[str, Any] = field(default_factory=dict)
    full_name: str | None = None  # the derived name in full, where config's name is shortened


@dataclass
class Checkpoint:
    train: dict[str, Any]  # TrainState.state_dict()
    rng: dict[str, Any]  # flowstudy.rng.rng_state()
    config: dict[str, Any]
    lineage: list[dict[str, Any]] | None = None  # None: written before lineages were recorded
    resolved: dict[str, Any] | None = None
    normalizer: dict[str, Any] | None = None
    wandb_run_id: str | None = None
    full_name: str | None = None
    # Of the bytes this object was read from (None: not read from a file).
    sha256: str | None = field(default=None, compare=False)

    @classmethod
    def capture(cls, state: Any, header: RunHeader, wandb_run_id: str | None) -> Checkpoint:
        """The checkpoint of ``state`` (a TrainState) now, with the global RNG states."""
        return cls(train=state.state_dict(), rng=rng_state(), config=header.config,
                   lineage=header.lineage, resolved=header.resolved,
                   normalizer=header.normalizer, wandb_run_id=wandb_run_id,
                   full_name=header.full_name)

    @property
    def epoch(self) -> int:
        return int(self.train["epoch"])

    @property
    def step(self) -> int:
        return int(self.train["step"])

    def ema_weights(self) -> dict[str, torch.Tensor]:
        return self.train["ema"]["module"]

    def save(self, path: str | os.PathLike[str]) -> None:
        content = {"format_version": FORMAT_VERSION, **self.train, "rng": self.rng,
                   "config": self.config, "lineage": self.lineage, "resolved": self.resolved,
                   "normalizer": self.normalizer, "wandb_run_id": self.wandb_run_id,
                   "full_name": self.full_name}
        try:
            # Through a Python file, so a full disk is an OSError (ENOSPC) that torch's zip
            # writer at most wraps: its own file writer reports only a RuntimeError about
            # stream positions.
            with atomic_path(path) as tmp, open(tmp, "wb") as f:
                torch.save(content, f)
        except (OSError, RuntimeError) as e:  # disk full, quota, vanished directory: say so
            os_error = next((c for c in (e, e.__cause__, e.__context__)
                             if isinstance(c, OSError)), None)
            if os_error is None:  # torch's own failure, not the file's
                raise
            raise CheckpointError(f"could not write {path} ({os_error.strerror or os_error}); "
                                  f"the previous {Path(path).name}, if any, is intact") from e

    @classmethod
    def load(cls, path: str | os.PathLike[str],
             map_location: str | torch.device = "cpu") -> Checkpoint:
        """The checkpoint at ``path``, read once (its sha256 is of exactly the bytes read, so a
        file replaced meanwhile cannot be hashed for it), or one line saying what is wrong."""
        p = Path(path)
        if not p.exists():
            raise CheckpointError(f"resume={path}: no such file")
        if p.is_dir():
            raise CheckpointError(f"resume={path}: is a directory; give the checkpoint file "
                                  f"inside it, e.g. resume={p / 'best.pt'}")
        try:
            raw = p.read_bytes()
            content = torch.load(io.BytesIO(raw), map_location=map_location, weights_only=True)
        except Exception as e:  # torch raises several types for truncated or foreign files
            raise CheckpointError(f"resume={path}: not a readable checkpoint "
                                  f"({_unreadable(raw, e)})") from e
        if not isinstance(content, dict) or "format_version" not in content:
            raise CheckpointError(f"resume={path}: not a flowstudy checkpoint")
        version = content["format_version"]
        if not isinstance(version, int) or isinstance(version, bool):
            raise CheckpointError(f"resume={path}: damaged checkpoint, its format_version is "
                                  f"{version!r:.40}, expected an integer")
        if version > FORMAT_VERSION:
            raise CheckpointError(
                f"resume={path}: checkpoint format {content['format_version']} is newer than "
                f"this flowstudy reads (up to {FORMAT_VERSION}); upgrade flowstudy")
        missing = [k for k in ("config", *TRAIN_KEYS, "rng") if k not in content]
        if missing:
            raise CheckpointError(f"resume={path}: damaged checkpoint, it lacks "
                                  f"{', '.join(missing)}")
        if not isinstance(content["config"], dict):
            raise CheckpointError(f"resume={path}: damaged checkpoint, its config is a "
                                  f"{type(content['config']).__name__}, expected the run's "
                                  f"config (a mapping)")
        train = {k: v for k, v in content.items()
                 if k not in (*HEADER_KEYS, "rng", "format_version")}
        return cls(train=train, rng=content["rng"], sha256=hashlib.sha256(raw).hexdigest(),
                   **{k: content.get(k) for k in HEADER_KEYS})


def _unreadable(raw: bytes, e: Exception) -> str:
    """What is wrong with a file torch cannot load, from its bytes: torch's own messages for a
    cut-short file ("negative seek value", "failed finding central directory") name its
    internals, not the file."""
    if not raw:
        return "the file is empty"
    if raw.startswith(ZIP_MAGIC) and not zipfile.is_zipfile(io.BytesIO(raw)):
        return (f"the file is cut short: {len(raw)} bytes, its zip archive lacks its end, as an "
                f"interrupted copy or a full disk leaves it")
    if not raw.startswith(ZIP_MAGIC):
        return "not a torch checkpoint: torch.save writes a zip archive, and this is not one"
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def check_config(path: str | os.PathLike[str], config: dict[str, Any]) -> None:
    """A checkpoint's config names an option of every group (what a resume compares and a
    reader rebuilds the model from), or one line saying which it lacks."""
    from flowstudy.options import OPTIONS  # the option table, only where a config is read

    missing = [g for g in OPTIONS if not isinstance(config.get(g), dict)
               or config[g].get("name") not in OPTIONS[g]]
    if missing:
        raise CheckpointError(f"resume={path}: damaged checkpoint, its config lacks a valid "
                              f"{', '.join(missing)} (each a mapping naming one of its options)")


def check_compatible(path: str | os.PathLike[str], saved: dict, current: dict) -> None:
    """The model, flow and data of a resumed run must be the ones the checkpoint was trained on."""
    check_config(path, saved)
    diffs = [d for s in COMPATIBLE_SECTIONS for d in differences(saved[s], current[s], s)]
    if diffs:
        raise CheckpointError(
            f"resume={path}: checkpoint was trained with {', '.join(diffs)}; "
            f"resume with the same arch, flow and dataset settings"
        )
