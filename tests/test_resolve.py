"""Defaults that adapt to the data (flowstudy.resolve) and the experiment presets."""

from __future__ import annotations

import dataclasses
import functools
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from flowstudy.config import (
    CONF_DIR,
    Config,
    DiTConfig,
    EmbeddingsConfig,
    MLPConfig,
    UNetConfig,
    group_options,
)
from flowstudy.data import build_data
from flowstudy.data.normalize import norm_cv
from flowstudy.errors import ConfigError
from flowstudy.models import build_model, count_parameters
from flowstudy.resolve import (
    CONCENTRATED_NORMS_CV,
    Resolved,
    arch_sizes,
    normalization,
    resolve,
    split_sizes,
    warn_if_warmup_too_long,
)

from .helpers import compose_config


def _vectors(tmp_path: Path, rows: int, dim: int) -> Path:
    path = tmp_path / f"vectors{rows}x{dim}.npy"
    x = np.random.default_rng(0).standard_normal((rows, dim)).astype(np.float32)
    np.save(path, x / np.linalg.norm(x, axis=1, keepdims=True))
    return path


@functools.cache
def _composed(*overrides: str) -> Config:
    return compose_config(list(overrides))


def _embeddings(path: Path) -> EmbeddingsConfig:
    """dataset=embeddings dataset.path=PATH, composed once."""
    return dataclasses.replace(_composed("dataset=embeddings", "dataset.path=x.npy").dataset,
                               path=str(path))


@pytest.mark.parametrize("dim", [2, 384])
@pytest.mark.parametrize(("rows", "held_out"), [(500, 100), (1000, 100), (1685, 168)])
def test_a_file_of_any_size_from_500_rows_splits_by_itself(tmp_path: Path, rows: int,
                                                           held_out: int, dim: int) -> None:
    cfg = _embeddings(_vectors(tmp_path, rows, dim))
    assert (cfg.n_val, cfg.n_test) == (None, None)
    data = build_data(cfg, tmp_path / "study")
    assert (data.val.shape[0], data.test.shape[0]) == (held_out, held_out)
    assert data.train.shape == (rows - 2 * held_out, dim)
    # The stored split is named by the sizes it was made with; explicit equal sizes reuse it.
    stored = tmp_path / "study" / "datasets" / f"vectors{rows}x{dim}"
    assert [p.name for p in stored.iterdir()] == [f"split-seed0-val{held_out}-test{held_out}.json"]
    explicit = dataclasses.replace(cfg, n_val=held_out, n_test=held_out)
    assert torch.equal(build_data(explicit, tmp_path / "study").test, data.test)
    assert len(list(stored.iterdir())) == 1


def test_auto_split_sizes_are_a_tenth_within_bounds_and_explicit_sizes_keep_their_checks(
        tmp_path: Path) -> None:
    assert split_sizes(20_000, None, None) == (2000, 2000)
    assert split_sizes(5_000_000, None, 300) == (2000, 300)  # capped: W2 is exact, O(n^3)
    assert split_sizes(240, None, None) == (60, 60)  # at most a quarter each
    cfg = dataclasses.replace(_embeddings(_vectors(tmp_path, 1000, 8)), n_val=600, n_test=400)
    with pytest.raises(ConfigError, match="n_val"):
        build_data(cfg, tmp_path / "study")


def _resolved(overrides: list[str], n_train: int, dim: int = 2) -> tuple[Config, Resolved]:
    return resolve(_composed(*overrides), n_train, 100, 100, dim)


def test_the_2d_default_run_resolves_to_what_it_was() -> None:
    cfg, r = _resolved([], 20_000)
    assert (r.batch_size, r.passes_per_epoch, r.steps_per_epoch) == (256, 1, 78)
    assert cfg.arch.width == 256 and cfg.sample.n == 100 == cfg.dataset.n_test


