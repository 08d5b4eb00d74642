"""The CUDA-graph step: its eager equivalent bitwise here, captured where CUDA is; why a run
cannot capture, and a captured run's resume."""

from __future__ import annotations

import copy
import dataclasses
import logging
import signal
from pathlib import Path

import pytest
import torch

from flowstudy.batches import BatchSource
from flowstudy.build import Built
from flowstudy.checkpoint import Checkpoint
from flowstudy.config import Config, CoupledFlowConfig
from flowstudy.data import Source
from flowstudy.data.augment import gaussian_noise
from flowstudy.flows import build_flow
from flowstudy.graph_step import GraphSteps, capture_blocker
from flowstudy.interrupt import Interrupted, StopRequest
from flowstudy.rng import set_rng_state
from flowstudy.run import run
from flowstudy.step import EagerSteps, attach_lr
from flowstudy.trainer import Checkpoints, fit

from .helpers import TINY, built_with_lr, compose_config, state_tensors, step_config

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _config(tmp_path: Path, *overrides: str) -> Config:
    return compose_config([*TINY, f"study_dir={tmp_path / 'study'}", "wandb.mode=disabled",
                           *overrides])


def _train(built: Built, steps: EagerSteps | GraphSteps, epochs: range, skip: int = 0) -> None:
    for epoch in epochs:
        for _ in steps.epoch(epoch, skip=skip if epoch == epochs.start else 0):
            pass


@pytest.mark.parametrize("flow", ["ot", "cfm"])
def test_graph_step_run_eagerly_equals_the_eager_step_bitwise(tmp_path: Path, flow: str) -> None:
    """What the graph captures (draws by index on the device, the step, the tally) is the eager
    step exactly, including a resume in the middle of an epoch."""
    cfg = _config(tmp_path, f"flow={flow}", "train.epochs=2")
    eager, graph = built_with_lr(cfg), built_with_lr(cfg)
    _train(eager, EagerSteps(eager.state, eager.engine, eager.batches, step_config(cfg, eager)),
           range(2))
    graph_steps = GraphSteps(graph.state, graph.engine, graph.batches, step_config(cfg, graph),
                             capture=False)
    _train(graph, graph_steps, range(2))
    for a, b in zip(state_tensors(eager), state_tensors(graph), strict=True):
        assert torch.equal(a, b)
    assert eager.state.read_tally()["steps"] == 16

    resumed = built_with_lr(cfg)  # epoch 1 from its 3rd batch, as a checkpoint would restart it
    partial = built_with_lr(cfg)
    steps = GraphSteps(partial.state, partial.engine, partial.batches,
                       step_config(cfg, partial), capture=False)
    _train(partial, steps, range(1))
    partial.state.epoch_start = {"shuffle": partial.state.shuffle_gen.get_state(),
                                 "noise": partial.state.noise_gen.get_state()}
    run_of = steps.epoch(1, skip=0)
    for _ in range(3):
        next(run_of)
    partial.state.epoch, partial.state.batch = 1, 3
    resumed.state.load_state_dict(copy.deepcopy(partial.state.state_dict()))
    attach_lr(resumed.state.optimizer, resumed.state.tally)
    _train(resumed, GraphSteps(resumed.state, resumed.engine, resumed.batches,
                               step_config(cfg, resumed), capture=False), range(1, 2), skip=3)
    for a, b in zip(state_tensors(eager), state_tensors(resumed), strict=True):
        assert torch.equal(a, b)


