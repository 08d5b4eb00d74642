"""Defaults that adapt to the data: the values a config leaves null (split sizes, batch size,
passes per epoch, architecture sizes, sample count), resolved once when a run is built.

The run keeps its requested config as its identity (a rerun of the same command is the same
run); what was resolved from it is logged at start and stored in ``result.json`` and in every
checkpoint, so a report shows what really ran and a checkpoint can rebuild its model.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import Any

from flowstudy.config import (
    MIN_EVAL_POINTS,
    ArchConfig,
    Config,
    DiTConfig,
    MLPConfig,
    UNetConfig,
)
from flowstudy.errors import ConfigError

log = logging.getLogger("flowstudy")

# Held-out points per split: a tenth of the rows, at least MIN_HELD_OUT for metrics that mean
# something, at most MAX_HELD_OUT (the exact W2 of the test metrics costs n^3: 2,000 points take
# about 2 s on one core, 5,000 about 40 s), and never more than a quarter of the rows.
HELD_OUT_FRACTION = 10
# The fewest rows any split can use: one validation and one test point (a quarter of 6 rows,
# rounded down), and the training points evaluation's k-NN precision/recall needs.
MIN_ROWS = MIN_EVAL_POINTS + 2
MIN_HELD_OUT = 100
MAX_HELD_OUT = 2_000
DEFAULT_BATCH = 256
# min_epoch_steps = ceil(warmup_steps / WARMUP_EPOCHS): warmup fits in this many epochs.
WARMUP_EPOCHS = 20


# dataset.normalize=null resolves to global below this coefficient of variation of the train
# rows' norms, else to standard. Points whose norms vary by under a tenth of their mean lie in a
# thin shell; per-dimension standardisation stretches that shell into an ellipsoid whose
# directions the flow must then learn to undo (on unit-norm embeddings it doubled FD, issue 18),
# while one global mean/std keeps it a sphere. Unit-norm embeddings sit at ~1e-5 and the digits
# (which set global themselves) at 0.08; 2-d toy sets are at 0.3-0.45, except 8gaussians (0.05,
# a ring, whose two dims have one scale: global and standard coincide). An isotropic Gaussian
# falls under it from ~50 dims (1 / sqrt(2 D)), where every dim has one scale too.
CONCENTRATED_NORMS_CV = 0.1


def normalization(requested: str | None, norm_cv: float) -> str:
    """``dataset.normalize``: the requested kind, or for null (auto) global where the train
    rows' norms are concentrated (``norm_cv`` below ``CONCENTRATED_NORMS_CV``), else standard."""
    if requested is not None:
        return requested
    return "global" if norm_cv < CONCENTRATED_NORMS_CV else "standard"


