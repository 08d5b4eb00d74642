from __future__ import annotations

import re

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException

from flowstudy.config import (
    CONF_DIR,
    GROUP_SCHEMAS,
    SOLVERS,
    ArchConfig,
    AugConfig,
    DatasetConfig,
    FlowConfig,
    MLPConfig,
    OTFlowConfig,
    Toy2DConfig,
    derive_name,
    full_name,
    group_options,
    rules_text,
    short_name,
)
from flowstudy.config.reference import field_comments, reference
from flowstudy.errors import ConfigError, describe
from flowstudy.flows.solvers import SOLVERS as SOLVER_FUNCTIONS

from .helpers import CONF, compose_config


def test_defaults_are_the_study_decisions() -> None:
    cfg = compose_config([])
    assert isinstance(cfg.arch, MLPConfig) and isinstance(cfg.flow, OTFlowConfig)
    assert isinstance(cfg.dataset, Toy2DConfig) and cfg.dataset.name == "moons"
    assert cfg.aug.name == "none"
    assert cfg.name == "mlp-ot-moons-none" and cfg.group == "default"
    t = cfg.train
    assert (t.ema_decay, t.grad_clip, t.warmup_steps, t.patience, t.log_every) == (
        0.9999, 1.0, 1000, 20, 10)
    assert cfg.flow.sigma_min == 0.0
    assert (cfg.wandb.project, cfg.wandb.mode) == ("flow-matching-study", "offline")
    assert cfg.checkpoint.dir == "study/checkpoints" and not cfg.checkpoint.save_last
    assert cfg.sample.n is None and cfg.sample.solver == "euler"  # null: the test split


BASES = {"arch": ArchConfig, "flow": FlowConfig, "dataset": DatasetConfig, "aug": AugConfig}


@pytest.mark.parametrize("group", list(BASES))
def test_every_group_option_is_built_on_a_schema_and_named_after_its_file(group: str) -> None:
    options = group_options(group)
    assert len(options) >= 3
    for option in options:
        overrides = [f"{group}={option}"]
        if option == "embeddings":
            overrides.append("dataset.path=vectors.npy")
        node = getattr(compose_config(overrides), group)
        assert type(node) in GROUP_SCHEMAS[group].values() and isinstance(node, BASES[group])
        assert node.name == option


def test_names_are_derived_and_overridable() -> None:
    assert compose_config([]).name == "mlp-ot-moons-none"
    # Every override that changes results is in the name, so no two configs share one.
    assert compose_config(["train.epochs=20", "seed=1", "arch.width=128"]).name == \
        "mlp-ot-moons-none-epochs20-seed1-width128"
    assert compose_config(["arch.width=64", "train.lr=3e-4"]).name == \
        "mlp-ot-moons-none-lr3e-4-width64"
    # Settings that do not change results, and values equal to their default, are not.
    assert compose_config(["train.threads=1", "train.log_every=5", "wandb.mode=disabled",
                           "train.lr=2e-3", "study_dir=/tmp/x"]).name == "mlp-ot-moons-none"
    # A value set where the default is null (resolved from the data at build time) is another
    # config, even where the data would resolve to the same value.
    assert compose_config(["arch.width=256"]).name == "mlp-ot-moons-none-width256"
    assert compose_config(["dataset.n_test=500"]).name == "mlp-ot-moons-none-n_test500"
    assert compose_config(["sample.n=500"]).name == "mlp-ot-moons-none-n500"
    # A last part shared by two keys of the config is spelled out in full.
    assert compose_config(["dataset.seed=1"]).name == "mlp-ot-moons-none-dataset_seed1"
    assert compose_config(["arch=dit", "dataset=sphere", "arch.dim=32", "dataset.dim=64"]
                          ).name == "dit-ot-sphere-none-arch_dim32-dataset_dim64"
    assert compose_config(["arch=unet", "arch.mults=[1,2]", "train.ema_power=null"]
                          ).name == "unet-ot-moons-none-ema_powernull-mults1x2"
    cfg = compose_config(["arch=dit", "flow=sb", "dataset=circles", "aug=mixup"])
    assert cfg.name == derive_name(cfg) == "dit-sb-circles-mixup"
    assert compose_config(["dataset.n_train=1000"]).name == "mlp-ot-moons-n1000-none"
    assert compose_config(["dataset.source=8gaussians"]).name == "mlp-ot-8gaussians_to_moons-none"
    assert compose_config(["dataset=embeddings", "dataset.path=/data/sonar_1024.pt"]
                          ).name == "mlp-ot-sonar_1024-none"
    assert compose_config(["name=my-run"]).name == "my-run"