@pytest.mark.parametrize("n_train", [200, 500, 1_349, 6_400])
def test_a_short_epoch_becomes_several_passes_of_at_least_the_minimum_steps(
        n_train: int) -> None:
    _, r = _resolved([], n_train)
    assert r.steps_per_epoch >= 50 == math.ceil(1000 / 20)  # auto: warmup / 20
    assert r.steps_per_epoch == r.passes_per_epoch * (n_train // r.batch_size)
    assert r.steps_per_epoch - n_train // r.batch_size < 50  # not one pass more than needed
    assert r.planned_steps >= 5 * r.warmup_steps  # warmup ends by epoch 20 of 100
    _, explicit = _resolved(["train.min_epoch_steps=200"], n_train)
    assert explicit.steps_per_epoch >= 200


def test_no_run_of_the_dataset_size_ablation_is_shorter_than_its_warmup() -> None:
    ablation = yaml.safe_load((CONF_DIR / "ablation" / "dataset-size.yaml").read_text())
    smallest = min(int(v) for v in
                   str(ablation["hydra"]["sweeper"]["params"]["dataset.n_train"]).split(","))
    _, r = _resolved([f"dataset.n_train={smallest}"], smallest)
    assert r.planned_steps > r.warmup_steps


def test_a_batch_larger_than_the_train_split_shrinks_unless_set_explicitly() -> None:
    _, r = _resolved(["train.accum_steps=4"], 130)
    assert r.batch_size == 128 and r.steps_per_pass == 1
    with pytest.raises(ConfigError, match=r"train\.batch_size=256"):
        _resolved(["train.batch_size=256"], 130)


def test_too_many_micro_batches_blame_accum_steps_unless_the_data_is_what_is_short() -> None:
    """Issue 21 item 10: 512 micro-batches cannot split the default batch of 256, whatever the
    data; only a train split smaller than accum_steps x ranks blames dataset.n_train."""
    with pytest.raises(ConfigError) as info:
        _resolved(["train.accum_steps=512"], 20_000)
    assert str(info.value) == ("train.accum_steps=512 is not allowed: at most 256 with the "
                               "default batch of 256 over 1 rank(s); for more, set "
                               "train.batch_size to a multiple of accum_steps x ranks")
    _, r = _resolved(["train.accum_steps=512", "train.batch_size=1024"], 20_000)
    assert r.batch_size == 1024
    with pytest.raises(ConfigError, match=r"^dataset\.n_train=100 is not allowed: at least "
                                          r"train\.accum_steps x ranks = 128"):
        _resolved(["train.accum_steps=128"], 100)


def test_a_warmup_longer_than_the_run_is_warned_about_at_start(
        caplog: pytest.LogCaptureFixture) -> None:
    _, r = _resolved(["train.epochs=5"], 2_560)  # 5 epochs x 50 steps < 1000 warmup steps
    warn_if_warmup_too_long(r)
    assert "train.warmup_steps=1000 is longer than the whole run (250 steps" in caplog.text


@pytest.mark.parametrize("dim", [2, 64, 384, 768, 1024, 4096])
def test_architecture_sizes_scale_with_the_data_and_never_narrow_below_it(dim: int) -> None:
    # What conf/arch/*.yaml compose to: the schemas with their names.
    mlp, dit, unet = (arch_sizes(schema(name=name), dim) for name, schema in
                      (("mlp", MLPConfig), ("dit", DiTConfig), ("unet", UNetConfig)))
    assert mlp.width >= dim and mlp.width % 256 == 0
    tokens = math.ceil(dim / dit.patch)
    assert tokens <= 16 and dit.dim >= 2 * dit.patch and tokens * dit.dim >= dim
    assert dim / 2 ** (len(unet.mults) - 1) <= 16 or len(unet.mults) == 3
    if dim == 2:  # the sizes the 2-d results were measured with
        assert (mlp.width, dit.patch, dit.dim, unet.mults) == (256, 1, 64, [1, 2, 2])
    if dim <= 1024:  # build them: each maps [B, dim] to [B, dim]
        for arch in (mlp, dit, unet):
            model = build_model(arch, dim)
            assert model(torch.randn(2, dim), torch.rand(2)).shape == (2, dim)
    explicit = arch_sizes(MLPConfig(name="mlp", width=64), dim)
    assert explicit.width == 64  # an explicit size is kept
    if dim == 1024:  # trainable on one 24 GB GPU: a few million parameters
        assert count_parameters(build_model(mlp, dim)) < 10_000_000


EXPERIMENTS = group_options("experiment")


def test_the_presets_the_study_needs_exist() -> None:
    assert {"embeddings", "digits", "otcfm-paper", "quick"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_preset_composes_validates_and_names_its_runs(experiment: str) -> None:
    cfg = compose_config([f"experiment={experiment}", "dataset.path=vectors.npy"]
                         if experiment == "embeddings" else [f"experiment={experiment}"])
    assert cfg.experiment == experiment and cfg.name.startswith(f"{experiment}-")
    text = (CONF_DIR / "experiment" / f"{experiment}.yaml").read_text()
    assert text.startswith("# @package _global_")


def test_the_otcfm_paper_preset_trains_20k_steps_at_a_constant_lr() -> None:
    cfg = compose_config(["experiment=otcfm-paper"])
    n_train = cfg.dataset.size - cfg.dataset.n_val - cfg.dataset.n_test
    _, r = resolve(cfg, n_train, cfg.dataset.n_val, cfg.dataset.n_test, 2)
    assert r.planned_steps == 20_000 and r.batch_size == 256
    assert (cfg.flow.name, cfg.flow.sigma, cfg.train.lr, cfg.train.min_lr_ratio) == (
        "minibatch_ot", 0.1, 1e-3, 1.0)
    assert cfg.train.patience >= cfg.train.epochs  # runs all its steps


def test_null_normalize_is_global_on_concentrated_norms_and_standard_otherwise(
        tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    gaussian = torch.randn(2000, 16, generator=g)  # norms' CV ~ 1 / sqrt(32) = 0.18
    unit = torch.nn.functional.normalize(gaussian, dim=1)
    assert norm_cv(unit) < 1e-6 and 0.15 < norm_cv(gaussian) < 0.2
    assert norm_cv(1.05 * unit + 0.01 * torch.randn(2000, 16, generator=g)) < CONCENTRATED_NORMS_CV
    assert normalization(None, norm_cv(unit)) == "global"
    assert normalization(None, norm_cv(gaussian)) == "standard"
    assert normalization("robust", norm_cv(unit)) == "robust"  # an explicit kind always wins
    # Built from a unit-norm file: one scale for all dims, and resolve records it.
    cfg = _embeddings(_vectors(tmp_path, 500, 8))
    assert cfg.normalize is None
    data = build_data(cfg, tmp_path / "study")
    assert torch.equal(data.normalizer.scale, data.normalizer.scale[:1].expand(8))
    concrete, r = resolve(_composed(), data.train.shape[0], 100, 100, 8, norm_cv=data.norm_cv)
    assert (concrete.dataset.normalize, r.normalize) == ("global", "global")
    assert r.norm_cv == data.norm_cv and "normalize global" in r.line()
    _, moons = resolve(_composed(), 1000, 100, 100, 2)
    assert moons.normalize == "standard"


def test_run_names_keep_their_form_for_explicit_normalisations_and_name_the_new_keys() -> None:
    base = "mlp-ot-moons-none"
    assert _composed().name == base  # null: auto, the default, names nothing
    assert _composed("dataset.normalize=global").name == f"{base}-normalizeglobal"
    assert _composed("dataset.normalize=robust").name == f"{base}-normalizerobust"
    # standard is no longer the default, so it is named: it differs from auto on unit-norm data
    assert _composed("dataset.normalize=standard").name == f"{base}-normalizestandard"
    assert _composed("experiment=embeddings", "dataset.path=e.npy").name == \
        "embeddings-mlp-ot-e-none"  # the preset's own global is its name, as before
    assert _composed("flow.time_sampling=beta").name == f"{base}-time_samplingbeta"
    assert _composed("flow.time_sampling=logit_normal", "flow.logit_scale=0.5").name == \
        f"{base}-logit_scale0.5-time_samplinglogit_normal"
    assert _composed("sample.project_norm=true").name == f"{base}-project_normtrue"