def split_sizes(rows: int, n_val: int | None, n_test: int | None) -> tuple[int, int]:
    """(n_val, n_test) for a pool of ``rows`` points (at least ``MIN_ROWS``); a null size is a
    tenth of the rows, clamped to [100, 2,000] and to a quarter of the rows."""
    auto = min(MAX_HELD_OUT, max(MIN_HELD_OUT, rows // HELD_OUT_FRACTION), rows // 4)
    return (auto if n_val is None else n_val), (auto if n_test is None else n_test)


def batch_size(requested: int | None, n_train: int, accum_steps: int, ranks: int = 1) -> int:
    """The global batch: the requested one (which must fit the train split), else 256 or the
    train split rounded down to a multiple of accum_steps x ranks."""
    if requested is not None:
        if requested > n_train:
            raise ConfigError("train.batch_size", requested,
                              f"at most the {n_train} training points (full batches only), or "
                              f"null to fit it to the train split")
        return requested
    multiple = accum_steps * ranks
    size = min(DEFAULT_BATCH, n_train) // multiple * multiple
    if size < 1 and n_train < multiple:
        raise ConfigError("dataset.n_train", n_train,
                          f"at least train.accum_steps x ranks = {multiple} training points")
    if size < 1:  # the default batch, not the data, is what the micro-batches cannot split
        raise ConfigError("train.accum_steps", accum_steps,
                          f"at most {DEFAULT_BATCH // ranks} with the default batch of "
                          f"{DEFAULT_BATCH} over {ranks} rank(s); for more, set "
                          f"train.batch_size to a multiple of accum_steps x ranks")
    return size


def min_epoch_steps(requested: int | None, warmup_steps: int) -> int:
    return requested if requested is not None else max(1, math.ceil(warmup_steps /
                                                                     WARMUP_EPOCHS))


def epoch_passes(steps_per_pass: int, min_steps: int) -> int:
    """Passes over the train split in one epoch: the fewest that make ``min_steps`` steps."""
    return max(1, math.ceil(min_steps / steps_per_pass))


def arch_sizes(arch: ArchConfig, dim: int) -> ArchConfig:
    """The architecture with its null sizes set for ``dim``-d data; never a hidden width below
    ``dim``, and the sizes of before for 2-d data (MLP width 256, DiT 2 tokens of width 64,
    UNet mults [1, 2, 2])."""
    if isinstance(arch, MLPConfig) and arch.width is None:
        return dataclasses.replace(arch, width=max(256, 256 * math.ceil(dim / 256)))
    if isinstance(arch, DiTConfig):
        patch = arch.patch or math.ceil(dim / 16)
        width = arch.dim or max(64, 64 * math.ceil(2 * patch / 64))
        if width % arch.heads:
            raise ConfigError("arch.heads", arch.heads,
                              f"a divisor of the token width arch.dim={width}")
        return dataclasses.replace(arch, patch=patch, dim=width)
    if isinstance(arch, UNetConfig) and arch.mults is None:
        levels = max(3, math.ceil(math.log2(dim)) - 3)
        return dataclasses.replace(arch, mults=[1] + [2] * (levels - 1))
    return arch


@dataclass
class Resolved:
    """What a run really trains with, where its config said null or the data decided."""

    n_train: int
    n_val: int
    n_test: int
    batch_size: int
    steps_per_pass: int
    passes_per_epoch: int
    steps_per_epoch: int
    # epochs x steps_per_epoch, or the budget's steps where fewer; early stopping may end sooner
    planned_steps: int
    warmup_steps: int
    sample_n: int
    arch: dict[str, Any]
    # dataset.normalize as used, and the train rows' norm spread that decides it where it was null
    normalize: str = "standard"
    norm_cv: float | None = None
    # train.budget (flowstudy.budget): its kind, the steps it plans (null for seconds: the clock
    # decides) and the FLOPs of one step it was planned with, counted at build.
    budget: str | None = None
    budget_steps: int | None = None
    flops_per_step: float | None = None

    def with_budget(self, kind: str, steps: int | None, flops_per_step: float) -> Resolved:
        """The budget's plan; ``planned_steps`` becomes the fewer of the epochs' and the
        budget's."""
        planned = self.planned_steps if steps is None else min(self.planned_steps, steps)
        return dataclasses.replace(self, budget=kind, budget_steps=steps,
                                   flops_per_step=flops_per_step, planned_steps=planned)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def line(self) -> str:
        sizes = ", ".join(f"{k}={v}" for k, v in self.arch.items() if k != "name")
        return (f"resolved: split {self.n_train}/{self.n_val}/{self.n_test} (train/val/test), "
                f"batch {self.batch_size}, epoch = {self.passes_per_epoch} pass(es) x "
                f"{self.steps_per_pass} = {self.steps_per_epoch} steps, {self.planned_steps} "
                f"steps planned (warmup {self.warmup_steps}), {self.arch['name']} {sizes}, "
                f"{self.sample_n} samples, normalize {self.normalize} (row norms' CV "
                f"{self.norm_cv:.3g})" + self.budget_text())

    def budget_text(self) -> str:
        if self.budget is None:
            return ""
        steps = ("steps decided by the wall clock (not comparable across machines)"
                 if self.budget_steps is None else f"{self.budget_steps} steps")
        return (f", budget {self.budget}: {steps} of {self.flops_per_step:.4g} FLOPs, cosine to "
                f"the budget's end")


def resolve(cfg: Config, n_train: int, n_val: int, n_test: int, dim: int,
            ranks: int = 1, norm_cv: float = math.nan) -> tuple[Config, Resolved]:
    """The config with every data-dependent null filled in, and the summary of what was chosen.

    ``n_val`` and ``n_test`` are the split sizes the data was built with (see ``split_sizes``);
    ``norm_cv`` is the train split's (``flowstudy.data.normalize.norm_cv``; NaN, unknown, counts
    as spread).
    """
    t = cfg.train
    batch = batch_size(t.batch_size, n_train, t.accum_steps, ranks)
    min_steps = min_epoch_steps(t.min_epoch_steps, t.warmup_steps)
    per_pass = n_train // batch
    passes = epoch_passes(per_pass, min_steps)
    arch = arch_sizes(cfg.arch, dim)
    sample_n = cfg.sample.n if cfg.sample.n is not None else n_test
    concrete = dataclasses.replace(
        cfg,
        arch=arch,
        dataset=dataclasses.replace(cfg.dataset, n_val=n_val, n_test=n_test,
                                    normalize=normalization(cfg.dataset.normalize, norm_cv)),
        train=dataclasses.replace(t, batch_size=batch, min_epoch_steps=min_steps),
        sample=dataclasses.replace(cfg.sample, n=sample_n),
    )
    summary = Resolved(n_train=n_train, n_val=n_val, n_test=n_test, batch_size=batch,
                       steps_per_pass=per_pass, passes_per_epoch=passes,
                       steps_per_epoch=passes * per_pass,
                       planned_steps=t.epochs * passes * per_pass, warmup_steps=t.warmup_steps,
                       sample_n=sample_n, arch=dataclasses.asdict(arch),
                       normalize=concrete.dataset.normalize, norm_cv=norm_cv)
    return concrete, summary


def warn_if_budget_beyond_epochs(r: Resolved, epochs: int) -> None:
    if r.budget_steps is not None and r.budget_steps > epochs * r.steps_per_epoch:
        log.warning("train.budget: the budget plans %d steps but train.epochs=%d allows %d; the "
                    "epochs end the run first, short of the budget (its lr never reaches the "
                    "minimum); raise train.epochs", r.budget_steps, epochs,
                    epochs * r.steps_per_epoch)


def warn_if_warmup_too_long(r: Resolved) -> None:
    if r.warmup_steps > r.planned_steps:
        log.warning("train.warmup_steps=%d is longer than the whole run (%d steps planned): the "
                    "lr never reaches its peak and early stopping never counts; raise "
                    "train.epochs or train.min_epoch_steps, or lower train.warmup_steps",
                    r.warmup_steps, r.planned_steps)