def test_a_long_derived_name_is_a_readable_head_and_a_hash_of_the_whole() -> None:
    """Issue 21 item 13: a name over 255 bytes cannot be a directory, and a sweep cannot take
    name=; a derived name over 128 bytes keeps its head, cut after a whole part, and a hash."""
    many = ["train.lr=0.00123456789012345", "train.weight_decay=0.000123456789",
            "arch.width=1234", "arch.depth=7", "seed=123456789", "train.epochs=12345",
            "train.warmup_steps=1234", "train.ema_decay=0.99912345", "train.grad_clip=12.34567",
            "train.patience=1234", "train.min_delta=0.00012345", "dataset.noise=0.0123456"]
    cfg = compose_config(many)
    whole = full_name(cfg.name)
    assert whole is not None and len(whole) > 200 and cfg.name == short_name(whole)
    assert whole.startswith("mlp-ot-moons-none-depth7-ema_decay0.99912345-epochs12345-")
    assert whole.endswith("-warmup_steps1234-weight_decay1.23456789e-4-width1234")
    assert re.fullmatch(r"mlp-ot-moons-none-depth7-.*-[0-9a-f]{10}", cfg.name)
    assert len(cfg.name) <= 128 and whole.startswith(cfg.name[:-11] + "-")
    assert compose_config(many).name == cfg.name  # the same config, the same name
    assert compose_config([*many[:-1], "dataset.noise=0.0123457"]).name != cfg.name
    assert short_name("mlp-ot-moons-none") == "mlp-ot-moons-none"
    assert full_name("mlp-ot-moons-none") is None
    # One part that is most of the name (a file's stem) is cut, not dropped; bytes, not chars
    stem = short_name("mlp-ot-" + "é" * 150 + "-none")
    assert len(stem.encode()) <= 128 and stem.startswith("mlp-ot-éé")


@pytest.mark.parametrize("ablation", ["none", "architectures", "flow-methods", "dataset-size",
                                      "augmentations", "checkpoint-selection", "time-sampling",
                                      "normalization"])
def test_ablation_sets_the_group(ablation: str) -> None:
    expected = "default" if ablation == "none" else ablation
    assert compose_config([f"ablation={ablation}"]).group == expected
    assert ablation in group_options("ablation")


