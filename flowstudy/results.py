"""A run's ``result.json``: what happened and what it reached, rewritten atomically."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from flowstudy.errors import Diverged
from flowstudy.fileio import write_json
from flowstudy.interrupt import Interrupted


@dataclass
class RunResult:
    name: str
    group: str
    status: str = "running"  # running | completed | failed | interrupted | diverged
    stop_reason: str | None = None  # max_epochs | early_stopping
    error: str | None = None
    epochs: int = 0
    steps: int = 0
    best_val_loss: float | None = None
    best_epoch: int | None = None
    wall_time_s: float = 0.0
    params: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)  # sample quality, each with a floor
    nfe: int | None = None  # velocity evaluations used to sample
    checkpoint: str | None = None
    samples_png: str | None = None
    config: dict[str, Any] = field(default_factory=dict)

    def save(self, path: str | os.PathLike[str]) -> None:
        write_json(path, asdict(self))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> RunResult:
        return cls(**json.loads(Path(path).read_text()))


def status_for(error: BaseException | None) -> str:
    """The final status of a run that ended with ``error`` (None: it completed)."""
    if error is None:
        return "completed"
    if isinstance(error, (Interrupted, KeyboardInterrupt)):
        return "interrupted"
    return "diverged" if isinstance(error, Diverged) else "failed"
