"""Datasets as fixed, seeded train/val/test splits in memory, normalised with train statistics.

Every dataset is a pool of points split once by the data seed (``dataset.seed``): test first, then
val, the rest is train; ``dataset.n_train`` takes the first n of a seeded order of the train
split, so smaller subsets are nested in larger ones. Files' splits are stored under
``<study_dir>/datasets/<name>/`` on first use and reused afterwards. Null split sizes are
resolved from the number of rows (``flowstudy.resolve.split_sizes``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from flowstudy.config import (
    MAX_EVAL_DIM,
    MIN_EVAL_POINTS,
    DatasetConfig,
    DigitsConfig,
    EmbeddingsConfig,
    SphereConfig,
    Toy2DConfig,
    dataset_label,
)
from flowstudy.data.files import DataError, load_vectors
from flowstudy.data.fingerprint import file_sha256, short
from flowstudy.data.normalize import Normalizer, norm_cv
from flowstudy.data.toy2d import toy2d
from flowstudy.errors import ConfigError
from flowstudy.fileio import read_json, write_json
from flowstudy.options import build
from flowstudy.resolve import MIN_ROWS, normalization, split_sizes


@dataclass
class Source:
    """The distribution at t=0, in the model's (normalised) coordinates."""

    name: str = "gaussian"  # or a 2-d dataset
    normalizer: Normalizer | None = None

    def sample(self, n: int, dim: int, generator: torch.Generator) -> torch.Tensor:
        if self.name == "gaussian":
            return torch.randn(n, dim, generator=generator, device=generator.device)
        return self.normalizer.encode(toy2d(self.name, n, None, generator))


@dataclass
class DataSplits:
    """Raw (data-space) splits, the normaliser fitted on ``train`` and the source distribution."""

    name: str
    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor
    normalizer: Normalizer
    source: Source
    norm_cv: float = math.nan  # of the train rows' norms: decides dataset.normalize=null

    @property
    def dim(self) -> int:
        return self.train.shape[1]


def _split(n: int, n_val: int, n_test: int, seed: int) -> dict[str, list[int]]:
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return {"test": order[:n_test], "val": order[n_test:n_test + n_val],
            "train": order[n_test + n_val:]}


def _bad_indices(stored: dict[str, Any], n: int) -> str | None:
    """What makes a stored split unusable for a file of ``n`` rows (one phrase), or None."""
    for part in ("train", "val", "test"):
        rows = stored[part]
        if not isinstance(rows, list) or not all(
                isinstance(i, int) and not isinstance(i, bool) for i in rows):
            return f"{part} is {rows!r:.40}, expected a list of row indices"
        outside = [i for i in rows if not 0 <= i < n]
        if outside:
            return (f"{part} holds row {outside[0]}, outside the file's {n} rows (0 to {n - 1})")
    # Rows held out for val or test and trained on too would score the model on its own data.
    for held_out, other in (("test", "train"), ("val", "train"), ("test", "val")):
        shared = sorted(set(stored[held_out]) & set(stored[other]))
        if shared:
            return (f"{held_out} shares {len(shared)} rows with {other} (first: row "
                    f"{shared[0]}); the splits must be disjoint")
    return None


def _file_split(cfg: EmbeddingsConfig, n: int, n_val: int, n_test: int,
                study_dir: Path) -> dict[str, list[int]]:
    """The split of a user's file, written on first use and reused by every later run of the
    same content; a changed file, or another file of the same stem, is refused. Its name holds
    the resolved sizes, so auto and explicit sizes that agree share one file."""
    path = (study_dir / "datasets" / Path(cfg.path).stem /
            f"split-seed{cfg.seed}-val{n_val}-test{n_test}.json")
    source = str(Path(cfg.path).resolve())
    digest = file_sha256(cfg.path, study_dir / "datasets")
    if path.exists():
        stored = read_json(path, "split file", "move it away to re-split")
        if not isinstance(stored, dict) or not {"rows", "train", "val", "test"} <= set(stored):
            raise DataError(f"{path}: not a split file (needs rows, train, val and test); "
                            f"move it away to re-split")
        made_for = stored.get("sha256")
        if made_for is None:  # a split from before fingerprints: adopt it for this content
            if stored["rows"] != n:
                raise DataError(f"dataset.path={cfg.path}: has {n} rows but its stored split "
                                f"{path} was made for {stored['rows']}; move that split away "
                                f"to re-split")
            stored["sha256"] = digest
            write_json(path, stored)
        elif made_for != digest and stored.get("source") == source:
            raise DataError(f"dataset.path={cfg.path}: its content changed since {path} was made "
                            f"(sha256 {short(made_for)} -> {short(digest)}); restore the file, "
                            f"or move that split away to re-split it (runs on the old content "
                            f"stay as they were)")
        elif made_for != digest:
            raise DataError(f"dataset.path={cfg.path}: another file with the same stem "
                            f"({stored.get('source')}, sha256 {short(made_for)}) made {path}; "
                            f"rename this file (splits and run names go by the file stem)")
        bad = _bad_indices(stored, n)
        if bad:
            raise DataError(f"{path}: not a split file ({bad}); move it away to re-split")
        return stored
    split = {"rows": n, "source": source, "sha256": digest,
             **_split(n, n_val, n_test, cfg.seed)}
    write_json(path, split)
    return split


