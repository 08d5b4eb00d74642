"""Sample monitors (``flowstudy.monitor``): the better of two known checkpoints is chosen by
each sample metric, the fixed draw is what the config says, and a val split too small for it is
one line."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from flowstudy.data import DataSplits, Source
from flowstudy.data.normalize import Normalizer
from flowstudy.early_stopping import EarlyStopping
from flowstudy.errors import ConfigError
from flowstudy.metrics import METRICS, MONITORS
from flowstudy.monitor import MEASURES, SampleMonitor

from .helpers import compose_config

DIM = 16


class Emits(nn.Module):
    """One Euler step from the i-th source point lands on ``target[i]``: a model whose samples
    are known exactly, its "weights" the target rows."""

    def __init__(self, rows: int) -> None:
        super().__init__()
        self.register_buffer("target", torch.zeros(rows, DIM))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.target - x


def _unit(n: int, seed: int) -> torch.Tensor:
    x = torch.randn(n, DIM, generator=torch.Generator().manual_seed(seed))
    return x / x.norm(dim=1, keepdim=True)


def _splits(n_val: int) -> DataSplits:
    train = _unit(256, 1)
    return DataSplits("unit", train, _unit(n_val, 2), _unit(64, 3), Normalizer.fit(train),
                      Source())


def test_every_monitor_is_a_minimised_registry_metric_with_a_measure() -> None:
    metrics = {m.metric for m in MONITORS.values() if m.metric is not None}
    assert metrics == set(MEASURES) == {"mmd", "c2st", "norm_w1"}
    assert all(METRICS[m].direction == "minimize" for m in metrics)
    assert [m.log_key for m in MONITORS.values()] == [
        "val/ema_loss", "val/raw_loss", "val/mmd", "val/c2st", "val/norm_w1"]


@pytest.mark.parametrize(("monitor", "shrink"),
                         [("val_norm_w1", 0.9), ("val_mmd", 0.9), ("val_c2st", 0.5)])
def test_a_sample_monitor_picks_the_checkpoint_whose_samples_are_the_data(
        monitor: str, shrink: float) -> None:
    cfg = compose_config(["dataset=embeddings", "dataset.path=x.npy", f"train.monitor={monitor}",
                          "train.monitor_n=200", "train.monitor_steps=1"])
    data = _splits(300)
    sampler = SampleMonitor.build(cfg, data, torch.device("cpu"))
    real = _unit(len(sampler.x0), 4)  # fresh real rows, in the model's normalised space
    model = Emits(len(real))
    good = {"target": data.normalizer.encode(real)}
    shrunk = {"target": data.normalizer.encode(shrink * real)}  # collapsed inward
    for order in ((good, shrunk), (shrunk, good)):
        stopper = EarlyStopping(patience=5)
        for epoch, weights in enumerate(order, start=1):
            model.load_state_dict(weights)
            stopper.update(sampler.measure(model).value, epoch)
        assert order[stopper.best_epoch - 1] is good, (monitor, stopper)


def test_the_fixed_draw_is_seeded_sized_and_judged_against_the_val_split() -> None:
    cfg = compose_config(["dataset=embeddings", "dataset.path=x.npy", "train.monitor=val_mmd",
                          "train.monitor_n=512", "sample.solver=midpoint", "sample.steps=50"])
    data = _splits(300)
    a, b = (SampleMonitor.build(cfg, data, torch.device("cpu")) for _ in range(2))
    assert len(a.x0) == len(a.reference) == 300  # min(monitor_n, n_val)
    assert torch.equal(a.x0, b.x0) and torch.equal(a.reference, data.val)
    assert (a.solver, a.steps) == ("midpoint", 20)  # train.monitor_steps, not sample.steps
    same = SampleMonitor.build(compose_config(
        ["dataset=embeddings", "dataset.path=x.npy", "train.monitor=val_mmd",
         "train.monitor_steps=null", "sample.steps=50"]), data, torch.device("cpu"))
    assert same.steps == 50
    assert SampleMonitor.build(compose_config(["dataset=embeddings", "dataset.path=x.npy"]),
                               data, torch.device("cpu")) is None


def test_a_val_split_too_small_for_a_sample_monitor_is_one_line() -> None:
    cfg = compose_config(["dataset=embeddings", "dataset.path=x.npy", "train.monitor=val_c2st"])
    with pytest.raises(ConfigError) as info:
        SampleMonitor.build(cfg, _splits(8), torch.device("cpu"))
    assert str(info.value) == (
        "dataset.n_val=8 is not allowed: at least 10 val rows for train.monitor=val_c2st (its "
        "C2ST's 5 folds need 2 points a class), or train.monitor=ema")


def test_early_stopping_keeps_the_val_loss_of_the_best_measurement() -> None:
    stopper = EarlyStopping(patience=2)
    assert stopper.update(0.3, epoch=1, val_loss=1.5)
    assert not stopper.update(0.4, epoch=2, val_loss=1.2)  # a lower loss, a worse metric
    assert (stopper.best, stopper.best_epoch, stopper.best_val_loss) == (0.3, 1, 1.5)
    old = {k: v for k, v in stopper.state_dict().items() if k != "best_val_loss"}
    stopper.load_state_dict(old)  # a checkpoint from before sample monitors: a val loss
    assert stopper.best_val_loss == 0.3


def test_a_best_carries_into_a_branch_only_when_it_measures_the_same_thing() -> None:
    assert MONITORS["ema"].measures == MONITORS["raw"].measures == "val loss"
    assert len({MONITORS[m].measures for m in ("ema", "val_mmd", "val_c2st", "val_norm_w1")}) == 4
