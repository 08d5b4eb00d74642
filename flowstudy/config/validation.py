"""Validation: each field's rule, then the rules that relate fields; the same rule texts make the
one-line errors and ``--help``'s list of what each key allows."""

from __future__ import annotations

import dataclasses
from typing import Any

from omegaconf import DictConfig, OmegaConf

from flowstudy.budget import chosen
from flowstudy.config.groups import group_options
from flowstudy.config.naming import derive_name, overrides
from flowstudy.config.schemas import (
    GROUP_SCHEMAS,
    Config,
    CoupledFlowConfig,
    DiTConfig,
    SphereConfig,
    Toy2DConfig,
    keyed_schemas,
    schema_fields,
)
from flowstudy.errors import ConfigError
from flowstudy.metrics import OBJECTIVES


def objective_direction(objective: str) -> str:
    _check(objective in OBJECTIVES, "objective", objective, f"one of {', '.join(OBJECTIVES)}")
    return OBJECTIVES[objective]


def _check(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(key, value, allowed)


def _check_fields(node: Any, prefix: str) -> None:
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        if dataclasses.is_dataclass(value):
            _check_fields(value, f"{prefix}{f.name}.")
        elif "rule" in f.metadata:
            _check(f.metadata["rule"].ok(value), f"{prefix}{f.name}", value,
                   f.metadata["rule"].text)


def validate(cfg: Config) -> None:
    """Every field's rule, then the rules between fields; run before any work starts."""
    for group in GROUP_SCHEMAS:
        options = group_options(group)
        _check(getattr(cfg, group).name in options, f"{group}.name", getattr(cfg, group).name,
               f"one of {', '.join(options)}")
    _check_fields(cfg, "")
    t, d, a, f = cfg.train, cfg.dataset, cfg.arch, cfg.flow
    if cfg.experiment is not None:
        _check(cfg.experiment in group_options("experiment"), "experiment", cfg.experiment,
               f"one of {', '.join(group_options('experiment'))}")
    chosen(t.budget)  # at most one budget
    _check(t.batch_size is None or t.batch_size % t.accum_steps == 0, "train.batch_size",
           t.batch_size, f"a multiple of train.accum_steps={t.accum_steps}")
    if isinstance(a, DiTConfig):
        _check(a.dim is None or a.dim % a.heads == 0, "arch.dim", a.dim,
               f"a multiple of arch.heads={a.heads}, or null to fit the data dim")
    if isinstance(f, CoupledFlowConfig) and f.name == "sb":
        _check(f.sigma > 0, "flow.sigma", f.sigma, "a float > 0 (sb's entropic reg is 2 sigma^2)")
    if isinstance(d, (Toy2DConfig, SphereConfig)):
        # Auto sizes always fit (build_data checks the rows); explicit ones are checked here.
        held_out = (d.n_val or 0) + (d.n_test or 0)
        _check(d.size > held_out, "dataset.size", d.size, f"more than n_val + n_test = {held_out}")


def rules_text() -> str:
    """Every key with a rule and what it allows, for --help."""
    lines: dict[str, str] = {}
    for schema, prefix in keyed_schemas():
        for key, f in schema_fields(schema, prefix):
            if "rule" in f.metadata:
                lines.setdefault(key, f.metadata["rule"].text)
    width = max(map(len, lines))
    return "\n".join(f"{key:<{width}}  {text}" for key, text in sorted(lines.items()))


def load_config(cfg: DictConfig) -> Config:
    """Hydra's composed DictConfig -> a validated, fully resolved dataclass tree.

    Without ``name=``, the run is named by its config: the base name plus every override
    (``overrides``). A run resumed from a checkpoint is named by ``flowstudy.lineage`` once the
    checkpoint is read."""
    config: Config = OmegaConf.to_object(cfg)  # type: ignore[assignment]
    for group, schemas in GROUP_SCHEMAS.items():
        node = getattr(config, group)
        _check(isinstance(node, tuple(schemas.values())), group, getattr(node, "name", node),
               f"a config built on a schema (conf/{group}/<option>.yaml must list one of "
               f"{', '.join(f'/{s}@_here_' for s in schemas)} in its defaults)")
    validate(config)
    if config.name is None and config.resume in (None, "auto"):
        config.name = derive_name(config, overrides(cfg))
    return config
