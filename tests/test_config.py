from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException

from flowstudy.config import (
    GROUP_SCHEMAS,
    SOLVERS,
    MLPConfig,
    MoonsConfig,
    NoAugConfig,
    OTFlowConfig,
    derive_name,
)
from flowstudy.errors import ConfigError, describe
from flowstudy.flows.solvers import SOLVERS as SOLVER_FUNCTIONS

from .helpers import CONF, cli, compose_config


def test_defaults_are_the_study_decisions() -> None:
    cfg = compose_config([])
    assert isinstance(cfg.arch, MLPConfig) and isinstance(cfg.flow, OTFlowConfig)
    assert isinstance(cfg.dataset, MoonsConfig) and isinstance(cfg.aug, NoAugConfig)
    assert cfg.name == "mlp-ot-moons-none" and cfg.group == "default"
    t = cfg.train
    assert (t.ema_decay, t.grad_clip, t.warmup_steps, t.patience, t.log_every) == (
        0.9999, 1.0, 1000, 20, 10)
    assert cfg.flow.sigma_min == 0.0
    assert (cfg.wandb.project, cfg.wandb.mode) == ("flow-matching-study", "offline")
    assert cfg.checkpoint.dir == "study/checkpoints" and not cfg.checkpoint.save_last
    assert cfg.sample.n == cfg.dataset.n_test and cfg.sample.solver == "euler"


def test_every_group_option_is_validated_against_its_schema() -> None:
    for group, options in GROUP_SCHEMAS.items():
        files = {p.stem for p in (CONF / group).glob("*.yaml")}
        assert files == set(options), f"conf/{group} and GROUP_SCHEMAS disagree"
        for option, schema in options.items():
            cfg = compose_config([f"{group}={option}"])
            assert type(getattr(cfg, group)) is schema


def test_name_is_derived_and_overridable() -> None:
    cfg = compose_config(["arch.width=64"])
    assert cfg.name == derive_name(cfg) == "mlp-ot-moons-none"
    assert compose_config(["name=my-run"]).name == "my-run"


def test_ablation_sets_the_group() -> None:
    assert compose_config(["ablation=none"]).group == "default"


def test_solver_choices_match_the_solvers() -> None:
    assert set(SOLVERS) == set(SOLVER_FUNCTIONS)


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("train.lr=-1", "train.lr"),
        ("train.lr=0", "train.lr"),
        ("train.ema_decay=1.0", "train.ema_decay"),
        ("train.ema_decay=0", "train.ema_decay"),
        ("train.patience=0", "train.patience"),
        ("train.batch_size=0", "train.batch_size"),
        ("train.batch_size=20001", "train.batch_size"),
        ("train.epochs=0", "train.epochs"),
        ("train.grad_clip=0", "train.grad_clip"),
        ("train.min_lr_ratio=1.5", "train.min_lr_ratio"),
        ("train.monitor=best", "train.monitor"),
        ("train.device=tpu", "train.device"),
        ("dataset.n_val=0", "dataset.n_val"),
        ("arch.width=0", "arch.width"),
        ("flow.sigma_min=1.0", "flow.sigma_min"),
        ("wandb.mode=cloud", "wandb.mode"),
        ("sample.solver=heun", "sample.solver"),
        ("name=a/b", "name"),
    ],
)
def test_range_checks_name_key_value_and_rule(override: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        compose_config([override])
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
        "arch=transformer is not an option; available: mlp")


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("arch.width=abc", "arch.width: Value 'abc'"),
        ("train.lr=-1", "train.lr=-1.0 is not allowed: a float > 0"),
        ("train.bogus=3", "train.bogus is not a known key"),
        ("arch=nosuch", "arch=nosuch is not an option; available: mlp"),
    ],
)
def test_cli_rejects_bad_input_before_any_work(tmp_path: Path, override: str,
                                               expected: str) -> None:
    proc = cli([f"study_dir={tmp_path / 'study'}", f"hydra.run.dir={tmp_path / 'out'}",
                override], cwd=tmp_path)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == [lines[0]] and lines[0].startswith(f"flowstudy: error: {expected}")
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not (tmp_path / "study").exists()