def test_capture_blocker_names_each_reason(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    built = built_with_lr(cfg)
    plain = built.batches

    def reason(batches: BatchSource = plain, device: str = "cuda", **train: object) -> str | None:
        return capture_blocker(dataclasses.replace(cfg.train, **train), torch.device(device),
                               batches, built.engine, built.state.optimizer)

    assert reason() is None and reason(precision="bf16") is None
    assert "trains on cpu" in reason(device="cpu")
    assert "pairs each batch" in reason(dataclasses.replace(
        plain, flow=build_flow(CoupledFlowConfig(name="minibatch_ot"))))
    assert "dataset.source=moons" in reason(dataclasses.replace(plain, source=Source("moons")))
    assert "augmentations" in reason(dataclasses.replace(plain, augment=gaussian_noise(0.1)))
    assert "fp16" in reason(precision="fp16") and "compile" in reason(compile=True)


def test_cuda_graph_on_a_cpu_says_why_once_and_trains_eagerly(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="flowstudy"):
        result = run(_config(tmp_path, "train.cuda_graph=true", "train.device=cpu",
                             "train.epochs=1"), tmp_path / "out")
    warnings = [r.getMessage() for r in caplog.records if "train.cuda_graph" in r.getMessage()]
    assert warnings == ["train.cuda_graph: cannot capture the step (the run trains on cpu, and "
                        "CUDA graphs need a CUDA device); training eagerly"]
    assert (result.status, result.step_mode, result.steps, result.tf32) == (
        "completed", "eager", 8, False)


@CUDA
@pytest.mark.parametrize("overrides", [["flow=cfm"], ["flow=ot", "train.precision=bf16"]])
def test_captured_steps_equal_eager_steps_on_cuda(tmp_path: Path, overrides: list[str]) -> None:
    cfg = _config(tmp_path, *overrides, "train.epochs=3", "train.cuda_graph=true")
    eager, graph = built_with_lr(cfg, "cuda"), built_with_lr(cfg, "cuda")
    _train(eager, EagerSteps(eager.state, eager.engine, eager.batches,
                             step_config(cfg, eager)), range(3))
    eager.engine.precision.autocast_cache = False
    steps = GraphSteps(graph.state, graph.engine, graph.batches, step_config(cfg, graph))
    graph.engine.precision.autocast_cache = False
    _train(graph, steps, range(3))
    assert steps.graph is not None  # 3 eager steps, then 21 replays
    for a, b in zip(state_tensors(eager), state_tensors(graph), strict=True):
        torch.testing.assert_close(a.cpu(), b.cpu(), rtol=1e-6, atol=1e-7)


@CUDA
def test_a_cuda_graph_run_resumes_exactly(tmp_path: Path) -> None:
    """Stopped after step 11 (mid-epoch 2) and resumed from last.pt, a captured run ends where
    an uninterrupted one does: the noise generator's state travels in the checkpoint."""
    cfg = _config(tmp_path, "flow=cfm", "train.epochs=3", "train.log_every=1",
                  "train.cuda_graph=true", "train.device=cuda")
    straight = built_with_lr(cfg, "cuda")
    fitted = fit(cfg.train, straight.state, straight.batches, straight.val, StopAt(None, -1),
                 Checkpoints(tmp_path / "a"), engine=straight.engine)
    assert fitted.step_mode == "cuda_graph"
    first, stop = built_with_lr(cfg, "cuda"), StopRequest()
    with pytest.raises(Interrupted):
        fit(cfg.train, first.state, first.batches, first.val, StopAt(stop, 11),
            Checkpoints(tmp_path / "b"), stop=stop, engine=first.engine)
    last = Checkpoint.load(tmp_path / "b" / "last.pt", "cuda")
    resumed = built_with_lr(cfg, "cuda")
    resumed.state.load_state_dict(last.train)
    set_rng_state(last.rng)
    fit(cfg.train, resumed.state, resumed.batches, resumed.val, StopAt(None, -1),
        Checkpoints(tmp_path / "c"), engine=resumed.engine)
    for a, b in zip(state_tensors(straight), state_tensors(resumed), strict=True):
        torch.testing.assert_close(a.cpu(), b.cpu(), rtol=1e-6, atol=1e-7)


class StopAt:
    """A metrics sink that raises the stop flag, as a signal handler would, at a given step."""

    def __init__(self, stop: StopRequest | None, step: int) -> None:
        self.stop, self.at = stop, step

    def log(self, metrics: dict[str, float], step: int) -> None:
        if step == self.at and self.stop is not None:
            self.stop.signum = signal.SIGTERM
