"""Mixed precision: what each device allows, and bf16 autocast on a CPU."""

from __future__ import annotations

import pytest
import torch

from flowstudy.build import build
from flowstudy.errors import ConfigError

from .helpers import TINY, compose_config


def test_fp16_on_a_cpu_is_refused_before_training() -> None:
    cfg = compose_config([*TINY, "train.precision=fp16"])
    with pytest.raises(ConfigError) as info:
        build(cfg, torch.device("cpu"))
    assert str(info.value) == ("train.precision='fp16' is not allowed: fp32 or bf16 on a CPU "
                               "(fp16 needs CUDA)")
