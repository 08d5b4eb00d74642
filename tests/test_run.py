"""Whole runs in-process through ``flowstudy.run.run``: what a run writes, skips, refuses and
keeps when something fails."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import torch
import wandb
from torch import nn

from flowstudy import models
from flowstudy.checkpoint import Checkpoint
from flowstudy.config import Config
from flowstudy.data import build_data
from flowstudy.errors import Diverged, UserError
from flowstudy.evaluate import evaluate
from flowstudy.fileio import run_lock
from flowstudy.interrupt import Interrupted
from flowstudy.models import build_model
from flowstudy.resolve import arch_sizes
from flowstudy.results import RunResult
from flowstudy.run import run

from .helpers import TINY, compose_config, name_of
from .wandb_files import find_run_files, read_run


def test_resume_auto_continues_an_interrupted_run_from_its_last_checkpoint(
        tmp_path: Path) -> None:
    cfg = compose_config([*TINY, "dataset.size=3000", "train.epochs=6",
                          f"study_dir={tmp_path / 'study'}", "wandb.mode=disabled"])
    metrics = tmp_path / "study" / "runs" / cfg.name / "metrics.jsonl"

    def signal_when_training() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if metrics.exists() and '"epoch": 1' in metrics.read_text():
                os.kill(os.getpid(), signal.SIGTERM)
                return
            time.sleep(0.01)

    threading.Thread(target=signal_when_training, daemon=True).start()
    with pytest.raises(Interrupted):
        run(cfg, tmp_path / "out")
    interrupted = RunResult.load(metrics.parent / "result.json")
    assert interrupted.status == "interrupted"

    cfg.resume = "auto"
    result = run(cfg, tmp_path / "out")
    assert result.status == "completed" and result.epochs == 6
    assert result.steps == 6 * (2744 // 64)  # no step trained twice: it continued
    assert not result.skipped


NAME = name_of(TINY)


def test_a_study_dir_under_a_file_is_refused_before_any_work(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    cfg = compose_config([*TINY, f"study_dir={tmp_path / 'file' / 'study'}"])
    with pytest.raises(UserError) as info:
        run(cfg, tmp_path / "out")
    assert str(info.value) == (f"study_dir: {tmp_path}/file/study/checkpoints/{NAME} is not a "
                               f"writable directory (Not a directory)")


def test_same_name_runs_with_different_checkpoint_dirs_do_not_run_at_once(tmp_path: Path) -> None:
    cfg = compose_config([*TINY, f"study_dir={tmp_path / 'study'}", "wandb.mode=disabled",
                          f"checkpoint.dir={tmp_path / 'other'}"])
    run_dir = tmp_path / "study" / "runs" / NAME
    run_dir.mkdir(parents=True)
    with run_lock(run_dir / ".lock", "a run holding study/runs/<name>"), \
            pytest.raises(UserError, match=rf"run '{NAME}' is already running"):
        run(cfg, tmp_path / "out")
    assert not (run_dir / "result.json").exists()


def test_an_evaluation_failure_keeps_the_trained_run_and_the_rerun_only_evaluates(
        tmp_path: Path) -> None:
    cfg = compose_config([*TINY, f"study_dir={tmp_path / 'study'}", "wandb.mode=disabled"])
    ckpt_dir = tmp_path / "study" / "checkpoints" / NAME
    (ckpt_dir / "samples.png").mkdir(parents=True)  # the picture cannot be written
    with pytest.raises(IsADirectoryError):
        run(cfg, tmp_path / "out")
    result_path = tmp_path / "study" / "runs" / NAME / "result.json"
    failed = RunResult.load(result_path)
    assert failed.status == "trained" and failed.error.startswith("IsADirectoryError")
    assert failed.epochs == 3 and failed.best_val_loss is not None
    best = (ckpt_dir / "best.pt").read_bytes()
    metrics = (tmp_path / "study" / "runs" / NAME / "metrics.jsonl").read_text()

    (ckpt_dir / "samples.png").rmdir()
    done = run(cfg, tmp_path / "out")
    assert done.status == "completed" and done.error is None and not done.skipped
    assert (done.epochs, done.best_val_loss) == (failed.epochs, failed.best_val_loss)
    assert (ckpt_dir / "best.pt").read_bytes() == best  # not retrained
    after = (tmp_path / "study" / "runs" / NAME / "metrics.jsonl").read_text()
    assert after.startswith(metrics) and after.count('"train/loss"') == metrics.count(
        '"train/loss"')
    assert '"sample/w2"' in after and RunResult.load(result_path).status == "completed"


def _config(tmp_path: Path, *overrides: str) -> Config:
    return compose_config([*TINY, f"study_dir={tmp_path / 'study'}", "wandb.mode=disabled",
                           *overrides])


TINY_NAME = name_of(TINY)


class WrongShape(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.layer = nn.Linear(dim, dim + 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


def test_a_model_with_the_wrong_output_shape_is_refused(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "mlp", lambda cfg, dim: WrongShape(dim))
    with pytest.raises(UserError, match=r"maps x_t of shape \[2, 2\] to \[2, 3\]; a velocity "
                                        r"must have the shape of x_t"):
        run(_config(tmp_path), tmp_path / "out")
    # Refused while building, before any training step: the run claims no name and no data.
    assert not (tmp_path / "study" / "runs" / TINY_NAME / "result.json").exists()


def test_gradient_statistics_are_logged_when_asked_and_absent_by_default(tmp_path: Path) -> None:
    run(_config(tmp_path / "on", "train.grad_stats_every=4"), tmp_path / "out")
    run(_config(tmp_path / "off"), tmp_path / "out")
    on = (tmp_path / "on" / "study" / "runs" / TINY_NAME / "metrics.jsonl").read_text()
    off = (tmp_path / "off" / "study" / "runs" / TINY_NAME / "metrics.jsonl").read_text()
    records = [json.loads(line) for line in on.splitlines()]
    stats = [r for r in records if "grad/inp.weight/l2" in r]
    assert [r["step"] for r in stats] == [0, 4, 8, 12, 16, 20]
    first = stats[0]
    assert first["grad/inp.weight/l2"] > 0 and first["grad/inp.weight/max_abs"] > 0
    assert 0 <= first["grad/out.2.weight/zero_frac"] <= 1
    assert "grad/" not in off


def _metrics(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_training_lowers_the_loss_and_the_w2_on_moons(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "dataset.size=2560", "dataset.n_val=256", "dataset.n_test=256",
                  "arch.width=64", "train.epochs=12", "train.warmup_steps=50",
                  "sample.steps=20")
    result = run(cfg, tmp_path / "out")
    val = [r["val/ema_loss"] for r in _metrics(tmp_path / "study" / "runs" / cfg.name /
                                                 "metrics.jsonl") if "val/ema_loss" in r]
    assert result.best_val_loss < 0.9 * val[0]

    torch.manual_seed(0)
    untrained = evaluate(build_model(arch_sizes(cfg.arch, 2), 2), build_data(cfg.dataset),
                         cfg.sample, seed=cfg.seed, data_seed=cfg.dataset.seed)
    assert result.metrics["w2"] < 0.5 * untrained.metrics["w2"]


def test_early_stopping_after_patience_epochs_past_warmup(tmp_path: Path) -> None:
    # A learning rate too small to move the loss by min_delta: no epoch after the first improves.
    common = ("train.lr=1e-7", "train.min_delta=0.05", "train.patience=2", "train.epochs=10")
    no_warmup = run(_config(tmp_path / "a", *common, "train.warmup_steps=0"), tmp_path / "out")
    assert (no_warmup.stop_reason, no_warmup.epochs, no_warmup.best_epoch) == (
        "early_stopping", 3, 1)
    # Warmup ends during epoch 3 (8 steps per epoch): epochs 1 and 2 do not use up patience.
    warm = run(_config(tmp_path / "b", *common, "train.warmup_steps=20"), tmp_path / "out")
    assert (warm.stop_reason, warm.epochs) == ("early_stopping", 4)


def test_a_second_run_of_the_same_name_is_refused_unless_forced(tmp_path: Path) -> None:
    run(_config(tmp_path, "train.epochs=1", "name=r"), tmp_path / "out")
    best = tmp_path / "study" / "checkpoints" / "r" / "best.pt"
    before = best.read_bytes()
    same = run(_config(tmp_path, "train.epochs=1", "name=r"), tmp_path / "out")  # done: skipped
    assert same.skipped and same.status == "completed" and best.read_bytes() == before
    different = r"was trained with a different config \(seed=0 \(now: 3\)\)"
    with pytest.raises(UserError, match=different):
        run(_config(tmp_path, "train.epochs=1", "seed=3", "name=r"), tmp_path / "out")
    assert best.read_bytes() == before
    assert run(_config(tmp_path, "train.epochs=1", "seed=3", "name=r", "force=true"),
               tmp_path / "out").status == "completed"


def test_resume_with_another_arch_is_refused(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "train.epochs=1")
    run(cfg, tmp_path / "out")
    best = tmp_path / "study" / "checkpoints" / cfg.name / "best.pt"
    with pytest.raises(UserError, match=r"arch\.width=32 \(now: 16\)"):
        run(_config(tmp_path, "arch.width=16", f"resume={best}"), tmp_path / "out")


def test_a_run_failing_after_training_stays_trained_and_its_wandb_run_failed(
        tmp_path: Path) -> None:
    # Tolerances no step size can meet: dopri5 fails at sampling time, after training.
    cfg = _config(tmp_path, "sample.solver=dopri5", "sample.atol=1e-300", "sample.rtol=1e-300",
                  "wandb.mode=offline")
    with pytest.raises(AssertionError, match="underflow in dt"):
        run(cfg, tmp_path / "out")
    wandb.teardown()  # flush the offline run file
    result = RunResult.load(tmp_path / "study" / "runs" / cfg.name / "result.json")
    # training itself finished and was recorded: a rerun only evaluates
    assert result.status == "trained" and "underflow in dt" in result.error
    assert result.epochs == 3
    wb = read_run(find_run_files(tmp_path / "out")[0])
    assert "failed" in wb.tags and "underflow in dt" in wb.notes
    assert wb.exit_code == 1


def test_a_diverging_run_skips_bad_steps_then_stops_with_the_state_before(
        tmp_path: Path) -> None:
    cfg = _config(tmp_path, "train.lr=1e30", "train.warmup_steps=0", "train.nan_patience=3",
                  "wandb.mode=offline")
    with pytest.raises(Diverged, match="3 steps in a row had a non-finite gradient norm"):
        run(cfg, tmp_path / "out")
    wandb.teardown()
    result = RunResult.load(tmp_path / "study" / "runs" / cfg.name / "result.json")
    assert result.status == "diverged"
    anomaly = Checkpoint.load(tmp_path / "study" / "checkpoints" / cfg.name / "anomaly.pt")
    assert anomaly.train["nonfinite"] == {"streak": 3, "skipped": 3}
    assert anomaly.step == result.steps and anomaly.train["batch"] == result.steps + 3
    # The skipped steps changed nothing: the EMA saw exactly the applied steps.
    assert anomaly.train["ema"]["updates"] == anomaly.step
    assert all(torch.isfinite(v).all() for v in anomaly.train["model"].values())
    assert "diverged" in read_run(find_run_files(tmp_path / "out")[0]).tags


def test_deterministic_runs_are_bitwise_equal(tmp_path: Path) -> None:
    results = [run(_config(tmp_path / str(i), "train.deterministic=true", "flow=minibatch_ot"),
                   tmp_path / "out") for i in range(2)]
    assert results[0].metrics == results[1].metrics
    a, b = (Checkpoint.load(Path(r.checkpoint)).train["model"] for r in results)
    assert all(torch.equal(a[k], b[k]) for k in a)
    torch.use_deterministic_algorithms(False)


@pytest.mark.slow
def test_compile_trains_or_falls_back_to_eager(tmp_path: Path) -> None:
    result = run(_config(tmp_path, "train.compile=true", "train.epochs=1"), tmp_path / "out")
    assert result.status == "completed" and result.steps == 8


def test_a_branch_off_last_pt_copies_the_parents_best_as_the_best_to_beat(tmp_path: Path) -> None:
    # min_delta so large that only the first epoch improves: last.pt (epoch 3) is past the best
    # (epoch 1), whose weights are in the best.pt beside it.
    parent = run(_config(tmp_path, "train.epochs=3", "train.min_delta=1e9",
                         "checkpoint.save_last=true"), tmp_path / "out")
    assert parent.best_epoch == 1 and parent.epochs == 3
    last = Path(parent.checkpoint).parent / "last.pt"
    branch = run(_config(tmp_path, "train.epochs=4", "train.min_delta=1e9", f"resume={last}"),
                 tmp_path / "out")
    assert branch.status == "completed" and branch.name != parent.name
    best = Checkpoint.load(Path(branch.checkpoint))
    copied = Checkpoint.load(Path(parent.checkpoint))
    assert best.epoch == 1 and best.lineage == branch.lineage
    assert all(torch.equal(best.ema_weights()[k], copied.ema_weights()[k])
               for k in copied.ema_weights())
