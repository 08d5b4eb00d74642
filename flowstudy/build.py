"""Build everything a run trains with from its config: data, the values the data decides
(flowstudy.resolve), batches, validation set (and a sample monitor's fixed draw), model,
optimizer, EMA, early stopping and the step engine."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from flowstudy.batches import BatchSource
from flowstudy.budget import Budget, chosen
from flowstudy.config import Config
from flowstudy.cost import step_flops
from flowstudy.data import DataSplits, build_data
from flowstudy.data.augment import build_augment
from flowstudy.devices import device_label
from flowstudy.distributed import Dist
from flowstudy.early_stopping import EarlyStopping
from flowstudy.ema import EMA
from flowstudy.errors import ConfigError, UserError
from flowstudy.flows import build_flow
from flowstudy.models import build_model
from flowstudy.monitor import SampleMonitor
from flowstudy.precision import Precision
from flowstudy.resolve import Resolved, resolve
from flowstudy.state import Engine, TrainState, ValidationSet

log = logging.getLogger("flowstudy")


@dataclass
class Built:
    """Everything a run trains with, built from its config."""

    cfg: Config  # the requested config with every data-dependent null resolved
    resolved: Resolved  # what was resolved, as logged and stored in result.json
    data: DataSplits
    batches: BatchSource
    val: ValidationSet
    state: TrainState
    engine: Engine
    compile_s: float | None = None  # seconds torch.compile took (train.compile)
    budget: Budget | None = None  # train.budget, planned on the resolved model
    monitor: SampleMonitor | None = None  # the sample metric train.monitor names, if it does


def compile_cache(study_dir: str) -> Path:
    """Where inductor keeps compiled kernels and FX graphs: one directory per study, so every
    run of a sweep after the first loads the step's kernels instead of compiling them (an
    explicit ``TORCHINDUCTOR_CACHE_DIR`` wins)."""
    path = Path(study_dir).resolve() / ".cache" / "inductor"
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(path))
    return Path(os.environ["TORCHINDUCTOR_CACHE_DIR"])


def _compiled(model: nn.Module, example: tuple[torch.Tensor, torch.Tensor],
              precision: Precision) -> tuple[nn.Module, float | None]:
    """The compiled model and the seconds compiling took, or the model itself (and None) where
    torch.compile is unavailable. Compiled now, at the training step's exact shapes and
    precision, forward and backward, so no recompile lands inside the timed training."""
    started = time.perf_counter()
    try:
        compiled = torch.compile(model, dynamic=False)
        with precision.autocast():
            out = compiled(*example)
        out.float().square().mean().backward()
        model.zero_grad(set_to_none=True)
        return compiled, time.perf_counter() - started
    except Exception as e:  # torch.compile raises many types when a backend is unavailable
        model.zero_grad(set_to_none=True)
        log.warning("train.compile: torch.compile is unavailable here (%s); training eagerly",
                    str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)
        return model, None


def adamw(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with its fused kernel where torch has one for the device (CPU and CUDA): the same
    update as the default per-tensor loop, several times faster on a CPU."""
    try:
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, ValueError):
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)


def build(cfg: Config, device: torch.device, ranks: Dist | None = None) -> Built:
    """Build a run from its requested ``cfg``; ``Built.cfg`` is that config resolved."""
    ranks = ranks or Dist()
    t = cfg.train
    if t.compile:  # before torch first asks inductor where its cache is (it then stays there)
        compile_cache(cfg.study_dir)
    if t.precision == "fp16" and device.type != "cuda":
        raise ConfigError("train.precision", "fp16", "fp32 or bf16 on a CPU (fp16 needs CUDA)")
    if t.batch_size is not None and t.batch_size % (t.accum_steps * ranks.world):
        raise ConfigError("train.batch_size", t.batch_size,
                          f"a multiple of train.accum_steps x ranks = "
                          f"{t.accum_steps} x {ranks.world} (the batch is global)")
    data = build_data(cfg.dataset, cfg.study_dir)
    cfg, resolved = resolve(cfg, data.train.shape[0], data.val.shape[0], data.test.shape[0],
                            data.dim, ranks.world, data.norm_cv)
    t = cfg.train
    flow = build_flow(cfg.flow)
    batches = BatchSource(train=data.normalizer.encode(data.train).to(device),
                          batch_size=t.batch_size, source=data.source, flow=flow,
                          augment=build_augment(cfg.aug), seed=cfg.seed,
                          passes=resolved.passes_per_epoch, overfit_batches=t.overfit_batches)
    # Validation noise is seeded by the data seed: runs of any seed are scored on the same problem.
    val = ValidationSet.fixed(data.normalizer.encode(data.val).to(device), data.source, flow,
                              t.batch_size, seed=cfg.dataset.seed)
    if t.overfit_batches:  # scored on the very batches it fits
        val = ValidationSet(*batches.fixed_validation())
    monitor = SampleMonitor.build(cfg, data, device)
    model = build_model(cfg.arch, data.dim).to(device)
    example = (batches.train[:2], torch.zeros(2, device=device))
    with torch.no_grad():
        probe = model(*example)
    if probe.shape != (2, data.dim):
        raise UserError(f"arch={cfg.arch.name}: the model maps x_t of shape [2, {data.dim}] to "
                        f"{list(probe.shape)}; a velocity must have the shape of x_t")
    budget = None
    if (kind := chosen(t.budget)) is not None:  # its FLOPs per step, counted before training
        flops = step_flops(model, flow.path, t.batch_size, data.dim, device)
        budget = Budget.plan(*kind, flops, t.warmup_steps, device_label(device))
        resolved = resolved.with_budget(kind[0], budget.planned_steps, flops)
    precision = Precision.create(t.precision, device)
    state = TrainState(
        model=model,
        ema=EMA(model, t.ema_decay, t.ema_power),
        optimizer=adamw(model, t.lr, t.weight_decay),
        stopper=EarlyStopping(t.patience, t.min_delta),
        shuffle_gen=torch.Generator().manual_seed(cfg.seed),
        noise_gen=torch.Generator(device).manual_seed(cfg.seed + 1),
        scaler=precision.scaler,
    )
    forward, compile_s = model, None
    if t.compile:
        micro = t.batch_size // (t.accum_steps * ranks.world)
        forward, compile_s = _compiled(
            model, (batches.train[:1].expand(micro, -1).clone(),
                    torch.zeros(micro, device=device)), precision)
    if ranks.active:
        forward = DistributedDataParallel(
            forward, device_ids=[device.index] if device.type == "cuda" else None)
    return Built(cfg, resolved, data, batches, val, state, Engine(forward, precision, ranks),
                 compile_s, budget, monitor)
