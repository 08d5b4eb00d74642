"""One training step without host reads: a non-finite step changes no state, and patience
freezes the run."""

from __future__ import annotations

from pathlib import Path

import torch

from flowstudy.batches import Batch
from flowstudy.config import Config
from flowstudy.step import train_step

from .helpers import TINY, built_with_lr, compose_config, state_tensors, step_config


def _config(tmp_path: Path, *overrides: str) -> Config:
    return compose_config([*TINY, f"study_dir={tmp_path / 'study'}", "wandb.mode=disabled",
                           *overrides])


def test_a_non_finite_step_changes_no_state_and_patience_freezes_the_run(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "train.nan_patience=2")
    built = built_with_lr(cfg)
    s, step_cfg = built.state, step_config(cfg, built)
    params = list(s.model.parameters())
    good = next(iter(built.batches.epoch(0, s.shuffle_gen, s.noise_gen)))
    bad = Batch(good.x0, good.x1.clone().fill_(float("nan")), good.t, good.eps)
    train_step(s, built.engine, built.batches.flow.path, good, step_cfg, params)
    before = [t.clone() for t in state_tensors(built)[:-5]]
    for _ in range(4):  # two skipped steps reach the patience; later steps are frozen
        train_step(s, built.engine, built.batches.flow.path, bad, step_cfg, params)
    for a, b in zip(before, state_tensors(built)[:-5], strict=True):
        assert torch.equal(a, b)  # weights, EMA, Adam moments and step count, EMA count
    counts = s.read_tally()
    assert (counts["steps"], counts["skipped"], counts["streak"]) == (1, 2, 2)
    train_step(s, built.engine, built.batches.flow.path, good, step_cfg, params)
    assert s.read_tally()["steps"] == 1  # a diverged run stays frozen until the host stops it
