"""The training loop in-process (``flowstudy.trainer.fit``): a mid-epoch stop and a checkpoint
both resume bitwise, accumulation equals one full batch, background pairing equals inline
pairing, the state survives its state_dict, and a sample monitor with a plateau schedule stops,
decays and resumes as planned."""

from __future__ import annotations

import copy
import dataclasses
import signal
from pathlib import Path

import pytest
import torch

from flowstudy.build import Built, build
from flowstudy.checkpoint import Checkpoint
from flowstudy.config import Config
from flowstudy.interrupt import Interrupted, StopRequest
from flowstudy.rng import rng_state, seed_everything, set_rng_state
from flowstudy.schedule import WarmupCosine
from flowstudy.state import TrainState
from flowstudy.trainer import Checkpoints, fit

from .helpers import TINY, Sink, compose_config


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
# in the second pass of the second epoch. Beta times (two Gamma draws of 16 proposals each) replay
# like uniform ones.
@pytest.mark.parametrize(("flow", "times", "min_epoch_steps", "stop_step"),
                         [("ot", "beta", 1, 11), ("minibatch_ot", "uniform", 1, 11),
                          ("minibatch_ot", "uniform", 20, 35)])
def test_a_mid_epoch_stop_resumes_bitwise(tmp_path: Path, flow: str, times: str,
                                          min_epoch_steps: int, stop_step: int) -> None:
    cfg = _config(tmp_path, f"flow={flow}", f"flow.time_sampling={times}", "train.epochs=3",
                  "train.log_every=1", f"train.min_epoch_steps={min_epoch_steps}")

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


def _built(cfg: Config) -> Built:
    seed_everything(cfg.seed)
    return build(cfg, torch.device("cpu"))


class KeepEveryLast(Checkpoints):
    """Checkpoints that also keep a copy of each epoch's last.pt, as epoch<N>.pt."""

    def save(self, name: str, checkpoint: Checkpoint) -> None:
        super().save(name, checkpoint)
        if name == "last.pt":
            checkpoint.save(self.dir.parent / f"epoch{checkpoint.epoch}.pt")


def _fit(cfg: Config, built: Built, sink: Sink, ckpt_dir: Path, keep: type = Checkpoints):
    return fit(cfg.train, built.state, built.batches, built.val, sink,
               keep(ckpt_dir, save_last=True))


def _weights(state: TrainState) -> list[torch.Tensor]:
    return [*state.model.parameters(), *state.ema.module.parameters()]


@pytest.mark.parametrize("flow", ["ot", "minibatch_ot", "sb"])
def test_resuming_from_a_checkpoint_replays_the_run_bitwise(tmp_path: Path, flow: str) -> None:
    cfg = _config(tmp_path, f"flow={flow}", "train.epochs=5", "train.log_every=3")
    straight, straight_sink = _built(cfg), Sink()
    _fit(cfg, straight, straight_sink, tmp_path / "a", keep=KeepEveryLast)

    # A new state (fresh weights, other RNG draws in between) restored from epoch 2 of 5.
    resumed, sink = _built(cfg), Sink()
    torch.randn(100)
    ckpt = Checkpoint.load(tmp_path / "epoch2.pt")
    resumed.state.load_state_dict(ckpt.train)
    set_rng_state(ckpt.rng)
    assert (resumed.state.epoch, resumed.state.step, resumed.state.ema.updates) == (2, 16, 16)
    _fit(cfg, resumed, sink, tmp_path / "b")

    for a, b in zip(_weights(straight.state), _weights(resumed.state), strict=True):
        assert torch.equal(a, b)
    opt_a = straight.state.optimizer.state_dict()
    opt_b = resumed.state.optimizer.state_dict()
    for k, state in opt_a["state"].items():
        for name, value in state.items():
            assert torch.equal(value, opt_b["state"][k][name]), name
    assert sink.records == [r for r in straight_sink.records if r["step"] > 16]


@pytest.mark.parametrize("flow", ["minibatch_ot", "sb"])
def test_background_pairing_trains_exactly_like_inline_pairing(tmp_path: Path,
                                                               flow: str) -> None:
    runs = []
    for prefetch in (0, 3):
        cfg = _config(tmp_path, f"flow={flow}", f"flow.prefetch={prefetch}", "train.epochs=2")
        built = _built(cfg)
        _fit(cfg, built, Sink(), tmp_path / str(prefetch))
        runs.append(built.state)
    for a, b in zip(_weights(runs[0]), _weights(runs[1]), strict=True):
        assert torch.equal(a, b)


