"""The step without host reads, the CUDA-graph step (its eager equivalent here; captured where
CUDA is), TF32, and placing runs and ranks on devices."""

from __future__ import annotations

import copy
import dataclasses
import logging
import signal
from pathlib import Path

import pytest
import torch

from flowstudy.batches import Batch, BatchSource
from flowstudy.build import Built, build
from flowstudy.checkpoint import Checkpoint
from flowstudy.config import Config, CoupledFlowConfig
from flowstudy.data import Source
from flowstudy.data.augment import gaussian_noise
from flowstudy.devices import auto_device, thread_count, use_tf32
from flowstudy.distributed import check_ranks_fit
from flowstudy.errors import UserError
from flowstudy.flows import build_flow
from flowstudy.graph_step import GraphSteps, capture_blocker
from flowstudy.interrupt import Interrupted, StopRequest
from flowstudy.rng import seed_everything, set_rng_state
from flowstudy.run import run
from flowstudy.schedule import WarmupCosine
from flowstudy.step import EagerSteps, StepConfig, attach_lr, train_step
from flowstudy.trainer import Checkpoints, fit

from .helpers import TINY, compose_config

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _config(tmp_path: Path, *overrides: str) -> Config:
    return compose_config([*TINY, f"study_dir={tmp_path / 'study'}", "wandb.mode=disabled",
                           *overrides])


def _built(cfg: Config, device: str = "cpu") -> Built:
    seed_everything(cfg.seed)
    built = build(cfg, torch.device(device))
    attach_lr(built.state.optimizer, built.state.tally)
    return built


def _step_config(cfg: Config, built: Built) -> StepConfig:
    t = cfg.train
    schedule = WarmupCosine(t.lr, t.warmup_steps, t.epochs * built.batches.steps_per_epoch,
                            t.min_lr_ratio)
    return StepConfig(schedule, t.grad_clip, t.accum_steps, t.nan_patience)


def _train(built: Built, steps: EagerSteps | GraphSteps, epochs: range, skip: int = 0) -> None:
    for epoch in epochs:
        for _ in steps.epoch(epoch, skip=skip if epoch == epochs.start else 0):
            pass


def _tensors(built: Built) -> list[torch.Tensor]:
    s = built.state
    moments = [v for state in s.optimizer.state.values() for v in state.values()]
    return [*s.model.parameters(), *s.ema.module.parameters(), *moments, s.ema.count,
            s.noise_gen.get_state(), *(getattr(s.tally, f) for f in
                                       ("steps", "skipped", "window_loss", "grad_norm", "lr"))]


def test_device_schedule_matches_the_host_schedule() -> None:
    s = WarmupCosine(lr=2e-3, warmup_steps=10, total_steps=110, min_lr_ratio=0.05)
    steps = torch.arange(130)
    assert torch.allclose(s.at(steps), torch.tensor([s(int(k)) for k in steps],
                                                    dtype=torch.float64), rtol=1e-12)


@pytest.mark.parametrize("flow", ["ot", "cfm"])
def test_graph_step_run_eagerly_equals_the_eager_step_bitwise(tmp_path: Path, flow: str) -> None:
    """What the graph captures (draws by index on the device, the step, the tally) is the eager
    step exactly, including a resume in the middle of an epoch."""
    cfg = _config(tmp_path, f"flow={flow}", "train.epochs=2")
    eager, graph = _built(cfg), _built(cfg)
    _train(eager, EagerSteps(eager.state, eager.engine, eager.batches, _step_config(cfg, eager)),
           range(2))
    graph_steps = GraphSteps(graph.state, graph.engine, graph.batches, _step_config(cfg, graph),
                             capture=False)
    _train(graph, graph_steps, range(2))
    for a, b in zip(_tensors(eager), _tensors(graph), strict=True):
        assert torch.equal(a, b)
    assert eager.state.read_tally()["steps"] == 16

    resumed = _built(cfg)  # epoch 1 from its 3rd batch, as a checkpoint would restart it
    partial = _built(cfg)
    steps = GraphSteps(partial.state, partial.engine, partial.batches,
                       _step_config(cfg, partial), capture=False)
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
                               _step_config(cfg, resumed), capture=False), range(1, 2), skip=3)
    for a, b in zip(_tensors(eager), _tensors(resumed), strict=True):
        assert torch.equal(a, b)


def test_a_non_finite_step_changes_no_state_and_patience_freezes_the_run(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "train.nan_patience=2")
    built = _built(cfg)
    s, step_cfg = built.state, _step_config(cfg, built)
    params = list(s.model.parameters())
    good = next(iter(built.batches.epoch(0, s.shuffle_gen, s.noise_gen)))
    bad = Batch(good.x0, good.x1.clone().fill_(float("nan")), good.t, good.eps)
    train_step(s, built.engine, built.batches.flow.path, good, step_cfg, params)
    before = [t.clone() for t in _tensors(built)[:-5]]
    for _ in range(4):  # two skipped steps reach the patience; later steps are frozen
        train_step(s, built.engine, built.batches.flow.path, bad, step_cfg, params)
    for a, b in zip(before, _tensors(built)[:-5], strict=True):
        assert torch.equal(a, b)  # weights, EMA, Adam moments and step count, EMA count
    counts = s.read_tally()
    assert (counts["steps"], counts["skipped"], counts["streak"]) == (1, 2, 2)
    train_step(s, built.engine, built.batches.flow.path, good, step_cfg, params)
    assert s.read_tally()["steps"] == 1  # a diverged run stays frozen until the host stops it


