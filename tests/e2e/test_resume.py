"""Resuming through the real command line: more epochs branch into a run of their own, and W&B
forks the parent's run."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from flowstudy.checkpoint import Checkpoint
from flowstudy.results import RunResult
from flowstudy.schedule import WarmupCosine

from ..helpers import TINY, cli, name_of
from ..wandb_files import find_run_files, read_run

pytestmark = pytest.mark.e2e


def _metrics(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_cli_resume_with_more_epochs_branches_into_a_new_run_and_w_and_b_fork(
        tmp_path: Path, study: list[str]) -> None:
    first = cli([*TINY, *study, "train.log_every=8"], cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    name = name_of(TINY)
    best = tmp_path / "study" / "checkpoints" / name / "best.pt"
    stored, stored_bytes = Checkpoint.load(best), best.read_bytes()
    first_result = (tmp_path / "study" / "runs" / name / "result.json").read_text()
    first_run = read_run(find_run_files(tmp_path / "out")[0])

    # Relative resume path: resolved against the directory the command starts in.
    again = cli([*TINY, *study, "train.log_every=8", "train.epochs=5",
                 f"hydra.run.dir={tmp_path / 'out2'}",
                 f"resume=study/checkpoints/{name}/best.pt"], cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    branch = f"{name}+epochs5"
    result = RunResult.load(tmp_path / "study" / "runs" / branch / "result.json")
    assert (result.status, result.epochs, result.steps) == ("completed", 5, 40)
    # The 3-epoch run is untouched: its checkpoint and result stay as they were.
    assert best.read_bytes() == stored_bytes
    assert (tmp_path / "study" / "runs" / name / "result.json").read_text() == first_result
    parent = result.lineage[-1]["parent"]
    assert [s["parent"] for s in result.lineage[:1]] == [None] and len(result.lineage) == 2
    assert parent == {"name": name, "checkpoint": f"study/checkpoints/{name}/best.pt",
                      "sha256": hashlib.sha256(stored_bytes).hexdigest(), "epoch": 3,
                      "step": 24, "wandb_run_id": first_run.run_id}
    assert result.lineage[1]["config"]["train"]["epochs"] == 5
    assert result.lineage[0]["config"]["train"]["epochs"] == 3

    records = _metrics(tmp_path / "study" / "runs" / branch / "metrics.jsonl")
    val_epochs = [r["epoch"] for r in records if "val/ema_loss" in r]
    assert val_epochs == list(range(1, 6))  # the parent's history up to the branch, then its own
    after = [r for r in records if "train/lr" in r and r["step"] > stored.step]
    schedule = WarmupCosine(1e-3 * 2, 10, 5 * 8, 0.05)  # TINY: lr 2e-3, warmup 10, 8 steps/ep
    assert after[0]["train/lr"] == pytest.approx(schedule(after[0]["step"] - 1))

    forked = read_run(find_run_files(tmp_path / "out2")[0])
    assert forked.run_id != first_run.run_id and forked.name == branch
    assert forked.config["_wandb"]["branch_point"] == {"run_id": first_run.run_id, "step": 24}
    assert min(h["_step"] for h in forked.history) > 24
    assert f"branched off {name}" in forked.notes
    assert len(forked.config["lineage"]) == 2
    final = Checkpoint.load(tmp_path / "study" / "checkpoints" / branch / "best.pt")
    assert final.train["ema"]["updates"] == final.step and final.step > stored.step
    assert final.lineage == result.lineage
