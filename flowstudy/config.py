"""Typed configuration: the dataclass schemas Hydra validates every YAML against, the range checks
its type system cannot express, and the derived run name.

Each config group option (``conf/<group>/<option>.yaml``) starts from its schema through its
defaults list (``- mlp_schema``), so a typo or a wrong type in a YAML or on the command line fails
at composition, and the training code receives plain dataclass instances.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import II, MISSING, DictConfig, OmegaConf

from flowstudy.errors import ConfigError

# --- group schemas: one base per group, one subclass per option with its own fields -------------


@dataclass
class ArchConfig:
    name: str = MISSING


@dataclass
class MLPConfig(ArchConfig):
    name: str = "mlp"
    width: int = 256
    depth: int = 3  # residual blocks


@dataclass
class FlowConfig:
    name: str = MISSING


@dataclass
class OTFlowConfig(FlowConfig):
    name: str = "ot"
    sigma_min: float = 0.0


@dataclass
class DatasetConfig:
    name: str = MISSING
    n_train: int = 20_000
    n_val: int = 1_000
    n_test: int = 1_000
    # Seeds the data and its split, apart from the run seed, so every run of a study sees the
    # same train/val/test points whatever its own seed.
    seed: int = 0


@dataclass
class MoonsConfig(DatasetConfig):
    name: str = "moons"
    noise: float = 0.05


@dataclass
class AugConfig:
    name: str = MISSING


@dataclass
class NoAugConfig(AugConfig):
    name: str = "none"


# --- top-level sections -------------------------------------------------------------------------


@dataclass
class TrainConfig:
    epochs: int = 100
    batch_size: int = 256  # drop_last: every step sees a full batch
    lr: float = 2e-3
    weight_decay: float = 0.0
    warmup_steps: int = 1000
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0
    ema_decay: float = 0.9999
    # EMA warmup: decay_k = min(ema_decay, 1 - (1 + k) ** -ema_power) after k updates, so early
    # on the average spans ~(1 + k) ** ema_power recent steps instead of the initial weights;
    # null switches it off.
    ema_power: float | None = 2 / 3
    monitor: str = "ema"  # which val loss drives early stopping and the best checkpoint: ema|raw
    patience: int = 20  # epochs without improvement, counted once warmup has ended
    min_delta: float = 0.0
    log_every: int = 10
    device: str = "auto"  # auto (cuda if available, else cpu) | cpu | cuda | cuda:N


@dataclass
class CheckpointConfig:
    dir: str = II("study_dir") + "/checkpoints"
    save_last: bool = False


@dataclass
class WandbConfig:
    project: str = "flow-matching-study"
    entity: str | None = None
    mode: str = "offline"
    tags: list[str] = field(default_factory=list)


@dataclass
class SampleConfig:
    n: int = II("dataset.n_test")  # equal to the test split, so W2 is exact
    steps: int = 100
    solver: str = "euler"


@dataclass
class Config:
    arch: Any = MISSING
    flow: Any = MISSING
    dataset: Any = MISSING
    aug: Any = MISSING
    seed: int = 0
    name: str | None = None  # run name; None derives <arch>-<flow>-<dataset>-<aug>
    group: str = "default"  # W&B group; set by the chosen ablation
    resume: str | None = None  # path to a checkpoint to continue from
    force: bool = False  # replace an existing run of the same name instead of refusing
    study_dir: str = "study"
    train: TrainConfig = field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)


CONF_DIR = Path(__file__).resolve().parents[1] / "conf"

GROUP_SCHEMAS: dict[str, dict[str, type]] = {
    "arch": {"mlp": MLPConfig},
    "flow": {"ot": OTFlowConfig},
    "dataset": {"moons": MoonsConfig},
    "aug": {"none": NoAugConfig},
}


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    for group, options in GROUP_SCHEMAS.items():
        for option, schema in options.items():
            cs.store(group=group, name=f"{option}_schema", node=schema)
    # --help lists the options users pick from (the YAML files), not the schemas behind them.
    OmegaConf.register_new_resolver("flowstudy_groups", group_options_text, replace=True)


def group_options_text() -> str:
    return "\n".join(
        f"{d.name}: {', '.join(sorted(p.stem for p in d.glob('*.yaml')))}"
        for d in sorted(CONF_DIR.iterdir()) if d.is_dir()
    )


# --- checks Hydra cannot express ----------------------------------------------------------------

WANDB_MODES = ("offline", "online", "disabled")
SOLVERS = ("euler",)  # the keys of flowstudy.flows.solvers.SOLVERS (a test keeps them equal)
MONITORS = ("ema", "raw")


def _check(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(key, value, allowed)


def validate(cfg: Config) -> None:
    """Range and choice checks, run before any work starts."""
    t, d = cfg.train, cfg.dataset
    _check(t.epochs >= 1, "train.epochs", t.epochs, "an integer >= 1")
    _check(t.batch_size >= 1, "train.batch_size", t.batch_size, "an integer >= 1")
    _check(t.lr > 0, "train.lr", t.lr, "a float > 0")
    _check(t.weight_decay >= 0, "train.weight_decay", t.weight_decay, "a float >= 0")
    _check(t.warmup_steps >= 0, "train.warmup_steps", t.warmup_steps, "an integer >= 0")
    _check(0 <= t.min_lr_ratio <= 1, "train.min_lr_ratio", t.min_lr_ratio, "a float in [0, 1]")
    _check(t.grad_clip > 0, "train.grad_clip", t.grad_clip, "a float > 0")
    _check(0 < t.ema_decay < 1, "train.ema_decay", t.ema_decay, "a float in (0, 1)")
    _check(t.ema_power is None or t.ema_power > 0, "train.ema_power", t.ema_power,
           "a float > 0, or null for no EMA warmup")
    _check(t.monitor in MONITORS, "train.monitor", t.monitor, f"one of {', '.join(MONITORS)}")
    _check(t.patience >= 1, "train.patience", t.patience, "an integer >= 1")
    _check(t.min_delta >= 0, "train.min_delta", t.min_delta, "a float >= 0")
    _check(t.log_every >= 1, "train.log_every", t.log_every, "an integer >= 1")
    _check(t.device in ("auto", "cpu", "cuda") or t.device.startswith("cuda:"), "train.device",
           t.device, "auto, cpu, cuda or cuda:N")
    for key in ("n_train", "n_val", "n_test"):
        value = getattr(d, key)
        _check(value >= 1, f"dataset.{key}", value, "an integer >= 1")
    _check(t.batch_size <= d.n_train, "train.batch_size", t.batch_size,
           f"at most dataset.n_train={d.n_train} (every step takes a full batch)")
    for key, value in dataclasses.asdict(cfg.arch).items():
        if isinstance(value, int) and not isinstance(value, bool):
            _check(value >= 1, f"arch.{key}", value, "an integer >= 1")
    if isinstance(cfg.flow, OTFlowConfig):
        s = cfg.flow.sigma_min
        _check(0 <= s < 1, "flow.sigma_min", s, "a float in [0, 1)")
    if isinstance(cfg.dataset, MoonsConfig):
        _check(cfg.dataset.noise >= 0, "dataset.noise", cfg.dataset.noise, "a float >= 0")
    _check(cfg.wandb.mode in WANDB_MODES, "wandb.mode", cfg.wandb.mode,
           f"one of {', '.join(WANDB_MODES)}")
    _check(cfg.sample.n >= 1, "sample.n", cfg.sample.n, "an integer >= 1")
    _check(cfg.sample.steps >= 1, "sample.steps", cfg.sample.steps, "an integer >= 1")
    _check(cfg.sample.solver in SOLVERS, "sample.solver", cfg.sample.solver,
           f"one of {', '.join(SOLVERS)}")
    _check(cfg.name is None or (cfg.name.strip() != "" and "/" not in cfg.name), "name", cfg.name,
           "a non-empty run name without '/'")


def derive_name(cfg: Config) -> str:
    return f"{cfg.arch.name}-{cfg.flow.name}-{cfg.dataset.name}-{cfg.aug.name}"


def load_config(cfg: DictConfig) -> Config:
    """Hydra's composed DictConfig -> a validated, fully resolved dataclass tree."""
    config: Config = OmegaConf.to_object(cfg)  # type: ignore[assignment]
    for group, options in GROUP_SCHEMAS.items():
        node = getattr(config, group)
        allowed = tuple(options.values())
        _check(isinstance(node, allowed), group, getattr(node, "name", node),
               f"a config built on its schema (conf/{group}/<option>.yaml must list "
               f"'- <option>_schema' in its defaults)")
    validate(config)
    if config.name is None:
        config.name = derive_name(config)
    return config


def to_dict(cfg: Config) -> dict[str, Any]:
    """Plain, JSON-ready dict of the resolved config (for checkpoints, result.json and W&B)."""
    return dataclasses.asdict(cfg)


register_configs()
