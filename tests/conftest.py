from __future__ import annotations

from pathlib import Path

import pytest
import torch

from flowstudy.config import register_configs

torch.set_num_threads(1)
# pytest is an entry point too: tests that compose with Hydra's own API need the schemas.
register_configs()


@pytest.fixture

def study(tmp_path: Path) -> list[str]:
    """Overrides that keep every output of a run inside ``tmp_path``."""
    return [f"study_dir={tmp_path / 'study'}", f"hydra.run.dir={tmp_path / 'out'}"]
