"""Alerts: their texts and commands (pure), the stall watch, and one real run whose offline W&B
file keeps each alert it raised."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest
import wandb

from flowstudy import trainer
from flowstudy.alerts import (
    Commands,
    StallWatch,
    for_error,
    skipping,
    stalled,
    streak_to_alert,
)
from flowstudy.errors import Busy, Diverged, UserError
from flowstudy.interrupt import Interrupted
from flowstudy.run import run
from flowstudy.tracking import Tracker

from .helpers import TINY, compose_config
from .wandb_files import find_run_files, read_run

RUN = Commands(("train.lr=0.01", "seed=3", "resume=auto"))
SWEEP = Commands(("train.lr=0.01", "seed=3"), "python -m flowstudy.train -m seed=3,4 resume=auto")


def test_commands_replace_the_keys_they_set_and_keep_the_rest() -> None:
    assert RUN.lower_lr(0.01) == "python -m flowstudy.train seed=3 resume=auto train.lr=0.001"
    assert RUN.resume() == "python -m flowstudy.train train.lr=0.01 seed=3 resume=auto"
    assert Commands(("+train.lr=1", "name=a b")).lower_lr(1) == \
        "python -m flowstudy.train 'name=a b' train.lr=0.1"
    assert SWEEP.resume() == SWEEP.sweep  # a stopped sweep job continues with its sweep


def test_each_ending_of_a_run_gets_its_alert_or_none() -> None:
    diverged = for_error(Diverged("diverged: 10 steps in a row ..."), "r", 0.01, RUN, False)
    assert (diverged.title, diverged.level) == ("diverged: r", "ERROR")
    assert diverged.text.startswith("Run r diverged: 10 steps in a row ...")
    assert diverged.text.endswith(f"lower learning rate: {RUN.lower_lr(0.01)}")
    failed = for_error(RuntimeError("boom"), "r", 0.01, SWEEP, True)
    assert failed.title == "sweep job failed: r"
    assert failed.text == ("Sweep job r failed (RuntimeError: boom); the sweep goes on with its "
                           "other jobs. Next: once the cause is fixed, rerun the sweep (completed "
                           f"jobs are skipped): {SWEEP.sweep}")
    # A run of your own fails in front of you; a signal or a busy run is not an alarm.
    assert for_error(UserError("bad"), "r", 0.01, RUN, False) is None
    assert for_error(Interrupted(2, None), "r", 0.01, SWEEP, True) is None
    assert for_error(Busy("running"), "r", 0.01, SWEEP, True) is None
    assert for_error(None, "r", 0.01, SWEEP, True) is None


def test_titles_fit_wandb_and_streaks_alert_at_half_the_patience() -> None:
    long = "x" * 128
    assert len(skipping(long, 5, 7, 10, 0.1, RUN).title) == 63
    assert len(stalled(long, 60, 7, 0, RUN, pid=1, host="h").title) == 63
    assert [streak_to_alert(p) for p in (1, 2, 9, 10)] == [1, 1, 5, 5]
    text = stalled("r", 1800, 40, 2, RUN, pid=123, host="node7").text
    assert text == ("Run r has taken no training step for 30.0 min (after 40 steps, in epoch 3; "
                    "pid 123 on node7). Stop it with kill -INT 123 (it saves last.pt after its "
                    "current step; a second signal aborts at once), then continue it: "
                    f"{RUN.resume()}")


def test_the_stall_watch_fires_once_per_stall() -> None:
    progress, stalls, fired = [0], [], threading.Event()

    def on_stall(seconds: float) -> None:
        stalls.append(seconds)
        fired.set()

    with StallWatch(0.02, lambda: progress[0], on_stall):
        assert fired.wait(60)
        fired.clear()
        progress[0] = 1  # progress re-arms it: the next stall is a new alert
        assert fired.wait(60)
    assert len(stalls) == 2 and min(stalls) >= 0.02


def test_a_run_that_stalls_skips_steps_and_diverges_keeps_each_alert_in_its_wandb_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    # A huge lr: after the first step every gradient is non-finite, so a log point (every 4
    # steps) sees a streak of 4 of the patience of 8, and a later one the divergence.
    cfg = compose_config([*TINY, f"study_dir={tmp_path / 'study'}", "wandb.mode=offline",
                          "train.lr=1e30", "train.warmup_steps=0", "train.nan_patience=8",
                          "train.grad_stats_every=1", "wandb.stall_minutes=0.0005"])
    # The first step hangs until the stall alert has gone out: a stall, however slow the
    # machine, with no clock in the test.
    stall_sent = threading.Event()
    send, stats = Tracker.alert, trainer.gradient_stats

    def alert(self: Tracker, a: object) -> None:
        send(self, a)
        if a.title.startswith("stalled"):
            stall_sent.set()

    def hanging_stats(model: object) -> dict[str, float]:
        stall_sent.wait(120)
        return stats(model)

    monkeypatch.setattr(Tracker, "alert", alert)
    monkeypatch.setattr(trainer, "gradient_stats", hanging_stats)
    commands = Commands(("train.lr=1e30", "seed=0"))
    with caplog.at_level(logging.WARNING), pytest.raises(Diverged):
        run(cfg, tmp_path / "out", commands=commands)
    wandb.teardown()  # flush the offline run file
    alerts = read_run(find_run_files(tmp_path / "out")[0]).alerts
    by_kind = {a["title"].split(":")[0]: a for a in alerts}
    assert set(by_kind) == {"stalled", "skipping steps", "diverged"}, alerts
    assert by_kind["diverged"]["text"].endswith("python -m flowstudy.train seed=0 train.lr=1e+29")
    assert by_kind["diverged"]["level"] == "ERROR"
    assert f"Run {cfg.name}: " in by_kind["skipping steps"]["text"]
    assert "at train.nan_patience=8 it stops as diverged" in by_kind["skipping steps"]["text"]
    assert by_kind["stalled"]["text"].endswith("python -m flowstudy.train train.lr=1e30 seed=0 "
                                               "resume=auto")
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("alert (")]
    assert len(logged) == len(alerts)  # and the same alerts in the log
    assert any(line.startswith(f"alert (diverged: {cfg.name[:40]}") for line in logged)
