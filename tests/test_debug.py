"""debug= presets: a fixed batch that must be fitted to ~0, a profiler trace, a seconds-long run."""

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


def test_profile_writes_a_trace_of_the_requested_steps(tmp_path: Path) -> None:
    tiny = [o for o in TINY if not o.startswith("train.epochs=")]
    cfg = compose_config(["debug=profile", *tiny, "train.profile_steps=3",
                          f"study_dir={tmp_path / 'study'}"])
    assert cfg.train.epochs == 1
    result = run(cfg, tmp_path / "out")
    out = Path(result.checkpoint).parent
    trace = json.loads((out / "trace.json").read_text())
    steps = sorted({e["name"] for e in trace["traceEvents"]
                    if e.get("name", "").startswith("ProfilerStep#")})
    assert steps == ["ProfilerStep#2", "ProfilerStep#3", "ProfilerStep#4"]  # 1 skipped, 1 warm-up
    table = (out / "profile.txt").read_text()
    assert "aten::addmm" in table and "Self CPU" in table
    assert result.status == "completed" and result.steps == 8


def test_quick_is_a_small_run_that_replaces_the_previous_debug_run() -> None:
    cfg = compose_config(["debug=quick"])
    assert (cfg.study_dir, cfg.force, cfg.wandb.mode) == ("study/debug", True, "disabled")
    assert (cfg.train.epochs, cfg.dataset.n_train, cfg.sample.steps) == (2, 1024, 10)
