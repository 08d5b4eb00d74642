from __future__ import annotations

from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture

def study(tmp_path: Path) -> list[str]:
    """Overrides that keep every output of a run inside ``tmp_path``."""
    return [f"study_dir={tmp_path / 'study'}", f"hydra.run.dir={tmp_path / 'out'}"]
