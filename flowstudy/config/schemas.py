"""The dataclass schemas Hydra validates every YAML against, each field with its rule beside it.

Each config group option (``conf/<group>/<option>.yaml``) starts from its schema through its
defaults list (``- /mlp_schema@_here_``), so a typo or a wrong type in a YAML or on the command
line fails at composition, and the training code receives plain dataclass instances.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from omegaconf import II, MISSING

from flowstudy.config.rules import (
    EMA_DECAY,
    EMA_POWER,
    FINITE_FLOAT,
    MAX_EVAL_DIM,
    MAX_EVAL_POINTS,
    MIN_EVAL_POINTS,
    MIN_MONITOR_POINTS,
    N_TEST,
    N_VAL,
    NON_NEGATIVE_FLOAT,
    POSITIVE,
    POSITIVE_FLOAT,
    RUN_NAME,
    SEED,
    SOLVERS,
    SOURCES_2D,
    TIME_SAMPLINGS,
    WANDB_PROJECT,
    WANDB_TAGS,
    Rule,
    checked,
    floats,
    ints,
    one_of,
)
from flowstudy.metrics import MONITORS, OBJECTIVES

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
    # How training draws t in [0, 1] (0: source, 1: data): uniform | logit_normal
    # (sigmoid(N(logit_loc, logit_scale)), as in SD3: most draws mid-path) | beta
    # (Beta(beta_a, beta_b); the default 2, 1 has density 2t, skewed towards the data). The
    # validation loss always draws t uniformly, so it compares across time samplings.
    time_sampling: str = checked("uniform", one_of(*TIME_SAMPLINGS))
    logit_loc: float = checked(0.0, FINITE_FLOAT)
    logit_scale: float = checked(1.0, POSITIVE_FLOAT)
    beta_a: float = checked(2.0, POSITIVE_FLOAT)
    beta_b: float = checked(1.0, POSITIVE_FLOAT)


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
    # (one mean/std for all dims, which keeps the shape of a sphere); null: global where the
    # train rows' norms vary by less than a tenth of their mean (sentence embeddings), else
    # standard (the resolved value is logged and stored in result.json)
    normalize: str | None = checked(None, one_of("standard", "robust", "global").or_null(
        "for global on concentrated norms, else standard"))


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
    # optimizer steps (applied or skipped), the same for every run whatever its size
    optimizer_steps: int | None = checked(None, POSITIVE.or_null("for no step budget"))
    # Wall time of training, validation included, checked at log points; not comparable across
    # machines (result.json records the device)
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
    # cosine: warmup, then cosine to min_lr_ratio at the last planned step (the budget's where
    # set); plateau: the same, and once patience // 2 epochs (a sample monitor's measurements)
    # pass without improvement, the rest decays by a cosine to min_lr_ratio at the step early
    # stopping would stop at
    schedule: str = checked("cosine", one_of("cosine", "plateau"))
    grad_clip: float = checked(1.0, POSITIVE_FLOAT)
    # The EMA's decay once its warmup has passed it: at power 2/3 from step 999 for 0.99, 31,622
    # for 0.999, 999,999 for 0.9999; before that the warmup alone decides (below)
    ema_decay: float = checked(0.9999, EMA_DECAY)
    # EMA warmup: decay_k = min(ema_decay, 1 - (1 + k) ** -ema_power) after k updates, so early
    # on the average spans ~(1 + k) ** ema_power recent steps (100 at step 1,000, 292 at 5,000)
    # instead of the initial weights, whatever ema_decay is; ema_decay is reached at step
    # (1 - ema_decay) ** (-1 / ema_power) - 1 (ema_power=1: 1 / (1 - ema_decay) - 1, a running
    # mean until then); null: ema_decay from the first step.
    ema_power: float | None = checked(2 / 3, EMA_POWER)
    # What picks best.pt and drives early stopping: the val loss of the EMA or the raw weights,
    # or a sample metric (val_mmd, val_c2st, val_norm_w1) of the EMA weights' samples from fixed
    # noise against the val split (flowstudy/monitor.py; the test split stays untouched)
    monitor: str = checked("ema", one_of(*MONITORS))
    # A sample monitor measures every N epochs (and at the run's last); a val loss is every epoch
    monitor_every: int = checked(1, POSITIVE)
    # Points a sample monitor draws, against as many val rows (at most the val split)
    monitor_n: int = checked(512, ints(MIN_MONITOR_POINTS, MAX_EVAL_POINTS,
                                       "the C2ST's 5 folds need 2 points a class"))
    # A sample monitor's solver steps (with sample.solver; dopri5 adapts its own); null:
    # sample.steps
    monitor_steps: int | None = checked(20, POSITIVE.or_null("for sample.steps"))
    # Measurements without improvement (epochs, for a val loss), counted after warmup
    patience: int = checked(20, POSITIVE)
    min_delta: float = checked(0.0, NON_NEGATIVE_FLOAT)
    log_every: int = checked(10, POSITIVE)
    device: str = checked("auto", Rule("auto, cpu, cuda or cuda:N", lambda v: v in (
        "auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", v) is not None))
    # torch intra-op threads; null: the cores this process may use (at most OMP_NUM_THREADS where
    # set), shared among parallel jobs
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
    # alert (wandb.alert and the log) when training takes no step for this long
    stall_minutes: float | None = checked(30.0, POSITIVE_FLOAT.or_null("for no stall alert"))
    # Seconds online mode waits for W&B's server before it logs offline instead (W&B's own
    # default, 90 s, is a silent stall at the first checkpoint when there is no network).
    init_timeout: float = checked(20.0, POSITIVE_FLOAT)


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
    # dopri5's steps at most (it takes ~90 at the default tolerances, ~850 at 1e-9): past them
    # the evaluation stops in one line instead of running on for minutes.
    max_steps: int = checked(1000, POSITIVE)
    # Test negative log-likelihood in nats/dim, data space, through the ODE (README "Sample
    # quality"): on 1,000 points, a few seconds on one CPU thread with the default MLP.
    likelihood: bool = True
    likelihood_n: int = checked(1000, POSITIVE)  # test points it scores (at most the test split)
    likelihood_steps: int = checked(20, POSITIVE)  # rk4 steps from each test point back to t=0
    # exact (a backward pass per dim) | hutchinson | auto: exact up to 8-d
    divergence: str = checked("auto", one_of("auto", "exact", "hutchinson"))
    hutchinson_probes: int = checked(1, POSITIVE)  # Rademacher probes per point, from dataset.seed
    # Also measure the samples rescaled, each, to the train split's mean row norm (after
    # denormalisation): every sample metric again as <metric>_proj, beside the raw ones. For data
    # on a sphere (unit-norm embeddings); it says what the directions alone are worth.
    project_norm: bool = False


@dataclass
class EvalConfig:
    """``python -m flowstudy.sample``: a checkpoint, and the ``sample.*`` keys to change from
    what its run used (keys not given on the command line keep the run's values)."""

    resume: str = MISSING  # the checkpoint to sample from (relative to where you run)
    seed: int | None = checked(None, SEED.or_null("for the run's seed"))  # sampling seed
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


SECTIONS: dict[str, type] = {c.__name__: c for c in (TrainConfig, BudgetConfig, CheckpointConfig,
                                                      WandbConfig, SampleConfig)}



def keyed_schemas() -> list[tuple[type, str]]:
    """Every schema with the prefix of its keys: the root config's, then each group's."""
    return [(Config, ""), *((schema, f"{group}.") for group, schemas in GROUP_SCHEMAS.items()
                            for schema in schemas.values())]


def schema_fields(schema: type, prefix: str = "") -> Iterator[tuple[str, dataclasses.Field]]:
    """``("train.lr", field)``: every key of ``schema`` by dotted name, sections included."""
    for f in dataclasses.fields(schema):
        if isinstance(f.type, str) and f.type in SECTIONS:
            yield from schema_fields(SECTIONS[f.type], f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", f


def to_dict(cfg: Config) -> dict[str, Any]:
    """Plain, JSON-ready dict of the resolved config (for checkpoints, result.json and W&B)."""
    return dataclasses.asdict(cfg)
