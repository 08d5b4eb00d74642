"""``train.cuda_graph``: the whole training step captured once in a CUDA graph and replayed.

Small models are bound by kernel launches and Python, not FLOPs: one replay launches the step's
hundreds of kernels (draws, forward, backward, norm, guard, clip, fused AdamW, EMA, tally) at once.
Everything a replay reads lives in static device buffers: the epoch's permutation (copied in once
per epoch), the position in it, the tally with the lr; the draws of x0, t and eps come from the
run's noise generator, registered with the graph so replays advance it exactly as eager steps do
and a checkpoint's generator state resumes the same stream. Validation, checkpoints, logging and
signals run between replays. The first ``WARMUP`` steps run eagerly (on a side stream, as capture
requires), then the next is captured and every later one replayed.

A configuration whose step cannot be captured says why once and trains eagerly.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator

import torch

from flowstudy.batches import Batch, BatchSource
from flowstudy.config import TrainConfig
from flowstudy.schedule import WarmupCosine
from flowstudy.state import Engine, TrainState
from flowstudy.step import EagerSteps, StepConfig, train_step, uses_fused_step

log = logging.getLogger("flowstudy")

WARMUP = 3  # eager steps before capture: lazy state (AdamW moments, cuBLAS handles) must exist


def capture_blocker(cfg: TrainConfig, device: torch.device, batches: BatchSource,
                    engine: Engine, optimizer: torch.optim.Optimizer) -> str | None:
    """Why this run's step cannot be captured in a CUDA graph, or None if it can."""
    if device.type != "cuda":
        return f"the run trains on {device}, and CUDA graphs need a CUDA device"
    if engine.dist.active:
        return "under torchrun (DDP) the step synchronises ranks from Python"
    if batches.flow.coupling is not None:
        return "this flow pairs each batch (an OT solve) on the CPU between steps"
    if batches.source.name != "gaussian":
        return f"dataset.source={batches.source.name} is sampled on the CPU"
    if batches.augment is not None:
        return "augmentations draw outside the step"
    if cfg.precision == "fp16":
        return "fp16's loss scaler keeps per-step state in Python (use bf16)"
    if cfg.compile:
        return "train.compile=true compiles the model instead (choose one of the two)"
    if not uses_fused_step(optimizer):
        return "torch has no fused AdamW for these parameters"
    return None


class GraphSteps:
    """The steps of each epoch, drawn by index on the device and (with ``capture``) replayed
    from one CUDA graph. Without ``capture`` it runs the same ops eagerly, which must equal
    ``EagerSteps`` exactly; that is how it is tested where there is no GPU."""

    reason = "cuda_graph"

    def __init__(self, state: TrainState, engine: Engine, batches: BatchSource,
                 cfg: StepConfig, capture: bool = True) -> None:
        self.state, self.engine, self.batches, self.cfg = state, engine, batches, cfg
        self.params = [p for p in state.model.parameters() if p.requires_grad]
        train, b = batches.train, batches.batch_size
        self.order = torch.empty(train.shape[0], dtype=torch.int64, device=train.device)
        self.position = torch.zeros((), dtype=torch.int64, device=train.device)
        self.offsets = torch.arange(b, device=train.device)
        self.capture = capture
        self.eager_left = WARMUP
        self.graph: torch.cuda.CUDAGraph | None = None

    def set_schedule(self, schedule: WarmupCosine) -> None:
        """Steps from now on follow ``schedule``; a captured graph holds the old schedule's
        numbers, so the next step captures a new one."""
        self.cfg = dataclasses.replace(self.cfg, schedule=schedule)
        if self.graph is not None:
            self.graph, self.eager_left = None, 0

    def _draw(self) -> Batch:
        """The next batch, as ``BatchSource`` draws it: rows of the permutation, then x0, t, eps."""
        s, train, b = self.batches, self.batches.train, self.batches.batch_size
        rows = self.order.index_select(0, self.position * b + self.offsets)
        x1 = train.index_select(0, rows)
        g = self.state.noise_gen
        x0 = s.source.sample(b, x1.shape[1], g)
        t = s.flow.times.sample(b, g)
        eps = torch.randn(x1.shape, generator=g, device=train.device) if s.flow.path.noisy \
            else None
        self.position.add_(1)
        return Batch(x0, x1, t, eps)

    def _step(self) -> None:
        train_step(self.state, self.engine, self.batches.flow.path, self._draw(), self.cfg,
                   self.params)

    def _capture(self) -> torch.cuda.CUDAGraph:
        graph = torch.cuda.CUDAGraph()
        graph.register_generator_state(self.state.noise_gen)
        for group in self.state.optimizer.param_groups:
            group["capturable"] = True  # fused AdamW: its state is on the device already
        self.state.optimizer.zero_grad(set_to_none=True)  # gradients live in the graph's pool
        torch.cuda.synchronize()
        with torch.cuda.graph(graph):
            self._step()
        return graph

    def _run(self) -> None:
        if not self.capture:
            self._step()
        elif self.graph is not None:
            self.graph.replay()
        elif self.eager_left > 0:
            self.eager_left -= 1
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                self._step()
            torch.cuda.current_stream().wait_stream(side)
        else:
            self.graph = self._capture()  # records the step; it runs at the replay
            self.graph.replay()

    def epoch(self, epoch: int, skip: int) -> Iterator[None]:
        """Run the steps of ``epoch`` after the first ``skip``, yielding after each."""
        s = self.state
        self.order.copy_(torch.randperm(self.order.shape[0], generator=s.shuffle_gen))
        self.position.zero_()
        for _ in range(skip):  # a resumed epoch: the draws of the batches already done
            self._draw()
        for _ in range(skip, self.batches.steps_per_epoch):
            self._run()
            yield


def training_steps(cfg: TrainConfig, state: TrainState, engine: Engine, batches: BatchSource,
                   step_cfg: StepConfig) -> EagerSteps | GraphSteps:
    """Captured steps when ``cfg.cuda_graph`` asks and the run allows, else eager ones (with one
    warning naming why, if they were asked for)."""
    if cfg.cuda_graph:
        device = batches.train.device
        reason = capture_blocker(cfg, device, batches, engine, state.optimizer)
        if reason is None:
            engine.precision.autocast_cache = False  # cached casts cannot outlive a capture
            return GraphSteps(state, engine, batches, step_cfg)
        log.warning("train.cuda_graph: cannot capture the step (%s); training eagerly", reason)
    return EagerSteps(state, engine, batches, step_cfg)
