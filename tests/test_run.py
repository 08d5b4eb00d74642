"""Whole runs in-process through ``flowstudy.run.run``: what a run writes, skips, refuses and
keeps when something fails."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from flowstudy.interrupt import Interrupted
from flowstudy.results import RunResult
from flowstudy.run import run

from .helpers import TINY, compose_config


def test_resume_auto_continues_an_interrupted_run_from_its_last_checkpoint(
        tmp_path: Path) -> None:
    cfg = compose_config([*TINY, "dataset.size=3000", "train.epochs=6",
                          f"study_dir={tmp_path / 'study'}", "wandb.mode=disabled"])
    metrics = tmp_path / "study" / "runs" / cfg.name / "metrics.jsonl"

    def signal_when_training() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if metrics.exists() and '"epoch": 1' in metrics.read_text():
                os.kill(os.getpid(), signal.SIGTERM)
                return
            time.sleep(0.01)

    threading.Thread(target=signal_when_training, daemon=True).start()
    with pytest.raises(Interrupted):
        run(cfg, tmp_path / "out")
    interrupted = RunResult.load(metrics.parent / "result.json")
    assert interrupted.status == "interrupted"

    cfg.resume = "auto"
    result = run(cfg, tmp_path / "out")
    assert result.status == "completed" and result.epochs == 6
    assert result.steps == 6 * (2744 // 64)  # no step trained twice: it continued
    assert not result.skipped