# The builders of flowstudy.options' dataset rows: (config) -> the pool the splits come from.


def toy2d_points(cfg: Toy2DConfig) -> torch.Tensor:
    return toy2d(cfg.name, cfg.size, cfg.noise, torch.Generator().manual_seed(cfg.seed))


def sphere_points(cfg: SphereConfig) -> torch.Tensor:
    g = torch.Generator().manual_seed(cfg.seed)
    centres = torch.nn.functional.normalize(torch.randn(cfg.clusters, cfg.dim, generator=g), dim=1)
    which = torch.randint(0, cfg.clusters, (cfg.size,), generator=g)
    offsets = torch.randn(cfg.size, cfg.dim, generator=g) * (cfg.spread / math.sqrt(cfg.dim))
    return torch.nn.functional.normalize(centres[which] + offsets, dim=1)


def digits_points(cfg: DigitsConfig) -> torch.Tensor:
    from sklearn.datasets import load_digits  # bundled with scikit-learn: no download

    return torch.from_numpy(load_digits().data).float()


def file_points(cfg: EmbeddingsConfig) -> torch.Tensor:
    return load_vectors(cfg.path)


def build_data(cfg: DatasetConfig, study_dir: str | Path = "study") -> DataSplits:
    points = build("dataset", cfg)
    if points.shape[1] > MAX_EVAL_DIM:
        raise DataError(f"dataset.path={cfg.path}: {points.shape[1]}-d vectors; evaluation "
                        f"handles at most {MAX_EVAL_DIM} dims (the Frechet distance needs "
                        f"D x D float64 matrices: {points.shape[1] ** 2 * 8 / 2**30:.0f} "
                        f"GiB each here)")
    # No split sizes, auto or explicit, can work; only a file can be this small (a generator's
    # dataset.size is checked against its split sizes)
    if points.shape[0] < MIN_ROWS:
        raise DataError(f"dataset.path={cfg.path}: {points.shape[0]} rows are too few to train "
                        f"and evaluate on; a dataset needs at least {MIN_ROWS} rows (a "
                        f"validation and a test point, and {MIN_EVAL_POINTS} to train on)")
    n_val, n_test = split_sizes(points.shape[0], cfg.n_val, cfg.n_test)
    _check_sizes(cfg.name, n_val, n_test, points.shape[0])
    split = (_file_split(cfg, points.shape[0], n_val, n_test, Path(study_dir))
             if isinstance(cfg, EmbeddingsConfig)
             else _split(points.shape[0], n_val, n_test, cfg.seed))
    train_idx = split["train"]
    if cfg.n_train is not None:
        if cfg.n_train > len(train_idx):
            raise ConfigError("dataset.n_train", cfg.n_train,
                              f"at most {len(train_idx)}, the size of {cfg.name}'s train split")
        subset = torch.randperm(len(train_idx), generator=torch.Generator().manual_seed(cfg.seed))
        train_idx = [train_idx[i] for i in subset[:cfg.n_train].tolist()]
    if len(train_idx) < MIN_EVAL_POINTS:
        raise ConfigError("dataset.n_train" if cfg.n_train is not None else "dataset.n_val",
                          cfg.n_train if cfg.n_train is not None else cfg.n_val,
                          f"a split leaving at least {MIN_EVAL_POINTS} training points (here "
                          f"{len(train_idx)}); evaluation's k-NN precision/recall needs them")
    train = points[train_idx]
    spread = norm_cv(train)
    return DataSplits(name=dataset_label(cfg), train=train, val=points[split["val"]],
                      test=points[split["test"]],
                      normalizer=Normalizer.fit(train, normalization(cfg.normalize, spread)),
                      source=build_source(cfg), norm_cv=spread)


def build_source(cfg: DatasetConfig) -> Source:
    """N(0, I), or another 2-d dataset normalised by a fixed reference sample of itself."""
    if getattr(cfg, "source", "gaussian") == "gaussian":
        return Source()
    reference = toy2d(cfg.source, 10_000, None, torch.Generator().manual_seed(cfg.seed + 1))
    return Source(cfg.source, Normalizer.fit(reference))


def _check_sizes(name: str, n_val: int, n_test: int, rows: int) -> None:
    if n_val + n_test >= rows:
        raise ConfigError("dataset.n_val", n_val,
                          f"n_val + n_test below the {rows} points of {name} "
                          f"(n_test={n_test}), leaving some to train on")
