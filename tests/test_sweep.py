"""What a sweep job returns (the objective Optuna reads) and prints (the progress line); the
Optuna search itself runs in tests/e2e/test_search.py."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from flowstudy.config import objective_direction
from flowstudy.errors import ConfigError
from flowstudy.results import RunResult
from flowstudy.sweep import check_search, objective, progress_line

from .helpers import compose_config


def test_a_job_returns_its_objective_or_none_for_optuna_to_fail_it() -> None:
    result = RunResult(name="a", group="g", status="completed", best_val_loss=1.5,
                       metrics={"w2": 0.2, "precision": 0.9})
    assert objective(result, "best_val_loss") == 1.5 and objective(result, "w2") == 0.2
    assert objective(result, "fd") is None  # a metric the run lacks
    result.metrics["w2"] = float("nan")
    assert objective(result, "w2") is None  # NaN would stop Optuna's whole study
    result.status = "diverged"
    assert objective(result, "best_val_loss") is None


def test_the_objective_sets_the_direction_and_is_checked() -> None:
    assert [objective_direction(m) for m in ("best_val_loss", "w2", "fd", "precision")] == [
        "minimize", "minimize", "minimize", "maximize"]
    with pytest.raises(ConfigError, match="objective='loss' is not allowed: one of best_val_loss"):
        compose_config(["objective=loss"])


def test_the_progress_line_counts_jobs_and_estimates_the_rest() -> None:
    record = {"name": "mlp-ot-moons-none-lr5e-4", "status": "completed"}
    assert progress_line(2, 6, record, "w2", 0.12345, 41.2, 125.0) == (
        "[2/6] mlp-ot-moons-none-lr5e-4  completed  w2 0.1235  41s  (sweep 2m05s, ~4m10s left)")
    failed = {"name": "b", "status": "failed", "error": "dataset.path=b.npy: no such file"}
    assert progress_line(6, 6, failed, "best_val_loss", None, 3, 7300) == (
        "[6/6] b  failed  best_val_loss -  3s  (sweep 2h01m)  (dataset.path=b.npy: no such file)")


def test_a_search_on_optunas_own_default_direction_is_checked_against_the_objective() -> None:
    config = pytest.importorskip("hydra_plugins.hydra_optuna_sweeper.config")
    search = {"hydra": {"sweeper": {"n_trials": 2, "n_jobs": 1,
                                    "direction": config.Direction.minimize}}}
    check_search(OmegaConf.create({"objective": "w2", **search}))  # hydra/sweeper=optuna alone
    with pytest.raises(ConfigError, match="maximize for objective=recall"):
        check_search(OmegaConf.create({"objective": "recall", **search}))
