"""Mixed precision: what each device allows, and bf16 autocast on a CPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from flowstudy.build import build
from flowstudy.checkpoint import Checkpoint
from flowstudy.config import Config
from flowstudy.errors import ConfigError
from flowstudy.run import run

from .helpers import TINY, compose_config


def test_fp16_on_a_cpu_is_refused_before_training() -> None:
    cfg = compose_config([*TINY, "train.precision=fp16"])
    with pytest.raises(ConfigError) as info:
        build(cfg, torch.device("cpu"))
    assert str(info.value) == ("train.precision='fp16' is not allowed: fp32 or bf16 on a CPU "
                               "(fp16 needs CUDA)")


def _config(tmp_path: Path, *overrides: str) -> Config:
    return compose_config([*TINY, f"study_dir={tmp_path / 'study'}", "wandb.mode=disabled",
                           *overrides])


def test_bf16_autocast_trains_on_cpu_with_fp32_weights(tmp_path: Path) -> None:
    result = run(_config(tmp_path, "train.precision=bf16", "train.epochs=4"), tmp_path / "out")
    assert result.status == "completed"
    best = Checkpoint.load(Path(result.checkpoint))
    assert all(v.dtype == torch.float32 for v in best.train["model"].values())
    first = json.loads((tmp_path / "study" / "runs" / result.name / "metrics.jsonl")
                       .read_text().splitlines()[0])
    assert result.best_val_loss < first["train/loss"]


def test_fp16_needs_cuda(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match="fp16 needs CUDA"):
        run(_config(tmp_path, "train.precision=fp16"), tmp_path / "out")
