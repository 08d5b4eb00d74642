"""What a run cost: FLOPs (counted and 6ND), throughput, peak memory."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowstudy.config import Config
from flowstudy.run import run

from .helpers import TINY, compose_config


def _config(tmp_path: Path, *overrides: str) -> Config:
    return compose_config([*TINY, f"study_dir={tmp_path / 'study'}", "wandb.mode=disabled",
                           *overrides])


def test_a_run_reports_what_it_cost(tmp_path: Path) -> None:
    result = run(_config(tmp_path, "arch.width=256"), tmp_path / "out")
    # A wide residual MLP spends its FLOPs in matmuls: forward + backward = 6 per weight and
    # sample (small models' norms and biases make the count fall below the estimate).
    per_step_6nd = result.flops_6nd / result.steps
    assert 0.8 < result.flops_per_step / per_step_6nd < 1.2
    assert result.flops == result.flops_per_step * result.steps
    assert result.steps_per_s > 0 and result.samples_per_s == pytest.approx(
        result.steps_per_s * 64, rel=0.01)
    assert result.peak_memory_bytes > 50 * 2**20
