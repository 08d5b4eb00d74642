"""The training loop in-process (``flowstudy.trainer.fit``): stops and resumes mid-epoch
bitwise, accumulation, early stopping, budgets, background pairing."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import torch

from flowstudy.build import build
from flowstudy.checkpoint import Checkpoint
from flowstudy.config import Config
from flowstudy.interrupt import Interrupted, StopRequest
from flowstudy.rng import seed_everything, set_rng_state
from flowstudy.trainer import Checkpoints, fit

from .helpers import TINY, compose_config


def _config(tmp_path: Path, *overrides: str) -> Config:
    return compose_config([*TINY, f"study_dir={tmp_path / 'study'}", "wandb.mode=disabled",
                           *overrides])


class StopAt:
    """A metrics sink that raises the stop flag, as a signal handler would, at a given step."""

    def __init__(self, stop: StopRequest, step: int) -> None:
        self.stop, self.at, self.records = stop, step, []

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.records.append({"step": step, **metrics})
        if step == self.at:
            self.stop.signum = signal.SIGTERM


# 8 batches per pass; min_epoch_steps=20 makes an epoch 3 passes (24 steps), and step 35 lands
# in the second pass of the second epoch.
@pytest.mark.parametrize(("flow", "min_epoch_steps", "stop_step"),
                         [("ot", 1, 11), ("minibatch_ot", 1, 11), ("minibatch_ot", 20, 35)])
def test_a_mid_epoch_stop_resumes_bitwise(tmp_path: Path, flow: str, min_epoch_steps: int,
                                          stop_step: int) -> None:
    cfg = _config(tmp_path, f"flow={flow}", "train.epochs=3", "train.log_every=1",
                  f"train.min_epoch_steps={min_epoch_steps}")

    def fresh():
        seed_everything(cfg.seed)
        return build(cfg, torch.device("cpu"))

    straight = fresh()
    never = StopRequest()
    sink_a = StopAt(never, -1)
    fit(cfg.train, straight.state, straight.batches, straight.val, sink_a,
        Checkpoints(tmp_path / "a"), stop=never)

    first, stop = fresh(), StopRequest()
    per_epoch = first.batches.steps_per_epoch
    assert per_epoch == 8 * first.resolved.passes_per_epoch and per_epoch >= min_epoch_steps
    with pytest.raises(Interrupted):
        fit(cfg.train, first.state, first.batches, first.val, StopAt(stop, stop_step),
            Checkpoints(tmp_path / "b"), stop=stop)
    last = Checkpoint.load(tmp_path / "b" / "last.pt")
    assert (last.epoch, last.train["batch"], last.step) == (
        stop_step // per_epoch, stop_step % per_epoch, stop_step)

    resumed, sink_b = fresh(), StopAt(never, -1)
    resumed.state.load_state_dict(last.train)
    set_rng_state(last.rng)
    fit(cfg.train, resumed.state, resumed.batches, resumed.val, sink_b,
        Checkpoints(tmp_path / "c"), stop=never)
    for a, b in zip([*straight.state.model.parameters(), *straight.state.ema.module.parameters()],
                    [*resumed.state.model.parameters(), *resumed.state.ema.module.parameters()],
                    strict=True):
        assert torch.equal(a, b)
    assert sink_b.records == [r for r in sink_a.records if r["step"] > stop_step]
