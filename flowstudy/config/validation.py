"""Validation: each field's rule, then the rules that relate fields; the same rule texts make the
one-line errors and ``--help``'s list of what each key allows."""

from __future__ import annotations

import dataclasses
from typing import Any

from omegaconf import DictConfig, OmegaConf

from flowstudy.budget import chosen
from flowstudy.config.groups import group_options
from flowstudy.config.naming import derive_name, leaves, overrides
from flowstudy.config.rules import NAMED_FILE
from flowstudy.config.schemas import (
    GROUP_SCHEMAS,
    Config,
    CoupledFlowConfig,
    DiTConfig,
    EmbeddingsConfig,
    EvalConfig,
    SphereConfig,
    Toy2DConfig,
    keyed_schemas,
    schema_fields,
)
from flowstudy.errors import ConfigError, UserError
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


def validate_eval(cfg: EvalConfig) -> None:
    """``flowstudy.sample``'s own keys (its seed, the sample.* values given), before the
    checkpoint is read; the run's settings they join are validated once it is."""
    _check_fields(cfg, "")


def rules_text() -> str:
    """Every key with a rule and what it allows, for --help."""
    lines: dict[str, str] = {}
    for schema, prefix in keyed_schemas():
        for key, f in schema_fields(schema, prefix):
            if "rule" in f.metadata:
                lines.setdefault(key, f.metadata["rule"].text)
    width = max(map(len, lines))
    return "\n".join(f"{key:<{width}}  {text}" for key, text in sorted(lines.items()))


def check_keys(cfg: DictConfig, prefix: str = "") -> None:
    """Every key of the composed config is a field of its schema, and no section is missing.

    Hydra lets ``+key=value`` add a key and ``~key`` delete one whatever the schema says; the
    typed config would drop the added key silently (``+lr=0.5`` trains at the default lr) and
    fill a deleted section with its defaults, so both are refused here, before any work."""
    schema = OmegaConf.get_type(cfg)
    if not dataclasses.is_dataclass(schema):
        return  # a free-form dict field: any keys
    fields = {f.name for f in dataclasses.fields(schema)}
    allowed = ", ".join(f.name for f in dataclasses.fields(schema))
    where = f"allowed in {prefix.rstrip('.')}" if prefix else "allowed at the top level"
    for key in cfg:
        if key not in fields:
            value = OmegaConf.to_container(cfg, resolve=False).get(key)  # type: ignore[union-attr]
            first, shown = next(iter(leaves(value, f"{prefix}{key}").items()), (key, value))
            raise UserError(f"{first}={shown} is not a known key; {where}: {allowed}")
    present = set(cfg.keys())  # `in` is False for a key that is present but MISSING (???)
    for f in dataclasses.fields(schema):
        if f.name not in present:
            section = f.name in GROUP_SCHEMAS or dataclasses.is_dataclass(f.default_factory)
            hint = f"set its keys instead ({prefix}{f.name}.<key>=...)" if section \
                else f"set it instead ({prefix}{f.name}=...)"
            raise UserError(f"~{prefix}{f.name}: {prefix}{f.name} is part of the config and "
                            f"cannot be deleted; {hint}")
    for key in fields & set(cfg):
        node = cfg._get_node(key)  # type: ignore[union-attr]
        if isinstance(node, DictConfig) and not node._is_none() and not node._is_missing():
            check_keys(node, f"{prefix}{key}.")


def load_config(cfg: DictConfig) -> Config:
    """Hydra's composed DictConfig -> a validated, fully resolved dataclass tree.

    Without ``name=``, the run is named by its config: the base name plus every override
    (``overrides``). A run resumed from a checkpoint is named by ``flowstudy.lineage`` once the
    checkpoint is read."""
    check_keys(cfg)
    config: Config = OmegaConf.to_object(cfg)  # type: ignore[assignment]
    for group, schemas in GROUP_SCHEMAS.items():
        node = getattr(config, group)
        _check(isinstance(node, tuple(schemas.values())), group, getattr(node, "name", node),
               f"a config built on a schema (conf/{group}/<option>.yaml must list one of "
               f"{', '.join(f'/{s}@_here_' for s in schemas)} in its defaults)")
    validate(config)
    if config.name is None and config.resume in (None, "auto"):
        if isinstance(config.dataset, EmbeddingsConfig):
            _check(NAMED_FILE.ok(config.dataset.path), "dataset.path", config.dataset.path,
                   NAMED_FILE.text)
        config.name = derive_name(config, overrides(cfg))
    return config
