"""Typed configuration: the dataclass schemas Hydra validates every YAML against, the rule each
field must meet (declared beside the field; validation and ``--help`` both read it), and the
derived run name.

Each config group option (``conf/<group>/<option>.yaml``) starts from its schema through its
defaults list (``- /mlp_schema@_here_``), so a typo or a wrong type in a YAML or on the command
line fails at composition, and the training code receives plain dataclass instances. The schemas
are stored at the root of Hydra's ConfigStore, outside the groups, so ``arch=<TAB>`` and error
messages offer only the options users pick.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
from hydra.core.config_store import ConfigStore
from omegaconf import II, MISSING, DictConfig, OmegaConf

from flowstudy.errors import ConfigError
from flowstudy.metrics import OBJECTIVES

# --- rules: what a field allows, said once for the error message and --help ---------------------


@dataclass(frozen=True)
class Rule:
    text: str  # as the error and --help say it: "a float > 0"
    ok: Callable[[Any], bool]

    def or_null(self, meaning: str) -> Rule:
        return Rule(f"{self.text}, or null {meaning}", lambda v: v is None or self.ok(v))


def checked(default: Any, rule: Rule) -> Any:
    """A dataclass field with its rule (a list field: ``field(..., metadata={"rule": rule})``)."""
    return field(default=default, metadata={"rule": rule})


def ints(low: int, high: int | None = None, why: str = "") -> Rule:
    text = f"an integer >= {low}" if high is None else f"an integer from {low} to {high}"
    return Rule(text + (f" ({why})" if why else ""),
                lambda v: v >= low and (high is None or v <= high))


# Every float rule also requires a finite value: inf passes "> 0" but trains nothing sensible.
def floats(low: float, high: float | None = None, *, open_low: bool = False,
           open_high: bool = False) -> Rule:
    if high is None:
        text = f"a float {'>' if open_low else '>='} {low:g}"
    else:
        text = f"a float in {'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"

    def ok(v: float) -> bool:
        return (math.isfinite(v) and (v > low if open_low else v >= low)
                and (high is None or (v < high if open_high else v <= high)))

    return Rule(text, ok)


def one_of(*choices: str) -> Rule:
    return Rule(f"one of {', '.join(choices)}", lambda v: v in choices)


POSITIVE = ints(1)
POSITIVE_FLOAT = floats(0, open_low=True)
NON_NEGATIVE_FLOAT = floats(0)
# numpy seeds are 32-bit; a run also seeds a generator with seed + 1.
SEED = ints(0, 2**32 - 2, "numpy's seed range")
# Evaluation sizes: W2 solves an exact n x n assignment and the Frechet distance eigendecomposes
# D x D matrices, both in float64; beyond these they take tens of GB or hours.
MAX_EVAL_POINTS = 10_000
MAX_EVAL_DIM = 8_192
# k-NN precision/recall needs k + 1 = 4 points in each set it scores.
MIN_EVAL_POINTS = 4
# A path component on every filesystem, and never "." or "..".
RUN_NAME = Rule("a run name of letters, digits and . _ - + = , starting with a letter or digit "
                "(at most 128 characters)",
                lambda v: re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+=,-]{0,127}", v) is not None)
# Split sizes: auto (null) or explicit.
N_VAL = POSITIVE.or_null("for a tenth of the rows (100 to 2,000)")
N_TEST = ints(MIN_EVAL_POINTS, why="k-NN precision/recall").or_null(
    "for a tenth of the rows (100 to 2,000)")
# W&B refuses these after training has started; say so before.
WANDB_PROJECT = Rule("at most 128 characters, none of / \\ # ? % :",
                     lambda v: 0 < len(v) <= 128 and not set(v) & set("/\\#?%:"))
WANDB_TAGS = Rule("a list of tags of 1 to 64 characters each",
                  lambda v: all(0 < len(t) <= 64 for t in v))

SOLVERS = ("euler", "midpoint", "rk4", "dopri5")  # = flowstudy.flows.solvers (a test checks)
SOURCES_2D = ("8gaussians", "checkerboard", "circles", "moons", "scurve", "swissroll")

# --- group schemas: one base per group; options with different fields get their own subclass ----
# Options sharing a schema (e.g. the 2-d datasets) differ only by values set in their YAML.


@dataclass
class ArchConfig:
    name: str = MISSING


@dataclass
class MLPConfig(ArchConfig):
    # null: the data dim rounded up to a multiple of 256 (2-d: 256)
    width: int | None = checked(None, POSITIVE.or_null("for the data dim rounded up to 256s"))
    depth: int = checked(3, POSITIVE)  # residual blocks


@dataclass
class DiTConfig(ArchConfig):
    # token width; null: 2 x patch rounded up to a multiple of 64
    dim: int | None = checked(None, POSITIVE.or_null("for 2 x patch rounded up to 64s"))
    depth: int = checked(2, POSITIVE)  # transformer blocks
    heads: int = checked(4, POSITIVE)
    # vector dims per token; null: ceil(D / 16), i.e. at most 16 tokens
    patch: int | None = checked(None, POSITIVE.or_null("for ceil(D / 16)"))
    mlp_ratio: float = checked(2.0, POSITIVE_FLOAT)


@dataclass
class UNetConfig(ArchConfig):
    channels: int = checked(16, POSITIVE)
    # Channel multiplier per level; null: [1, 2, 2, ...] with enough levels (at least 3) that
    # the coarsest sees at most 16 positions, so every dim can reach every other.
    mults: list[int] | None = field(default=None, metadata={"rule": Rule(
        "a non-empty list of integers >= 1, or null to fit the data dim",
        lambda v: v is None or (len(v) > 0 and min(v) >= 1))})
    blocks: int = checked(1, POSITIVE)  # residual blocks per level


@dataclass
class FlowConfig:
    name: str = MISSING


@dataclass
class OTFlowConfig(FlowConfig):
    sigma_min: float = checked(0.0, floats(0, 1, open_high=True))


@dataclass
class CFMFlowConfig(FlowConfig):
    sigma: float = checked(0.1, NON_NEGATIVE_FLOAT)


@dataclass
class CoupledFlowConfig(FlowConfig):
    """Flows whose (x0, x1) pairing is solved per minibatch (minibatch_ot, sb)."""

    sigma: float = checked(0.1, NON_NEGATIVE_FLOAT)
    # Batches paired ahead of the training step in a background thread (0: pair inline).
    prefetch: int = checked(4, ints(0))
    sinkhorn_iters: int = checked(1000, POSITIVE)  # sb only: most iterations of the solver


@dataclass
class DatasetConfig:
    name: str = MISSING
    # a seeded subset of the train split (null: all of it)
    n_train: int | None = checked(None, POSITIVE.or_null("for the whole train split"))
    # null: a tenth of the rows each, at least 100 and at most 2,000 (the exact W2 costs n^3),
    # and never more than a quarter, so at least half the rows train
    n_val: int | None = checked(None, N_VAL)
    n_test: int | None = checked(None, N_TEST)
    # Seeds the data and its split, apart from the run seed, so every run of a study sees the
    # same train/val/test points whatever its own seed.
    seed: int = checked(0, SEED)
    # From the train split: standard (per-dim mean/std) | robust (per-dim median/IQR) | global
    normalize: str = checked("standard", one_of("standard", "robust", "global"))


@dataclass
class Toy2DConfig(DatasetConfig):
    # points generated; the train split is what val and test leave
    size: int = checked(22_000, POSITIVE)
    n_val: int | None = checked(1_000, N_VAL)
    n_test: int | None = checked(1_000, N_TEST)
    # Gaussian noise added to the points; null: the dataset's own
    noise: float | None = checked(None, NON_NEGATIVE_FLOAT.or_null("for the dataset's default"))
    # N(0, I), or another 2-d dataset (8gaussians -> moons)
    source: str = checked("gaussian", one_of("gaussian", *SOURCES_2D))


@dataclass
class DigitsConfig(DatasetConfig):
    n_val: int | None = checked(200, N_VAL)
    n_test: int | None = checked(200, N_TEST)


@dataclass
class EmbeddingsConfig(DatasetConfig):
    path: str = MISSING  # .pt tensor or .npy array of shape [N, D]


@dataclass
class SphereConfig(DatasetConfig):
    size: int = checked(22_000, POSITIVE)
    dim: int = checked(1024, ints(1, MAX_EVAL_DIM, "the Frechet distance's D x D matrices"))
    clusters: int = checked(16, POSITIVE)
    # norm of the Gaussian offset from a cluster centre, before projection
    spread: float = checked(0.5, NON_NEGATIVE_FLOAT)


@dataclass
class AugConfig:
    name: str = MISSING


@dataclass
class NoiseAugConfig(AugConfig):
    std: float = checked(0.05, NON_NEGATIVE_FLOAT)  # in normalised units


@dataclass
class MixupAugConfig(AugConfig):
    alpha: float = checked(0.2, POSITIVE_FLOAT)  # mixing weights ~ Beta(alpha, alpha)


# --- top-level sections -------------------------------------------------------------------------


@dataclass
class BudgetConfig:
    """Compute budgets (flowstudy.budget): at most one set; the run stops at it and its cosine
    schedule ends there (warmup unchanged). epochs and early stopping still apply."""

    # FLOPs of training: floor(flops / FLOPs per step) steps, the step counted at build
    flops: float | None = checked(None, POSITIVE_FLOAT.or_null("for no FLOP budget"))
    steps: int | None = checked(None, POSITIVE.or_null("for no step budget"))
    # Wall time of training, validation included; not comparable across machines
    seconds: float | None = checked(None, POSITIVE_FLOAT.or_null("for no time budget"))


@dataclass
class TrainConfig:
    epochs: int = checked(100, POSITIVE)
    # drop_last: every step sees a full batch; null: 256, or the train split rounded down to a
    # multiple of accum_steps x ranks where it has fewer points
    batch_size: int | None = checked(None, POSITIVE.or_null(
        "for 256, or the train split where smaller"))
    # An epoch (one validation, one patience count) is as many passes over the train split as
    # it takes to make at least this many optimizer steps; null: ceil(warmup_steps / 20), so
    # warmup ends within the first 20 epochs however small the data.
    min_epoch_steps: int | None = checked(None, POSITIVE.or_null("for ceil(warmup_steps / 20)"))
    lr: float = checked(2e-3, POSITIVE_FLOAT)
    weight_decay: float = checked(0.0, NON_NEGATIVE_FLOAT)
    warmup_steps: int = checked(1000, ints(0))
    min_lr_ratio: float = checked(0.05, floats(0, 1))
    grad_clip: float = checked(1.0, POSITIVE_FLOAT)
    ema_decay: float = checked(0.9999, floats(0, 1, open_low=True, open_high=True))
    # EMA warmup: decay_k = min(ema_decay, 1 - (1 + k) ** -ema_power) after k updates, so early
    # on the average spans ~(1 + k) ** ema_power recent steps instead of the initial weights;
    # null switches it off.
    ema_power: float | None = checked(2 / 3, POSITIVE_FLOAT.or_null("for no EMA warmup"))
    # which val loss drives early stopping and the best checkpoint
    monitor: str = checked("ema", one_of("ema", "raw"))
    patience: int = checked(20, POSITIVE)  # epochs without improvement, counted after warmup
    min_delta: float = checked(0.0, NON_NEGATIVE_FLOAT)
    log_every: int = checked(10, POSITIVE)
    device: str = checked("auto", Rule("auto, cpu, cuda or cuda:N", lambda v: v in (
        "auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", v) is not None))
    # torch intra-op threads; null: the cores this process may use, shared among parallel jobs
    threads: int | None = checked(None, POSITIVE.or_null("for this process's cores"))
    # fp32 | bf16 (autocast, CPU or CUDA) | fp16 (autocast + scaler, CUDA)
    precision: str = checked("fp32", one_of("fp32", "bf16", "fp16"))
    # batch_size is the global batch of one optimizer step; each of accum_steps micro-batches
    # takes batch_size / (accum_steps * ranks) of it.
    accum_steps: int = checked(1, POSITIVE)
    compile: bool = False  # torch.compile the model (eager, with a warning, where unavailable)
    # CUDA: capture the whole step in a CUDA graph and replay it (eager, with a warning naming
    # why, where a configuration cannot be captured)
    cuda_graph: bool = False
    tf32: bool = True  # CUDA: fp32 matmuls and convolutions on TF32 tensor cores
    deterministic: bool = False  # deterministic algorithms only (and cuBLAS workspace on CUDA)
    # A step whose gradient norm is NaN/Inf is skipped; this many in a row stop the run (diverged).
    nan_patience: int = checked(10, POSITIVE)
    # log per-tensor gradient statistics every N steps (0: never)
    grad_stats_every: int = checked(0, ints(0, why="0: off"))
    # Train (and validate) on the same first N batches every epoch, with the same noise and
    # times every time: a model that cannot drive this loss to ~0 has a bug (debug=overfit).
    overfit_batches: int = checked(0, ints(0, why="0: off"))
    # Record a torch.profiler trace of this many steps (after 1 skipped, 1 warm-up) next to the
    # checkpoints (debug=profile); 0: off.
    profile_steps: int = checked(0, ints(0, why="0: off"))
    # Stop every run at the same measured cost: flops, steps or seconds (at most one)
    budget: BudgetConfig = field(default_factory=BudgetConfig)


@dataclass
class CheckpointConfig:
    dir: str = II("study_dir") + "/checkpoints"
    save_last: bool = False


@dataclass
class WandbConfig:
    project: str = checked("flow-matching-study", WANDB_PROJECT)
    entity: str | None = checked(None, WANDB_PROJECT.or_null("for your default entity"))
    mode: str = checked("offline", one_of("offline", "online", "disabled"))
    tags: list[str] = field(default_factory=list, metadata={"rule": WANDB_TAGS})
    quiet: bool = True  # W&B's own terminal output off (flowstudy prints where the run went)


@dataclass
class SampleConfig:
    # null: the size of the test split, so W2 is exact
    n: int | None = checked(None, ints(
        MIN_EVAL_POINTS, MAX_EVAL_POINTS, "W2 is an exact n x n assignment").or_null(
        "for the test split's size"))
    steps: int = checked(100, POSITIVE)  # fixed-step solvers; dopri5 adapts its own steps
    solver: str = checked("euler", one_of(*SOLVERS))
    atol: float = checked(1e-5, POSITIVE_FLOAT)
    rtol: float = checked(1e-5, POSITIVE_FLOAT)
    # Test negative log-likelihood in nats/dim, data space, through the ODE (README "Sample
    # quality"): on 1,000 points, a few seconds on one CPU thread with the default MLP.
    likelihood: bool = True
    likelihood_n: int = checked(1000, POSITIVE)  # test points it scores (at most the test split)
    likelihood_steps: int = checked(20, POSITIVE)  # rk4 steps from each test point back to t=0
    # exact (a backward pass per dim) | hutchinson | auto: exact up to 8-d
    divergence: str = checked("auto", one_of("auto", "exact", "hutchinson"))
    hutchinson_probes: int = checked(1, POSITIVE)  # Rademacher probes per point, from dataset.seed


@dataclass
class EvalConfig:
    """``python -m flowstudy.sample``: a checkpoint, and the ``sample.*`` keys to change from
    what its run used (keys not given on the command line keep the run's values)."""

    resume: str = MISSING  # the checkpoint to sample from (relative to where you run)
    seed: int | None = None  # sampling seed; null: the run's seed
    sample: SampleConfig = field(default_factory=SampleConfig)
    save_samples: bool = True  # also write the samples themselves (.pt, data space)


@dataclass
class Config:
    arch: Any = MISSING
    flow: Any = MISSING
    dataset: Any = MISSING
    aug: Any = MISSING
    # The preset chosen (conf/experiment/<name>.yaml sets it): it prefixes the derived run name,
    # so a preset's runs never collide with runs of the plain defaults.
    experiment: str | None = None
    seed: int = checked(0, SEED)
    # run name; None derives [<experiment>-]<arch>-<flow>-<dataset>-<aug>
    name: str | None = checked(None, RUN_NAME.or_null("to derive it"))
    group: str = checked("default", RUN_NAME)  # W&B group; set by the chosen ablation
    # A checkpoint to continue from; auto: this run's last.pt if an unfinished run left one
    resume: str | None = None
    force: bool = False  # replace an existing run of the same name instead of refusing
    study_dir: str = "study"
    # What a sweep reports per job and a hyperparameter search optimises: best_val_loss or a
    # sample metric (its direction follows from the metric).
    objective: str = checked("best_val_loss", one_of(*OBJECTIVES))
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


SECTIONS: dict[str, type] = {c.__name__: c for c in (TrainConfig, BudgetConfig,
                                                      CheckpointConfig, WandbConfig,
                                                      SampleConfig)}


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    cs.store(name="base_eval_config", node=EvalConfig)
    # At the root, not in the groups: shell completion lists a group's ConfigStore entries too.
    for schemas in GROUP_SCHEMAS.values():
        for schema_name, schema in schemas.items():
            cs.store(name=schema_name, node=schema)
    # --help lists the options users pick from (the YAML files), not the schemas behind them.
    OmegaConf.register_new_resolver("flowstudy_groups", group_options_text, replace=True)
    OmegaConf.register_new_resolver("flowstudy_rules", rules_text, replace=True)
    # hparams_search=: hydra.sweeper.direction follows from the objective's metric.
    OmegaConf.register_new_resolver("flowstudy_direction", objective_direction, replace=True)


def group_options(group: str) -> tuple[str, ...]:
    """The options of a config group: its YAML files, which name themselves in ``name``."""
    return tuple(sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml")))


def group_options_text() -> str:
    groups = sorted(d.name for d in CONF_DIR.iterdir() if d.is_dir())
    return "\n".join(f"{g}: {', '.join(group_options(g))}" for g in groups)


# --- validation: each field's rule, then the rules that relate fields --------------------------


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
    budgets = {k: v for k, v in dataclasses.asdict(t.budget).items() if v is not None}
    _check(len(budgets) <= 1, "train.budget", ", ".join(f"{k}={v:g}" for k, v in budgets.items()),
           "at most one of train.budget.flops, train.budget.steps, train.budget.seconds")
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

    def walk(schema: type, prefix: str) -> None:
        for f in dataclasses.fields(schema):
            if "rule" in f.metadata:
                lines.setdefault(f"{prefix}{f.name}", f.metadata["rule"].text)
            elif isinstance(f.type, str) and f.type in SECTIONS:
                walk(SECTIONS[f.type], f"{prefix}{f.name}.")

    walk(Config, "")
    for group, schemas in GROUP_SCHEMAS.items():
        for schema in schemas.values():
            walk(schema, f"{group}.")
    width = max(map(len, lines))
    return "\n".join(f"{key:<{width}}  {text}" for key, text in sorted(lines.items()))


# Keys that do not change a run's results; two runs differing only here are the same run.
NON_IDENTITY_KEYS = ("name", "group", "resume", "force", "study_dir", "checkpoint", "wandb",
                     "objective", "train.device", "train.threads", "train.log_every",
                     "train.grad_stats_every", "train.compile", "train.cuda_graph",
                     "train.profile_steps")
# Keys a suffix never names: those the base name already shows, and those outside identity.
UNNAMED_KEYS = ("experiment", "arch.name", "flow.name", "dataset.name", "aug.name",
                "dataset.n_train", "dataset.source", "dataset.path", *NON_IDENTITY_KEYS)


def _format_value(value: Any) -> str:
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
        return "x".join(_format_value(v) for v in value)
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
    parts = sorted(f"{labels[k]}{_format_value(v)}" for k, v in values.items())
    return "".join(f"-{p}" for p in parts)


def named_changes(current: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any]:
    """The leaves of ``current`` that differ from ``reference`` and change results, minus those
    the base name shows: what a run name must add (to the defaults, or to a resumed parent)."""
    ref = leaves(reference)
    return {k: v for k, v in leaves(current).items()
            if not any(k == u or k.startswith(f"{u}.") for u in UNNAMED_KEYS)
            and (k not in ref or ref[k] != v)}


def option_defaults(group: str, option: str) -> dict[str, Any]:
    """A group option as its YAML composes it: its schema's defaults, then the YAML's values."""
    yaml = OmegaConf.to_container(OmegaConf.load(CONF_DIR / group / f"{option}.yaml"))
    schema = GROUP_SCHEMAS[group][yaml.pop("defaults")[0].strip("/").removesuffix("@_here_")]
    return {**dataclasses.asdict(schema()), **yaml}


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
    default."""
    base = f"{cfg.arch.name}-{cfg.flow.name}-{dataset_label(cfg.dataset)}-{cfg.aug.name}"
    if cfg.experiment is not None:
        base = f"{cfg.experiment}-{base}"
    return base + name_suffix(changed or {}, leaves(to_dict(cfg)))


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


def to_dict(cfg: Config) -> dict[str, Any]:
    """Plain, JSON-ready dict of the resolved config (for checkpoints, result.json and W&B)."""
    return dataclasses.asdict(cfg)


register_configs()