def test_solver_choices_match_the_solvers() -> None:
    assert set(SOLVERS) == set(SOLVER_FUNCTIONS)
    assert CONF == CONF_DIR


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("train.lr=-1", "train.lr"),
        ("train.lr=0", "train.lr"),
        ("train.ema_decay=1.0", "train.ema_decay"),
        ("train.ema_decay=0", "train.ema_decay"),
        ("train.patience=0", "train.patience"),
        ("train.batch_size=0", "train.batch_size"),
        ("dataset.n_train=0", "dataset.n_train"),
        ("dataset.size=2000", "dataset.size"),
        ("dataset.source=mnist", "dataset.source"),
        ("dataset.normalize=minmax", "dataset.normalize"),
        ("arch.name=resnet", "arch.name"),
        ("flow=minibatch_ot flow.prefetch=-1", "flow.prefetch"),
        ("flow=sb flow.sigma=0", "flow.sigma"),
        ("arch=dit arch.dim=30", "arch.dim"),
        ("arch=unet arch.mults=[1,0]", "arch.mults"),
        ("aug=mixup aug.alpha=0", "aug.alpha"),
        ("aug=noise aug.std=-1", "aug.std"),
        ("dataset=sphere dataset.dim=0", "dataset.dim"),
        ("sample.atol=0", "sample.atol"),
        ("train.epochs=0", "train.epochs"),
        ("train.grad_clip=0", "train.grad_clip"),
        ("train.min_lr_ratio=1.5", "train.min_lr_ratio"),
        ("train.monitor=best", "train.monitor"),
        ("train.monitor_every=0", "train.monitor_every"),
        ("train.monitor_n=5", "train.monitor_n"),
        ("train.monitor_steps=0", "train.monitor_steps"),
        ("train.schedule=step", "train.schedule"),
        ("train.device=tpu", "train.device"),
        ("dataset.n_val=0", "dataset.n_val"),
        ("arch.width=0", "arch.width"),
        ("flow.sigma_min=1.0", "flow.sigma_min"),
        ("wandb.mode=cloud", "wandb.mode"),
        ("wandb.stall_minutes=0", "wandb.stall_minutes"),
        ("sample.solver=heun", "sample.solver"),
        ("sample.divergence=trace", "sample.divergence"),
        ("sample.likelihood_steps=0", "sample.likelihood_steps"),
        ("sample.hutchinson_probes=0", "sample.hutchinson_probes"),
        ("name=a/b", "name"),
    ],
)
def test_range_checks_name_key_value_and_rule(override: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        compose_config(override.split())
    assert info.value.key == key
    message = str(info.value)
    assert message.startswith(f"{key}=") and "not allowed" in message and "\n" not in message


def _composition_error(override: str) -> BaseException:
    with initialize_config_dir(str(CONF), version_base="1.3"), pytest.raises(
        ConfigCompositionException
    ) as info:
        compose("config", overrides=[override])
    return info.value


def test_hydra_errors_become_one_line() -> None:
    assert describe(_composition_error("arch.width=abc")) == (
        "arch.width: Value 'abc' of type 'str' could not be converted to Integer")
    line = describe(_composition_error("train.nope=1"))
    assert line.startswith("train.nope is not a known key; allowed here: epochs, batch_size")
    assert describe(_composition_error("arch=transformer")) == (
        "arch=transformer is not an option; available: dit, mlp, unet")


def test_the_configuration_reference_is_current() -> None:
    page = (CONF.parent / "docs" / "configuration.md").read_text()
    assert page == reference(), ("docs/configuration.md is stale: "
                                 "python -m flowstudy.config.reference > docs/configuration.md")


def test_help_and_the_reference_say_the_same_rules() -> None:
    page = reference()
    for line in rules_text().splitlines():
        key, allowed = line.split(maxsplit=1)
        assert f"| `{key}` |" in page and f"| {allowed} |" in page, key


def test_the_reference_carries_each_fields_comment() -> None:
    comments = field_comments(Toy2DConfig)
    assert comments["source"] == "N(0, I), or another 2-d dataset (8gaussians -> moons)"
    assert comments["n_train"] == "a seeded subset of the train split (null: all of it)"  # base's
    assert comments["noise"] == "Gaussian noise added to the points; null: the dataset's own"


def _error(overrides: list[str]) -> str:
    """The one line the CLI prints for these overrides (composition and validation)."""
    with pytest.raises(Exception) as info:
        compose_config(overrides)
    message = describe(info.value)
    assert message is not None, f"no one-line description for {info.value!r}"
    return message


NAME_RULE = ("a run name of letters, digits and . _ - + = , starting with a letter or digit (at "
             "most 128 characters), or null to derive it")


@pytest.mark.parametrize(("override", "expected"), [
    # non-finite floats, seeds, names, W&B settings
    ("train.lr=inf", "train.lr=inf is not allowed: a float > 0"),
    ("train.weight_decay=inf", "train.weight_decay=inf is not allowed: a float >= 0"),
    ("train.min_delta=inf", "train.min_delta=inf is not allowed: a float >= 0"),
    ("train.grad_clip=inf", "train.grad_clip=inf is not allowed: a float > 0"),
    ("train.lr=nan", "train.lr=nan is not allowed: a float > 0"),
    ("dataset.noise=inf",
     "dataset.noise=inf is not allowed: a float >= 0, or null for the dataset's default"),
    ("seed=-1", "seed=-1 is not allowed: an integer from 0 to 4294967294 (numpy's seed range)"),
    ("seed=4294967295",
     "seed=4294967295 is not allowed: an integer from 0 to 4294967294 (numpy's seed range)"),
    ("dataset.seed=-5",
     "dataset.seed=-5 is not allowed: an integer from 0 to 4294967294 (numpy's seed range)"),
    ("name=.", f"name='.' is not allowed: {NAME_RULE}"),
    ("name=..", f"name='..' is not allowed: {NAME_RULE}"),
    ("name=", f"name='' is not allowed: {NAME_RULE}"),
    ("name=a/b", f"name='a/b' is not allowed: {NAME_RULE}"),
    ("name=my run", f"name='my run' is not allowed: {NAME_RULE}"),
    # a data file's stem goes into the derived name, so it keeps the name's characters
    ("dataset=embeddings;dataset.path='data/my data ü.npy'", "dataset.path='data/my data ü.npy' is "
     "not allowed: a file whose name, less its suffix, is letters, digits and . _ - + = , "
     "starting with a letter or digit (the derived run name holds it); rename the file, or set "
     "name="),
    ("wandb.tags=[" + "t" * 65 + "]", "wandb.tags=['" + "t" * 65 + "'] is not allowed: a list of "
     "tags of 1 to 64 characters each"),
    ("wandb.project=me/proj",
     "wandb.project='me/proj' is not allowed: at most 128 characters, none of / \\ # ? % :"),
    # sizes evaluation could not handle
    ("sample.n=1000000", "sample.n=1000000 is not allowed: an integer from 4 to 10000 (W2 is an "
     "exact n x n assignment), or null for the test split's size"),
    ("dataset=sphere;dataset.dim=50000", "dataset.dim=50000 is not allowed: an integer from 1 to "
     "8192 (the Frechet distance's D x D matrices)"),
    # further likely mistakes
    ("arch=DiT", "arch=DiT is not an option; available: dit, mlp, unet"),
    ("ablation=architecture", "ablation=architecture is not an option; available: "
     "architectures, architectures-isoflop, augmentations, checkpoint-selection, dataset-size, "
     "flow-methods, none, normalization, time-sampling"),
    ("train.batch_size=0", "train.batch_size=0 is not allowed: an integer >= 1, or null for "
     "256, or the train split where smaller"),
    ("sample.steps=0", "sample.steps=0 is not allowed: an integer >= 1"),
    ("train.patience=-3", "train.patience=-3 is not allowed: an integer >= 1"),
    ("train.monitor=val_w2", "train.monitor='val_w2' is not allowed: one of ema, raw, val_mmd, "
     "val_c2st, val_norm_w1"),
    ("train.monitor_every=0", "train.monitor_every=0 is not allowed: an integer >= 1"),
    ("dataset.normalize=none",
     "dataset.normalize='none' is not allowed: one of standard, robust, global, or null for "
     "global on concentrated norms, else standard"),
    ("train.epochs=1e3",
     "train.epochs: Value '1000.0' of type 'float' could not be converted to Integer"),
    ("train.lr=1e-3,2e-3", "train.lr=1e-3,2e-3: a comma means a sweep; add -m to run one job "
     "per value, or write a list as key=[a,b]"),
    ("dataset=embeddings", "dataset.path has no default and must be set: add dataset.path=..."),
    ("train.device=gpu", "train.device='gpu' is not allowed: auto, cpu, cuda or cuda:N"),
    ("sample.solver=Euler",
     "sample.solver='Euler' is not allowed: one of euler, midpoint, rk4, dopri5"),
    ("hydra/launcher=nosuch", "hydra/launcher=nosuch is not an option; available: basic, "
     "joblib, submitit_local, submitit_slurm"),
    ("dataset.n_test=2", "dataset.n_test=2 is not allowed: an integer >= 4 (k-NN "
     "precision/recall), or null for a tenth of the rows (100 to 2,000)"),
    ("arch=unet;arch.mults=[]",
     "arch.mults=[] is not allowed: a non-empty list of integers >= 1, or null to fit the data "
     "dim"),
])
def test_a_bad_value_is_one_line_naming_key_value_and_rule(override: str, expected: str) -> None:
    assert _error(override.split(";")) == expected


def test_help_lists_the_rule_of_every_key() -> None:
    text = rules_text()
    assert re.search(r"^train\.lr +a float > 0$", text, re.MULTILINE)
    assert re.search(r"^seed +an integer from 0 to 4294967294 \(numpy's seed range\)$", text,
                     re.MULTILINE)
    assert "arch.mults" in text and "wandb.tags" in text and "sample.n" in text


def test_quick_is_a_small_run_that_replaces_the_previous_debug_run() -> None:
    cfg = compose_config(["debug=quick"])
    assert (cfg.study_dir, cfg.force, cfg.wandb.mode) == ("study/debug", True, "disabled")
    assert (cfg.train.epochs, cfg.dataset.n_train, cfg.sample.steps) == (2, 1024, 10)
