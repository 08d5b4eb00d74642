"""A run's name and identity: which keys decide its results, the derived name
``[<experiment>-]<arch>-<flow>-<dataset>-<aug>`` with a suffix per value off its default, and how
two configs differ."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from flowstudy.config.groups import CONF_DIR, option_defaults
from flowstudy.config.schemas import (
    GROUP_SCHEMAS,
    Config,
    DatasetConfig,
    EmbeddingsConfig,
    Toy2DConfig,
    to_dict,
)

# Keys that do not change a run's results; two runs differing only here are the same run.
NON_IDENTITY_KEYS = ("name", "group", "resume", "force", "study_dir", "checkpoint", "wandb",
                     "objective", "train.device", "train.threads", "train.log_every",
                     "train.grad_stats_every", "train.compile", "train.cuda_graph",
                     "train.profile_steps", "sample.max_steps")
# Keys a suffix never names: those the base name already shows, and those outside identity.
UNNAMED_KEYS = ("experiment", "arch.name", "flow.name", "dataset.name", "aug.name",
                "dataset.n_train", "dataset.source", "dataset.path", *NON_IDENTITY_KEYS)
# A derived name over this many bytes (as many as name= allows) keeps a readable head and a hash
# of the whole: a file name holds at most 255 bytes, and the run's directories, its W&B name and
# the names of its branches (<name>+<changes>) are made from it.
MAX_DERIVED_NAME = 128
NAME_HASH_CHARS = 10
# The full names of the names shortened in this process (short -> full), for the run's records.
_full_names: dict[str, str] = {}


def format_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if not np.isfinite(value):
            return repr(value)
        if value != 0 and not 1e-2 <= abs(value) < 1e4:  # shortest exact form: 3e-4, 1.25e-5
            mantissa, exponent = np.format_float_scientific(value, trim="-").split("e")
            return f"{mantissa}e{int(exponent)}"
        return repr(value).removesuffix(".0")
    if isinstance(value, list):
        return "x".join(format_value(v) for v in value)
    if value is None:
        return "null"
    return str(value).replace("/", "_")


def leaves(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"train.lr": 2e-3, ...}``: the leaves of a nested config dict by dotted key (a list is
    one leaf)."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(leaves(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def name_suffix(values: dict[str, Any], keys: Any = ()) -> str:
    """``-lr3e-4-seed1`` for {train.lr: 3e-4, seed: 1}: the last part of each key, or the whole
    key (dots as ``_``) where another of ``keys`` (every key of the config) ends alike, so
    ``dataset.seed`` never reads as the run seed; sorted by label."""
    last = [k.rsplit(".", 1)[-1] for k in {*values, *keys}]
    labels = {k: (k.rsplit(".", 1)[-1] if last.count(k.rsplit(".", 1)[-1]) == 1
                  else k.replace(".", "_")) for k in values}
    parts = sorted(f"{labels[k]}{format_value(v)}" for k, v in values.items())
    return "".join(f"-{p}" for p in parts)


def named_changes(current: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any]:
    """The leaves of ``current`` that differ from ``reference`` and change results, minus those
    the base name shows: what a run name must add (to the defaults, or to a resumed parent)."""
    ref = leaves(reference)
    return {k: v for k, v in leaves(current).items()
            if not any(k == u or k.startswith(f"{u}.") for u in UNNAMED_KEYS)
            and (k not in ref or ref[k] != v)}


def overrides(cfg: DictConfig) -> dict[str, Any]:
    """Every value of a composed config off the defaults of its chosen group options and of its
    ``experiment`` preset (on the command line, in a sweep's grid or an ablation), resolved."""
    current = leaves(OmegaConf.to_container(cfg, resolve=True))
    reference = leaves({**dataclasses.asdict(Config()),
                        **{g: option_defaults(g, cfg[g].name) for g in GROUP_SCHEMAS}})
    if cfg.experiment is not None:  # a preset's own values are its name, not suffixes
        preset = OmegaConf.to_container(
            OmegaConf.load(CONF_DIR / "experiment" / f"{cfg.experiment}.yaml"))
        preset.pop("defaults", None)
        reference.update(leaves(preset))
    return named_changes(current, reference)


def differences(saved: Any, current: Any, prefix: str = "") -> list[str]:
    """``key=saved (now: current)`` for every leaf where two config dicts differ.

    Keys the saved config lacks are skipped: they were added to flowstudy after it was saved.
    """
    if isinstance(saved, dict) and isinstance(current, dict):
        out = []
        for key in sorted(saved):
            out += differences(saved[key], current.get(key),
                               f"{prefix}.{key}" if prefix else key)
        return out
    return [] if saved == current else [f"{prefix}={saved!r} (now: {current!r})"]


def identity(config: dict[str, Any]) -> dict[str, Any]:
    """The part of a config dict that decides a run's results."""
    out = {k: v for k, v in config.items() if k not in NON_IDENTITY_KEYS}
    for key in NON_IDENTITY_KEYS:
        section, _, leaf = key.partition(".")
        if leaf and section in out:
            out[section] = {k: v for k, v in out[section].items() if k != leaf}
    return out


def dataset_label(d: DatasetConfig) -> str:
    """The dataset part of a run name: what data, from which source, how many training points."""
    label = Path(d.path).stem if isinstance(d, EmbeddingsConfig) else d.name
    if isinstance(d, Toy2DConfig) and d.source != "gaussian":
        label = f"{d.source}_to_{label}"
    return label if d.n_train is None else f"{label}-n{d.n_train}"


def derive_name(cfg: Config, changed: dict[str, Any] | None = None) -> str:
    """``[<experiment>-]<arch>-<flow>-<dataset>-<aug>``, then a suffix for each value off its
    default (shortened by ``short_name`` where that is too long)."""
    base = f"{cfg.arch.name}-{cfg.flow.name}-{dataset_label(cfg.dataset)}-{cfg.aug.name}"
    if cfg.experiment is not None:
        base = f"{cfg.experiment}-{base}"
    return short_name(base + name_suffix(changed or {}, leaves(to_dict(cfg))))


def short_name(full: str) -> str:
    """``full`` where it has at most ``MAX_DERIVED_NAME`` bytes; else its head (cut after a
    whole ``-<key><value>`` part where that keeps most of it) and ``-<sha256 of full>`` (10 hex
    digits): the same config always gets the same name, two configs never share one."""
    if len(full.encode()) <= MAX_DERIVED_NAME:
        return full
    tag = "-" + hashlib.sha256(full.encode()).hexdigest()[:NAME_HASH_CHARS]
    head = full.encode()[:MAX_DERIVED_NAME - len(tag) + 1].decode(errors="ignore")
    cut = head.rfind("-")  # after a whole part, unless one part (a file's stem) is most of it
    short = (head[:cut] if cut > len(head) // 2 else head[:-1]) + tag
    _full_names[short] = full
    return short


def full_name(name: str) -> str | None:
    """The whole derived name ``name`` was shortened from (in this process), or None."""
    return _full_names.get(name)
