"""Checkpoint selection by a sample metric through the real command line: a run with
``train.monitor=val_norm_w1`` on a small file of unit vectors picks best.pt by the metric,
records its values (metrics.jsonl, W&B, result.json) and cost, and a branch resumed from it
carries the monitor's best over."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from flowstudy.checkpoint import Checkpoint
from flowstudy.config.naming import short_name
from flowstudy.results import RunResult

from ..helpers import TINY_MLP, TINY_TRAIN, cli, name_of
from ..wandb_files import find_run_files, read_run

pytestmark = pytest.mark.e2e

# 400 unit vectors in 8-d: splits of 200/100/100, 3 steps an epoch; measured at epochs 2 and 4.
RUN = [*TINY_MLP, *TINY_TRAIN, "train.epochs=4", "train.threads=1", "dataset=embeddings",
       "dataset.path=units.npy", "train.monitor=val_norm_w1", "train.monitor_every=2",
       "train.monitor_n=64", "checkpoint.save_last=true", "sample.likelihood=false"]


def _metrics(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_sample_monitor_picks_best_pt_records_its_values_and_a_branch_keeps_its_best(
        tmp_path: Path, study: list[str]) -> None:
    x = np.random.default_rng(0).normal(size=(400, 8))
    np.save(tmp_path / "units.npy", (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(
        np.float32))
    first = cli([*RUN, *study], cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    name = name_of(RUN)
    result = RunResult.load(tmp_path / "study" / "runs" / name / "result.json")
    records = _metrics(tmp_path / "study" / "runs" / name / "metrics.jsonl")
    measured = [r for r in records if "val/norm_w1" in r]
    assert [r["epoch"] for r in measured] == [2, 4]
    assert all(r["val/monitor_s"] > 0 for r in measured)
    best = min(measured, key=lambda r: r["val/norm_w1"])
    monitor = result.monitor
    assert (monitor["name"], monitor["best"], monitor["best_epoch"]) == (
        "val_norm_w1", best["val/norm_w1"], best["epoch"])
    assert (monitor["points"], monitor["solver"], monitor["steps"], monitor["measurements"]) == (
        64, "euler", 20, 2)
    assert monitor["seconds_per_measurement"] > 0
    # best_val_loss is best.pt's EMA val loss, not the metric
    assert (result.best_epoch, result.best_val_loss) == (best["epoch"], best["val/ema_loss"])
    ckpt = Checkpoint.load(tmp_path / "study" / "checkpoints" / name / "best.pt")
    assert ckpt.epoch == best["epoch"]
    assert ckpt.train["early_stopping"]["best"] == best["val/norm_w1"]
    assert ckpt.train["early_stopping"]["best_val_loss"] == best["val/ema_loss"]
    assert "monitor norm_w1 of EMA samples: 64 fixed source points, euler (20 steps), against " \
           "64 val rows, every 2 epoch(s)" in first.stdout
    assert f"best.pt chosen by val_norm_w1 on the val split: {best['val/norm_w1']:.4g} at " \
           f"epoch {best['epoch']} (2 measurements, " in first.stdout
    wb = read_run(find_run_files(tmp_path / "out")[0])
    assert wb.summary["val/norm_w1"] == {"min": best["val/norm_w1"]}

    # A branch with two more epochs from last.pt (epoch 4) measures at epoch 6 and beats the
    # parent's best or keeps it: its best.pt is never worse by the metric.
    last = f"study/checkpoints/{name}/last.pt"
    branch = cli([*RUN, *study, "train.epochs=6", f"hydra.run.dir={tmp_path / 'out2'}",
                  f"resume={last}", "wandb.mode=disabled"], cwd=tmp_path)
    assert branch.returncode == 0, branch.stderr[-3000:]
    # This config's name is over the derived-name limit (the parent's record keeps it whole):
    # the branch's name is the parent's name and its own suffix, shortened again.
    assert result.full_name is not None and result.full_name != name
    branch_dir = tmp_path / "study" / "runs" / short_name(f"{name}+epochs6")
    resumed = RunResult.load(branch_dir / "result.json")
    own = [r for r in _metrics(branch_dir / "metrics.jsonl") if "val/norm_w1" in r]
    assert [r["epoch"] for r in own] == [2, 4, 6]  # the parent's history, then its own
    assert resumed.monitor["measurements"] == 1
    assert resumed.monitor["best"] == min(best["val/norm_w1"], own[-1]["val/norm_w1"])
    branch_best = Checkpoint.load(resumed.checkpoint)
    assert branch_best.epoch == resumed.monitor["best_epoch"] in (best["epoch"], 6)
    assert branch_best.train["early_stopping"]["best"] == resumed.monitor["best"]