def test_capture_blocker_names_each_reason(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    built = _built(cfg)
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


def test_tf32_switch_sets_cuda_flags_and_never_claims_tf32_on_a_cpu() -> None:
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        assert use_tf32(torch.device("cuda"), True) is True
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        assert use_tf32(torch.device("cuda"), False) is False
        assert not torch.backends.cuda.matmul.allow_tf32
        assert use_tf32(torch.device("cpu"), True) is False
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def test_parallel_jobs_share_one_gpu_and_split_the_cores() -> None:
    # hydra/launcher=joblib hydra.launcher.n_jobs=4 on a 16-core machine with one GPU.
    assert [auto_device(1, job, parallel=4) for job in range(4)] == ["cuda"] * 4
    assert [auto_device(2, job, parallel=4) for job in range(4)] == ["cuda:0", "cuda:1"] * 2
    assert thread_count(None, cores=16, sharing=4) == 4
    assert thread_count(None, cores=2, sharing=4) == 1 and thread_count(3, 16, 4) == 3


def test_more_ranks_than_gpus_is_one_line_naming_the_counts() -> None:
    check_ranks_fit(1, 1)
    with pytest.raises(UserError) as err:
        check_ranks_fit(2, 1)
    assert str(err.value) == ("torchrun started 2 ranks but this machine has 1 CUDA device(s); "
                              "use --nproc_per_node<=1 or train.device=cpu for gloo")


@CUDA
@pytest.mark.parametrize("overrides", [["flow=cfm"], ["flow=ot", "train.precision=bf16"]])
def test_captured_steps_equal_eager_steps_on_cuda(tmp_path: Path, overrides: list[str]) -> None:
    cfg = _config(tmp_path, *overrides, "train.epochs=3", "train.cuda_graph=true")
    eager, graph = _built(cfg, "cuda"), _built(cfg, "cuda")
    _train(eager, EagerSteps(eager.state, eager.engine, eager.batches,
                             _step_config(cfg, eager)), range(3))
    eager.engine.precision.autocast_cache = False
    steps = GraphSteps(graph.state, graph.engine, graph.batches, _step_config(cfg, graph))
    graph.engine.precision.autocast_cache = False
    _train(graph, steps, range(3))
    assert steps.graph is not None  # 3 eager steps, then 21 replays
    for a, b in zip(_tensors(eager), _tensors(graph), strict=True):
        torch.testing.assert_close(a.cpu(), b.cpu(), rtol=1e-6, atol=1e-7)


@CUDA
def test_a_cuda_graph_run_resumes_exactly(tmp_path: Path) -> None:
    """Stopped after step 11 (mid-epoch 2) and resumed from last.pt, a captured run ends where
    an uninterrupted one does: the noise generator's state travels in the checkpoint."""
    cfg = _config(tmp_path, "flow=cfm", "train.epochs=3", "train.log_every=1",
                  "train.cuda_graph=true", "train.device=cuda")
    straight = _built(cfg, "cuda")
    fitted = fit(cfg.train, straight.state, straight.batches, straight.val, StopAt(None, -1),
                 Checkpoints(tmp_path / "a"), engine=straight.engine)
    assert fitted.step_mode == "cuda_graph"
    first, stop = _built(cfg, "cuda"), StopRequest()
    with pytest.raises(Interrupted):
        fit(cfg.train, first.state, first.batches, first.val, StopAt(stop, 11),
            Checkpoints(tmp_path / "b"), stop=stop, engine=first.engine)
    last = Checkpoint.load(tmp_path / "b" / "last.pt", "cuda")
    resumed = _built(cfg, "cuda")
    resumed.state.load_state_dict(last.train)
    set_rng_state(last.rng)
    fit(cfg.train, resumed.state, resumed.batches, resumed.val, StopAt(None, -1),
        Checkpoints(tmp_path / "c"), engine=resumed.engine)
    for a, b in zip(_tensors(straight), _tensors(resumed), strict=True):
        torch.testing.assert_close(a.cpu(), b.cpu(), rtol=1e-6, atol=1e-7)


class StopAt:
    """A metrics sink that raises the stop flag, as a signal handler would, at a given step."""

    def __init__(self, stop: StopRequest | None, step: int) -> None:
        self.stop, self.at = stop, step

    def log(self, metrics: dict[str, float], step: int) -> None:
        if step == self.at and self.stop is not None:
            self.stop.signum = signal.SIGTERM
