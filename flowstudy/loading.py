"""A trained run as Python objects, for notebooks and the sample command:
``flowstudy.load(path)`` -> the EMA model, its normaliser, its config and a sampler."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from numbers import Integral
from pathlib import Path
from typing import Any

import torch
from torch import nn

from flowstudy.checkpoint import Checkpoint, CheckpointError, check_config
from flowstudy.config import (
    CheckpointConfig,
    Config,
    SampleConfig,
    TrainConfig,
    WandbConfig,
)
from flowstudy.config.rules import POSITIVE, SEED, SOLVERS, Rule, one_of
from flowstudy.data import Source, build_source
from flowstudy.data.normalize import Normalizer
from flowstudy.devices import resolve_device
from flowstudy.errors import ConfigError
from flowstudy.flows.solvers import solve
from flowstudy.models import build_model
from flowstudy.options import OPTIONS, option
from flowstudy.resolve import arch_sizes

SECTIONS = {"train": TrainConfig, "checkpoint": CheckpointConfig, "wandb": WandbConfig,
            "sample": SampleConfig}


def _section(schema: type, values: dict[str, Any]) -> Any:
    """A dataclass from a saved dict, nested sections too (train.budget); keys a newer
    flowstudy added keep their defaults."""
    fields = {f.name: f for f in dataclasses.fields(schema)}
    return schema(**{k: _section(fields[k].default_factory, v)
                     if isinstance(v, dict) and dataclasses.is_dataclass(fields[k].default_factory)
                     else v for k, v in values.items() if k in fields})


def _group_node(group: str, values: dict[str, Any]) -> Any:
    """A saved group option as its schema (its row in flowstudy.options)."""
    return _section(option(group, values["name"]).schema, values)


def config_from_dict(saved: dict[str, Any]) -> Config:
    """The typed ``Config`` a checkpoint or result.json recorded (``to_dict``'s inverse)."""
    top = {k: v for k, v in saved.items() if k not in (*OPTIONS, *SECTIONS)}
    return Config(**{k: _group_node(k, saved[k]) for k in OPTIONS},
                  **{k: _section(s, saved.get(k, {})) for k, s in SECTIONS.items()},
                  **{k: v for k, v in top.items()
                     if k in {f.name for f in dataclasses.fields(Config)}})


@dataclass
class TrainedRun:
    """A checkpoint's EMA weights, ready to sample: ``run.sample(1000)`` returns data-space
    points; ``run.model(x_t, t)`` is the velocity in normalised coordinates."""

    config: Config
    model: nn.Module  # the EMA weights, in eval mode
    normalizer: Normalizer
    source: Source  # the t=0 distribution, in normalised coordinates
    epoch: int
    step: int
    path: Path
    sha256: str  # of the checkpoint's bytes as read: what this object was made from

    @property
    def dim(self) -> int:
        return self.normalizer.shift.shape[0]

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def sample_with_nfe(self, n: int, steps: int | None = None, solver: str | None = None,
                        seed: int | None = None) -> tuple[torch.Tensor, int]:
        """``n`` samples in data space (CPU) and the velocity evaluations the solver used;
        solver, steps and seed default to the run's own ``sample`` settings and seed. A value
        the config would refuse is a ``ConfigError`` naming the argument."""
        _check_int("n", n, POSITIVE)
        _check_int("steps", steps, POSITIVE)
        _check_int("seed", seed, SEED)
        if solver is not None and not _SOLVER.ok(solver):
            raise ConfigError("solver", solver, _SOLVER.text)
        s = self.config.sample
        g = torch.Generator().manual_seed(self.config.seed if seed is None else seed)
        x0 = self.source.sample(n, self.dim, g).to(self.device)
        z, nfe = solve(self.model, x0, solver or s.solver, s.steps if steps is None else steps,
                       s.atol, s.rtol, s.max_steps)
        return self.normalizer.decode(z).cpu(), nfe

    def sample(self, n: int, steps: int | None = None, solver: str | None = None,
               seed: int | None = None) -> torch.Tensor:
        return self.sample_with_nfe(n, steps, solver, seed)[0]


_SOLVER = one_of(*SOLVERS)


def _check_int(name: str, value: Any, rule: Rule) -> None:
    """None (the run's own setting) or an integer (numpy's too) the rule allows."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, Integral)
                              or not rule.ok(value)):
        raise ConfigError(name, value, rule.text)


def load(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> TrainedRun:
    """Load a flowstudy checkpoint (``best.pt``, ``last.pt``) for sampling or inspection, on
    ``device`` (cpu, cuda, cuda:N or auto); one line (a ``UserError``) for a path that is not
    a flowstudy checkpoint or a device this machine lacks."""
    device = resolve_device(str(device), key="device")  # before the file: not its fault
    ckpt = Checkpoint.load(path, device)
    check_config(path, ckpt.config)
    if ckpt.normalizer is None:
        raise CheckpointError(f"{path}: checkpoint lacks normalizer")
    config = config_from_dict(ckpt.config)
    normalizer = Normalizer(**{k: v.cpu() for k, v in ckpt.normalizer.items()})
    dim = normalizer.shift.shape[0]
    # The sizes the data decided (``resolved``) where the config said null; a checkpoint from
    # before they were recorded resolves them again, by the same rule.
    resolved = (ckpt.resolved or {}).get("arch")
    arch = _group_node("arch", resolved) if resolved else arch_sizes(config.arch, dim)
    model = build_model(arch, dim).to(device)
    model.load_state_dict(ckpt.ema_weights())
    return TrainedRun(config=config, model=model.eval().requires_grad_(False),
                      normalizer=normalizer, source=build_source(config.dataset),
                      epoch=ckpt.epoch, step=ckpt.step, path=Path(path), sha256=ckpt.sha256)
