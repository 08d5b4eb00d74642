from __future__ import annotations

from pathlib import Path

import pytest
import torch

from flowstudy.config import register_configs

from .helpers import TINY, compose_config

torch.set_num_threads(1)
# pytest is an entry point too: tests that compose with Hydra's own API need the schemas.
register_configs()


@pytest.fixture

def study(tmp_path: Path) -> list[str]:
    """Overrides that keep every output of a run inside ``tmp_path``."""
    return [f"study_dir={tmp_path / 'study'}", f"hydra.run.dir={tmp_path / 'out'}"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny completed run, trained once in-process per module that asks (tests/test_sample.py,
    tests/e2e/test_sample.py); returns the directory it ran in."""
    from flowstudy.run import run

    root = tmp_path_factory.mktemp("sample")
    cfg = compose_config([*TINY, f"study_dir={root / 'study'}", "wandb.mode=disabled"])
    run(cfg, root / "out")
    return root
