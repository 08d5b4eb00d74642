"""Compute budgets: the steps each kind plans, where fit stops, the schedule it ends."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

from flowstudy.budget import Budget, estimate_steps, planned_steps
from flowstudy.build import build
from flowstudy.config import CONF_DIR, Config
from flowstudy.cost import step_flops
from flowstudy.errors import ConfigError
from flowstudy.results import RunResult
from flowstudy.rng import seed_everything
from flowstudy.run import run
from flowstudy.schedule import WarmupCosine
from flowstudy.trainer import Checkpoints, fit

from .helpers import TINY, Sink, compose_config


def test_planned_steps_of_each_kind() -> None:
    assert planned_steps("flops", 1000.0, 300.0) == 3  # floor: 900 <= 1000 < 1200
    assert planned_steps("flops", 900.0, 300.0) == 3  # an exact multiple is its own step
    assert planned_steps("flops", 0.3 * 3, 0.3) == 3  # even where float division lands below
    assert planned_steps("optimizer_steps", 17, 300.0) == 17
    assert planned_steps("seconds", 5.0, 300.0) is None
    with pytest.raises(ConfigError, match=r"train\.budget\.flops.*one training step"):
        planned_steps("flops", 299.0, 300.0)


def test_a_seconds_budget_estimates_its_schedule_once_after_warmup() -> None:
    b = Budget.plan("seconds", 10.0, 300.0, warmup_steps=20, device="cpu")
    assert b.planned_steps is None and b.schedule_steps(500) == 500
    assert b.observe(10, 1.5) is None  # the first log point only marks the clock
    assert b.observe(15, 2.0) is None  # still in warmup
    # 20 steps since the mark in 2 s: 10 steps/s, 6.5 s left -> 30 + 65
    assert b.observe(30, 3.5) == 95 == estimate_steps(30, 3.5, 10.0, 10, 1.5)
    assert b.observe(40, 4.0) is None and b.schedule_steps(500) == 95  # once only
    assert not b.spent_at_step(10**6) and not b.spent_at_clock(9.9) and b.spent_at_clock(10.0)
    assert b.record(40, 10.2)["device"] == "cpu"


def _config(tmp_path: Path, *overrides: str) -> Config:
    return compose_config([*TINY, f"study_dir={tmp_path / 'study'}", "wandb.mode=disabled",
                           *overrides])


def test_fit_stops_at_the_planned_step_and_the_schedule_ends_there(tmp_path: Path) -> None:
    # 8 steps per epoch, 5 epochs (40 steps), warmup 2: a budget of 20 steps stops in epoch 3.
    cfg = _config(tmp_path, "train.log_every=1", "train.epochs=5", "train.warmup_steps=2")
    seed_everything(cfg.seed)
    built = build(cfg, torch.device("cpu"))
    t = built.cfg.train
    fps = step_flops(built.state.model, built.batches.flow.path, t.batch_size, built.data.dim,
                     torch.device("cpu"))
    budget = Budget.plan("flops", 20.5 * fps, fps, t.warmup_steps)
    assert budget.planned_steps == 20
    sink = Sink()
    fitted = fit(t, built.state, built.batches, built.val, sink,
                 Checkpoints(tmp_path / "ckpt"), budget=budget)
    assert (fitted.stop_reason, fitted.steps, fitted.taken, fitted.schedule_steps) == (
        "budget", 20, 20, 20)
    # The partial third epoch was validated (and may have written best.pt).
    assert fitted.epochs == 3 and (tmp_path / "ckpt" / "best.pt").exists()
    assert fitted.budget["flops_spent"] == 20 * fps <= budget.value
    schedule = WarmupCosine(t.lr, t.warmup_steps, 20, t.min_lr_ratio)
    lrs = [r["train/lr"] for r in sink.records if "train/lr" in r]
    assert len(lrs) == 20
    assert lrs[-1] == pytest.approx(schedule(19))  # the last step's lr, one step before the end
    assert schedule(20) == pytest.approx(t.lr * t.min_lr_ratio)
    assert lrs[-1] < 0.1 * t.lr  # near the minimum (0.05 x lr), not the epochs' mid-cosine
    # Without a budget the same run's 20th step is still far from the minimum.
    assert WarmupCosine(t.lr, t.warmup_steps, 40, t.min_lr_ratio)(19) > 0.5 * t.lr


def test_epochs_still_end_a_run_before_a_larger_budget(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    seed_everything(cfg.seed)
    built = build(cfg, torch.device("cpu"))
    fitted = fit(built.cfg.train, built.state, built.batches, built.val, Sink(),
                 Checkpoints(tmp_path / "ckpt"), budget=Budget.plan("optimizer_steps", 100, 1.0))
    assert (fitted.stop_reason, fitted.steps, fitted.schedule_steps) == ("max_epochs", 24, 100)
    assert math.isclose(fitted.budget["flops_spent"], 24.0)


def test_a_seconds_budget_stops_at_the_first_log_point_past_its_time(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "train.epochs=5")  # log_every=4
    seed_everything(cfg.seed)
    built = build(cfg, torch.device("cpu"))
    fitted = fit(built.cfg.train, built.state, built.batches, built.val, Sink(),
                 Checkpoints(tmp_path / "ckpt"),
                 budget=Budget.plan("seconds", 1e-6, 1.0, device="cpu"))
    assert (fitted.stop_reason, fitted.steps, fitted.epochs) == ("budget", 4, 1)
    assert fitted.budget["device"] == "cpu" and fitted.budget["steps_taken"] == 4


def test_a_run_with_a_flop_budget_ends_within_one_step_of_it(tmp_path: Path) -> None:
    budget = 3e7  # the tiny MLP's step is 1.35e6 FLOPs: 22 steps, in epoch 3 of 8 steps each
    result = run(_config(tmp_path, f"train.budget.flops={budget}", "train.epochs=20",
                         "sample.likelihood=false"), tmp_path / "out")
    assert result.status == "completed" and result.stop_reason == "budget"
    fps = result.flops_per_step
    assert budget - fps < result.flops <= budget
    assert result.budget["planned_steps"] == result.steps == math.floor(budget / fps)
    assert result.budget["flops_spent"] == result.flops
    assert result.resolved["budget"] == "flops" and result.resolved["budget_steps"] == 22
    assert result.resolved["flops_per_step"] == fps and result.resolved["planned_steps"] == 22
    saved = RunResult.load(tmp_path / "study" / "runs" / result.name / "result.json")
    assert saved.budget == result.budget


def test_two_budgets_at_once_are_refused_in_one_line_naming_the_keys() -> None:
    with pytest.raises(ConfigError) as e:
        compose_config([*TINY, "train.budget.flops=1e9", "train.budget.seconds=60"])
    message = str(e.value)
    assert "\n" not in message and "train.budget.flops" in message
    assert "train.budget.optimizer_steps" in message and "train.budget.seconds" in message


def test_a_seconds_budget_sets_the_schedule_from_the_measured_rate(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A clock that advances 1 s each time fit reads it: fit's start (0), then each log point
    # (every 4 steps) and epoch end (every 8) reads it once.
    ticks = iter(range(1000))
    monkeypatch.setattr("flowstudy.trainer.time", SimpleNamespace(
        perf_counter=lambda: float(next(ticks))))
    cfg = _config(tmp_path, "train.epochs=10", "train.warmup_steps=2")
    seed_everything(cfg.seed)
    built = build(cfg, torch.device("cpu"))
    fitted = fit(built.cfg.train, built.state, built.batches, built.val, Sink(),
                 Checkpoints(tmp_path / "ckpt"),
                 budget=Budget.plan("seconds", 10.0, 1.0, warmup_steps=2, device="cpu"))
    # Step 4 at 1 s marks the clock; step 8 at 2 s measures 4 steps/s: 8 + 4 x 8 s left = 40.
    # The clock passes 10 s at the log point of step 28 (epoch 4 of 8 steps each).
    assert (fitted.stop_reason, fitted.steps, fitted.schedule_steps) == ("budget", 28, 40)
    assert fitted.budget["estimated_schedule"] and fitted.budget["planned_steps"] == 40


def test_the_isoflop_preset_sweeps_each_architecture_at_two_widths_and_three_budgets() -> None:
    preset = yaml.safe_load((CONF_DIR / "ablation" / "architectures-isoflop.yaml").read_text())
    params = preset["hydra"]["sweeper"]["params"]
    sizes = params["ablation/isoflop/size"].split(",")
    assert len(params["train.budget.flops"].split(",")) == 3
    found = {}
    for size in sizes:
        cfg = compose_config(["ablation=architectures-isoflop", f"ablation/isoflop/size={size}"])
        found.setdefault(cfg.arch.name, set()).add(
            getattr(cfg.arch, {"mlp": "width", "dit": "dim", "unet": "channels"}[cfg.arch.name]))
        assert cfg.group == "architectures-isoflop" and size.startswith(cfg.arch.name)
    assert found == {"mlp": {128, 256}, "dit": {32, 64}, "unet": {8, 16}}