def test_checkpoint_state_dict_round_trip(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    built = _built(cfg)
    _fit(cfg, built, Sink(), tmp_path / "c")
    state = built.state
    clone = _built(cfg).state
    clone.load_state_dict(copy.deepcopy(state.state_dict()))
    assert (clone.epoch, clone.step, clone.ema.updates) == (state.epoch, state.step,
                                                            state.ema.updates)
    assert clone.shuffle_gen.get_state().equal(state.shuffle_gen.get_state())
    assert set(rng_state()) == {"python", "numpy", "torch", "cuda"}


def test_accumulation_gives_the_update_of_one_full_batch(tmp_path: Path) -> None:
    # One optimizer step on a 64-point batch: whole, or as two micro-batches of 32.
    weights = []
    for accum in (1, 2, 4):
        cfg = _config(tmp_path, f"train.accum_steps={accum}", "dataset.size=320", "train.epochs=1",
                      "dataset.n_val=128", "dataset.n_test=128")
        seed_everything(cfg.seed)
        built = build(cfg, torch.device("cpu"))
        fitted = fit(cfg.train, built.state, built.batches, built.val, Sink(),
                     Checkpoints(tmp_path / str(accum)), engine=built.engine)
        assert fitted.steps == 1 and built.state.ema.updates == 1
        weights.append([p.detach().clone() for p in built.state.model.parameters()])
    for other in weights[1:]:
        for a, b in zip(weights[0], other, strict=True):
            torch.testing.assert_close(a, b, atol=2e-6, rtol=1e-5)


def test_a_sample_monitor_drives_stopping_and_a_plateau_decay_and_resumes_bitwise(
        tmp_path: Path) -> None:
    # Only the first measurement can improve (min_delta 100): measured at epochs 2, 4, 6; half
    # the patience of 2 is used up at epoch 4 (step 32), so the lr decays to its minimum at step
    # 48, where the second measurement without improvement stops the run.
    cfg = _config(tmp_path, "train.monitor=val_norm_w1", "train.monitor_every=2",
                  "train.patience=2", "train.min_delta=100", "train.schedule=plateau",
                  "train.epochs=10")
    straight, sink = _built(cfg), Sink()
    fitted = fit(cfg.train, straight.state, straight.batches, straight.val, sink,
                 KeepEveryLast(tmp_path / "a", save_last=True), monitor=straight.monitor)
    state = straight.state
    assert (fitted.stop_reason, state.epoch, state.stopper.best_epoch) == ("early_stopping", 6, 2)
    measured = [r for r in sink.records if "val/norm_w1" in r]
    assert [r["step"] for r in measured] == [16, 32, 48] and len(fitted.monitor_s) == 3
    assert all(r["val/monitor_s"] > 0 for r in measured)
    assert state.plateau == (32, 48)
    planned = WarmupCosine(cfg.train.lr, cfg.train.warmup_steps, 80, cfg.train.min_lr_ratio)
    lrs = {r["step"]: r["train/lr"] for r in sink.records if "train/lr" in r}
    assert lrs[32] == pytest.approx(planned(31))
    assert lrs[48] == pytest.approx(dataclasses.replace(planned, plateau=(32, 48))(47))
    assert lrs[48] < 0.5 * planned(47)
    assert Checkpoint.load(tmp_path / "epoch5.pt").train["schedule"] == {"plateau": [32, 48]}
    assert state.stopper.best_val_loss == next(r["val/ema_loss"] for r in measured)

    resumed, resumed_sink = _built(cfg), Sink()
    ckpt = Checkpoint.load(tmp_path / "epoch5.pt")
    resumed.state.load_state_dict(ckpt.train)
    set_rng_state(ckpt.rng)
    fit(cfg.train, resumed.state, resumed.batches, resumed.val, resumed_sink,
        Checkpoints(tmp_path / "b"), monitor=resumed.monitor)
    for a, b in zip(_weights(state), _weights(resumed.state), strict=True):
        assert torch.equal(a, b)

    def timeless(records: list[dict]) -> list[dict]:
        return [{k: v for k, v in r.items() if k != "val/monitor_s"} for r in records]

    assert timeless(resumed_sink.records) == timeless([r for r in sink.records if r["step"] > 40])
