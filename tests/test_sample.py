"""Evaluating a checkpoint without retraining: ``flowstudy.load`` (the command,
``python -m flowstudy.sample``, is in tests/e2e/test_sample.py)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

import flowstudy
from flowstudy.loading import config_from_dict

from .helpers import TINY, name_of

NAME = name_of(TINY)


def test_load_gives_the_runs_config_and_a_sampler(trained: Path) -> None:
    best = trained / f"study/checkpoints/{NAME}/best.pt"
    loaded = flowstudy.load(best)
    saved = json.loads((trained / f"study/runs/{NAME}/result.json").read_text())
    assert loaded.config == config_from_dict(saved["config"])
    assert loaded.dim == 2 and loaded.epoch == saved["best_epoch"]
    first, nfe = loaded.sample_with_nfe(64, steps=3, solver="midpoint", seed=5)
    assert first.shape == (64, 2) and nfe == 6 and torch.isfinite(first).all()
    assert torch.equal(first, loaded.sample(64, steps=3, solver="midpoint", seed=5))
    assert not torch.equal(first, loaded.sample(64, steps=3, solver="midpoint", seed=6))
