"""Batches of a training epoch; debug=overfit: one fixed batch that must be fitted to ~0."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from flowstudy.batches import BatchSource
from flowstudy.build import build
from flowstudy.errors import ConfigError
from flowstudy.run import run

from .helpers import TINY, TINY_MOONS, compose_config


def _train_losses(study: Path, name: str) -> list[float]:
    records = [json.loads(line) for line in
               (study / "runs" / name / "metrics.jsonl").read_text().splitlines()]
    return [r["train/loss"] for r in records if "train/loss" in r]


def test_overfit_trains_on_one_fixed_batch_and_drives_its_loss_to_zero(tmp_path: Path) -> None:
    cfg = compose_config(["debug=overfit", *TINY_MOONS, "train.batch_size=64", "train.epochs=20",
                          "sample.steps=4", f"study_dir={tmp_path / 'study'}"])
    built = build(cfg, torch.device("cpu"))
    first = next(built.batches.epoch(0, built.state.shuffle_gen, built.state.noise_gen))
    again = list(built.batches.epoch(5, built.state.shuffle_gen, built.state.noise_gen))
    assert len(again) == built.batches.steps_per_epoch == 8  # an epoch's usual step count
    for batch in again:  # the same points, noise and times at every step
        for a, b in ((batch.x0, first.x0), (batch.x1, first.x1), (batch.t, first.t)):
            assert torch.equal(a, b)
    assert torch.equal(built.val.x1, first.x1) and torch.equal(built.val.t, first.t)

    result = run(cfg, tmp_path / "out")
    losses = _train_losses(tmp_path / "study", cfg.name)
    assert losses[0] > 1.0  # it starts where any flow-matching run starts...
    assert losses[-1] < 1e-4 and result.best_val_loss < 1e-4  # ...and memorises its batch


def test_overfit_batches_beyond_an_epoch_are_refused() -> None:
    cfg = compose_config([*TINY, "train.overfit_batches=9"])  # 512 points / 64: 8 batches
    with pytest.raises(ConfigError, match=r"train.overfit_batches=9 is not allowed: at most the "
                                          r"8 batches of a pass"):
        build(cfg, torch.device("cpu"))
    assert isinstance(build(compose_config([*TINY, "train.overfit_batches=8"]),
                            torch.device("cpu")).batches, BatchSource)
