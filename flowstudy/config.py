"""Typed configuration: the dataclass schemas Hydra validates every YAML against, the range checks
its type system cannot express, and the derived run name.

Each config group option (``conf/<group>/<option>.yaml``) starts from its schema through its
defaults list (``- /mlp_schema@_here_``), so a typo or a wrong type in a YAML or on the command
line fails at composition, and the training code receives plain dataclass instances. The schemas
are stored at the root of Hydra's ConfigStore, outside the groups, so ``arch=<TAB>`` and error
messages offer only the options users pick.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
from hydra.core.config_store import ConfigStore
from omegaconf import II, MISSING, DictConfig, OmegaConf

from flowstudy.errors import ConfigError

# --- group schemas: one base per group; options with different fields get their own subclass ----
# Options sharing a schema (e.g. the 2-d datasets) differ only by values set in their YAML.


@dataclass
class ArchConfig:
    name: str = MISSING


@dataclass
class MLPConfig(ArchConfig):
    width: int = 256
    depth: int = 3  # residual blocks


@dataclass
class DiTConfig(ArchConfig):
    dim: int = 64  # token width
    depth: int = 2  # transformer blocks
    heads: int = 4
    patch: int | None = None  # vector dims per token; null: ceil(D / 8), i.e. at most 8 tokens
    mlp_ratio: float = 2.0


@dataclass
class UNetConfig(ArchConfig):
    channels: int = 16
    mults: list[int] = field(default_factory=lambda: [1, 2, 2])  # channel multiplier per level
    blocks: int = 1  # residual blocks per level


@dataclass
class FlowConfig:
    name: str = MISSING


@dataclass
class OTFlowConfig(FlowConfig):
    sigma_min: float = 0.0


@dataclass
class CFMFlowConfig(FlowConfig):
    sigma: float = 0.1


@dataclass
class CoupledFlowConfig(FlowConfig):
    """Flows whose (x0, x1) pairing is solved per minibatch (minibatch_ot, sb)."""

    sigma: float = 0.1
    # Batches paired ahead of the training step in a background thread (0: pair inline).
    prefetch: int = 4
    sinkhorn_iters: int = 1000  # sb only: most iterations of the entropic OT solver


@dataclass
class DatasetConfig:
    name: str = MISSING
    n_train: int | None = None  # a seeded subset of the train split (null: all of it)
    n_val: int = 1_000
    n_test: int = 1_000
    # Seeds the data and its split, apart from the run seed, so every run of a study sees the
    # same train/val/test points whatever its own seed.
    seed: int = 0
    # From the train split: standard (per-dim mean/std) | robust (per-dim median/IQR) | global
    normalize: str = "standard"


@dataclass
class Toy2DConfig(DatasetConfig):
    size: int = 22_000  # points generated; the train split is what val and test leave
    noise: float | None = None  # Gaussian noise added to the points; null: the dataset's own
    source: str = "gaussian"  # N(0, I), or another 2-d dataset (8gaussians -> moons)


@dataclass
class DigitsConfig(DatasetConfig):
    n_val: int = 200
    n_test: int = 200


@dataclass
class EmbeddingsConfig(DatasetConfig):
    path: str = MISSING  # .pt tensor or .npy array of shape [N, D]


@dataclass
class SphereConfig(DatasetConfig):
    size: int = 22_000
    dim: int = 1024
    clusters: int = 16
    spread: float = 0.5  # norm of the Gaussian offset from a cluster centre, before projection


@dataclass
class AugConfig:
    name: str = MISSING


@dataclass
class NoiseAugConfig(AugConfig):
    std: float = 0.05  # in normalised units


@dataclass
class MixupAugConfig(AugConfig):
    alpha: float = 0.2  # mixing weights ~ Beta(alpha, alpha)


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
    # torch intra-op threads; null: the cores this process may use, shared among parallel jobs
    threads: int | None = None
    precision: str = "fp32"  # fp32 | bf16 (autocast, CPU or CUDA) | fp16 (autocast + scaler, CUDA)
    # batch_size is the global batch of one optimizer step; each of accum_steps micro-batches
    # takes batch_size / (accum_steps * ranks) of it.
    accum_steps: int = 1
    compile: bool = False  # torch.compile the model (eager, with a warning, where unavailable)
    deterministic: bool = False  # deterministic algorithms only (and cuBLAS workspace on CUDA)
    # A step whose gradient norm is NaN/Inf is skipped; this many in a row stop the run (diverged).
    nan_patience: int = 10
    grad_stats_every: int = 0  # log per-tensor gradient statistics every N steps (0: never)
    # Train (and validate) on the same first N batches every epoch, with the same noise and
    # times every time: a model that cannot drive this loss to ~0 has a bug (debug=overfit).
    overfit_batches: int = 0
    # Record a torch.profiler trace of this many steps (after 1 skipped, 1 warm-up) next to the
    # checkpoints (debug=profile); 0: off.
    profile_steps: int = 0


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
    quiet: bool = True  # W&B's own terminal output off (flowstudy prints where the run went)


@dataclass
class SampleConfig:
    n: int = II("dataset.n_test")  # equal to the test split, so W2 is exact
    steps: int = 100  # fixed-step solvers; dopri5 adapts its own steps to atol/rtol
    solver: str = "euler"  # euler | midpoint | rk4 | dopri5
    atol: float = 1e-5
    rtol: float = 1e-5


@dataclass
class Config:
    arch: Any = MISSING
    flow: Any = MISSING
    dataset: Any = MISSING
    aug: Any = MISSING
    seed: int = 0
    name: str | None = None  # run name; None derives <arch>-<flow>-<dataset>-<aug>
    group: str = "default"  # W&B group; set by the chosen ablation
    # A checkpoint to continue from; auto: this run's last.pt if an unfinished run left one
    resume: str | None = None
    force: bool = False  # replace an existing run of the same name instead of refusing
    study_dir: str = "study"
    # What a sweep reports per job and a hyperparameter search optimises: best_val_loss or a
    # sample metric (its direction follows from the metric).
    objective: str = "best_val_loss"
    train: TrainConfig = field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)


def _conf_dir() -> Path:
    """``conf/`` of the checkout (source tree or editable install), else the copy a wheel carries
    inside the package (pyproject.toml maps ``conf/`` to ``flowstudy/conf``)."""
    checkout = Path(__file__).resolve().parents[1] / "conf"
    return checkout if checkout.is_dir() else Path(str(files("flowstudy") / "conf"))


CONF_DIR = _conf_dir()

# group -> schema name (as the YAMLs' defaults list it: ``- /<schema>@_here_``) -> dataclass
GROUP_SCHEMAS: dict[str, dict[str, type]] = {
    "arch": {"mlp_schema": MLPConfig, "dit_schema": DiTConfig, "unet_schema": UNetConfig},
    "flow": {"ot_schema": OTFlowConfig, "cfm_schema": CFMFlowConfig,
             "coupled_schema": CoupledFlowConfig, "flow_schema": FlowConfig},
    "dataset": {"toy2d_schema": Toy2DConfig, "digits_schema": DigitsConfig,
                "embeddings_schema": EmbeddingsConfig, "sphere_schema": SphereConfig},
    "aug": {"aug_schema": AugConfig, "noise_schema": NoiseAugConfig,
            "mixup_schema": MixupAugConfig},
}


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    # At the root, not in the groups: shell completion lists a group's ConfigStore entries too.
    for schemas in GROUP_SCHEMAS.values():
        for schema_name, schema in schemas.items():
            cs.store(name=schema_name, node=schema)
    # --help lists the options users pick from (the YAML files), not the schemas behind them.
    OmegaConf.register_new_resolver("flowstudy_groups", group_options_text, replace=True)
    # hparams_search=: hydra.sweeper.direction follows from the objective's metric.
    OmegaConf.register_new_resolver("flowstudy_direction", objective_direction, replace=True)


def group_options(group: str) -> tuple[str, ...]:
    """The options of a config group: its YAML files, which name themselves in ``name``."""
    return tuple(sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml")))


def group_options_text() -> str:
    groups = sorted(d.name for d in CONF_DIR.iterdir() if d.is_dir())
    return "\n".join(f"{g}: {', '.join(group_options(g))}" for g in groups)


# --- checks Hydra cannot express ----------------------------------------------------------------

# What a sweep can optimise: the best validation loss, or a sample metric of the best weights.
OBJECTIVES = {"best_val_loss": "minimize", "w2": "minimize", "mmd": "minimize", "fd": "minimize",
              "precision": "maximize", "recall": "maximize"}


def objective_direction(objective: str) -> str:
    _one_of("objective", objective, tuple(OBJECTIVES))
    return OBJECTIVES[objective]


WANDB_MODES = ("offline", "online", "disabled")
SOLVERS = ("euler", "midpoint", "rk4", "dopri5")  # = flowstudy.flows.solvers (a test checks)
MONITORS = ("ema", "raw")
PRECISIONS = ("fp32", "bf16", "fp16")
NORMALIZERS = ("standard", "robust", "global")
SOURCES_2D = ("8gaussians", "checkerboard", "circles", "moons", "swissroll")


def _check(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(key, value, allowed)


def _one_of(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    _check(value in allowed, key, value, f"one of {', '.join(allowed)}")


def _positive_ints(section: str, node: Any) -> None:
    for key, value in dataclasses.asdict(node).items():
        values = value if isinstance(value, list) else [value]
        for v in values:
            if isinstance(v, int) and not isinstance(v, bool):
                _check(v >= 1, f"{section}.{key}", value, "integers >= 1")


def validate(cfg: Config) -> None:
    """Range and choice checks, run before any work starts."""
    t, d, a, f = cfg.train, cfg.dataset, cfg.arch, cfg.flow
    for group in ("arch", "flow", "dataset", "aug"):
        _one_of(f"{group}.name", getattr(cfg, group).name, group_options(group))
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
    _one_of("train.monitor", t.monitor, MONITORS)
    _check(t.patience >= 1, "train.patience", t.patience, "an integer >= 1")
    _check(t.min_delta >= 0, "train.min_delta", t.min_delta, "a float >= 0")
    _check(t.log_every >= 1, "train.log_every", t.log_every, "an integer >= 1")
    _check(t.threads is None or t.threads >= 1, "train.threads", t.threads,
           "an integer >= 1, or null for this process's cores")
    _one_of("train.precision", t.precision, PRECISIONS)
    _check(t.accum_steps >= 1, "train.accum_steps", t.accum_steps, "an integer >= 1")
    _check(t.batch_size % t.accum_steps == 0, "train.batch_size", t.batch_size,
           f"a multiple of train.accum_steps={t.accum_steps}")
    _check(t.nan_patience >= 1, "train.nan_patience", t.nan_patience, "an integer >= 1")
    _check(t.grad_stats_every >= 0, "train.grad_stats_every", t.grad_stats_every,
           "an integer >= 0 (0: off)")
    _check(t.overfit_batches >= 0, "train.overfit_batches", t.overfit_batches,
           "an integer >= 0 (0: off)")
    _check(t.profile_steps >= 0, "train.profile_steps", t.profile_steps,
           "an integer >= 0 (0: off)")
    _check(t.device in ("auto", "cpu", "cuda") or t.device.startswith("cuda:"), "train.device",
           t.device, "auto, cpu, cuda or cuda:N")

    _positive_ints("arch", a)
    if isinstance(a, DiTConfig):
        _check(a.dim % a.heads == 0, "arch.dim", a.dim, f"a multiple of arch.heads={a.heads}")
        _check(a.mlp_ratio > 0, "arch.mlp_ratio", a.mlp_ratio, "a float > 0")

    if isinstance(f, OTFlowConfig):
        _check(0 <= f.sigma_min < 1, "flow.sigma_min", f.sigma_min, "a float in [0, 1)")
    if isinstance(f, (CFMFlowConfig, CoupledFlowConfig)):
        _check(f.sigma >= 0, "flow.sigma", f.sigma, "a float >= 0")
    if isinstance(f, CoupledFlowConfig):
        _check(f.prefetch >= 0, "flow.prefetch", f.prefetch, "an integer >= 0")
        _check(f.sinkhorn_iters >= 1, "flow.sinkhorn_iters", f.sinkhorn_iters, "an integer >= 1")
        if f.name == "sb":
            _check(f.sigma > 0, "flow.sigma", f.sigma,
                   "a float > 0 (sb's entropic reg is 2 sigma^2)")

    _check(d.n_train is None or d.n_train >= 1, "dataset.n_train", d.n_train,
           "an integer >= 1, or null for the whole train split")
    _check(d.n_val >= 1, "dataset.n_val", d.n_val, "an integer >= 1")
    _check(d.n_test >= 1, "dataset.n_test", d.n_test, "an integer >= 1")
    _one_of("dataset.normalize", d.normalize, NORMALIZERS)
    if isinstance(d, (Toy2DConfig, SphereConfig)):
        _check(d.size > d.n_val + d.n_test, "dataset.size", d.size,
               f"more than n_val + n_test = {d.n_val + d.n_test}")
    if isinstance(d, Toy2DConfig):
        _check(d.noise is None or d.noise >= 0, "dataset.noise", d.noise,
               "a float >= 0, or null for the dataset's default")
        _one_of("dataset.source", d.source, ("gaussian", *SOURCES_2D))
    if isinstance(d, SphereConfig):
        for key in ("dim", "clusters"):
            _check(getattr(d, key) >= 1, f"dataset.{key}", getattr(d, key), "an integer >= 1")
        _check(d.spread >= 0, "dataset.spread", d.spread, "a float >= 0")

    if isinstance(cfg.aug, NoiseAugConfig):
        _check(cfg.aug.std >= 0, "aug.std", cfg.aug.std, "a float >= 0")
    if isinstance(cfg.aug, MixupAugConfig):
        _check(cfg.aug.alpha > 0, "aug.alpha", cfg.aug.alpha, "a float > 0")

    s = cfg.sample
    _check(s.n >= 1, "sample.n", s.n, "an integer >= 1")
    _check(s.steps >= 1, "sample.steps", s.steps, "an integer >= 1")
    _one_of("sample.solver", s.solver, SOLVERS)
    _check(s.atol > 0, "sample.atol", s.atol, "a float > 0")
    _check(s.rtol > 0, "sample.rtol", s.rtol, "a float > 0")
    _one_of("wandb.mode", cfg.wandb.mode, WANDB_MODES)
    _one_of("objective", cfg.objective, tuple(OBJECTIVES))
    _check(cfg.name is None or (cfg.name.strip() != "" and "/" not in cfg.name), "name", cfg.name,
           "a non-empty run name without '/'")


# Keys a suffix never names: they are already in the base name, or do not change what is trained.
UNNAMED_KEYS = ("arch", "flow", "dataset", "aug", "ablation", "dataset.n_train", "dataset.source",
                "dataset.path", "name", "group", "resume", "force", "study_dir", "checkpoint",
                "wandb", "hydra", "objective", "train.device", "train.threads", "train.log_every",
                "train.grad_stats_every", "train.compile", "train.profile_steps")
# Keys that do not change a run's results; two runs differing only here are the same run.
NON_IDENTITY_KEYS = ("name", "group", "resume", "force", "study_dir", "checkpoint", "wandb",
                     "objective", "train.device", "train.threads", "train.log_every",
                     "train.grad_stats_every", "train.compile", "train.profile_steps")


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if value != 0 and not 1e-2 <= abs(value) < 1e4:  # shortest exact form: 3e-4, 1.25e-5
            mantissa, exponent = np.format_float_scientific(value, trim="-").split("e")
            return f"{mantissa}e{int(exponent)}"
        return repr(value).removesuffix(".0")
    if isinstance(value, list):
        return "x".join(_format_value(v) for v in value)
    return str(value).replace("/", "_")


def name_suffix(swept: dict[str, Any]) -> str:
    """``-lr3e-4-seed1`` for swept keys {train.lr: 3e-4, seed: 1}: the last part of each key,
    the whole key where two last parts would clash, sorted by label."""
    last = [k.rsplit(".", 1)[-1] for k in swept]
    labels = {k: (k.rsplit(".", 1)[-1] if last.count(k.rsplit(".", 1)[-1]) == 1
                  else k.replace(".", "_")) for k in swept}
    parts = sorted(f"{labels[k]}{_format_value(v)}" for k, v in swept.items())
    return "".join(f"-{p}" for p in parts)


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


def derive_name(cfg: Config, swept: dict[str, Any] | None = None) -> str:
    """``<arch>-<flow>-<dataset>-<aug>``, then a suffix for each swept value off its default."""
    base = f"{cfg.arch.name}-{cfg.flow.name}-{dataset_label(cfg.dataset)}-{cfg.aug.name}"
    return base + name_suffix(swept or {})


def load_config(cfg: DictConfig, swept: dict[str, Any] | None = None) -> Config:
    """Hydra's composed DictConfig -> a validated, fully resolved dataclass tree.

    ``swept`` (key -> value of the swept keys that differ from their defaults) extends the
    derived run name."""
    config: Config = OmegaConf.to_object(cfg)  # type: ignore[assignment]
    for group, schemas in GROUP_SCHEMAS.items():
        node = getattr(config, group)
        _check(isinstance(node, tuple(schemas.values())), group, getattr(node, "name", node),
               f"a config built on a schema (conf/{group}/<option>.yaml must list one of "
               f"{', '.join(f'/{s}@_here_' for s in schemas)} in its defaults)")
    validate(config)
    if config.name is None:
        config.name = derive_name(config, swept)
    return config


def to_dict(cfg: Config) -> dict[str, Any]:
    """Plain, JSON-ready dict of the resolved config (for checkpoints, result.json and W&B)."""
    return dataclasses.asdict(cfg)


register_configs()
