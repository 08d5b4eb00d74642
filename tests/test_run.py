"""Whole runs in-process through ``flowstudy.run.run``: what a run writes, skips, refuses and
keeps when something fails."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from flowstudy.errors import UserError
from flowstudy.fileio import run_lock
from flowstudy.interrupt import Interrupted
from flowstudy.results import RunResult
from flowstudy.run import run

from .helpers import TINY, compose_config, name_of


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


NAME = name_of(TINY)


def test_a_study_dir_under_a_file_is_refused_before_any_work(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    cfg = compose_config([*TINY, f"study_dir={tmp_path / 'file' / 'study'}"])
    with pytest.raises(UserError) as info:
        run(cfg, tmp_path / "out")
    assert str(info.value) == (f"study_dir: {tmp_path}/file/study/checkpoints/{NAME} is not a "
                               f"writable directory (Not a directory)")


def test_same_name_runs_with_different_checkpoint_dirs_do_not_run_at_once(tmp_path: Path) -> None:
    cfg = compose_config([*TINY, f"study_dir={tmp_path / 'study'}", "wandb.mode=disabled",
                          f"checkpoint.dir={tmp_path / 'other'}"])
    run_dir = tmp_path / "study" / "runs" / NAME
    run_dir.mkdir(parents=True)
    with run_lock(run_dir / ".lock", "a run holding study/runs/<name>"), \
            pytest.raises(UserError, match=rf"run '{NAME}' is already running"):
        run(cfg, tmp_path / "out")
    assert not (run_dir / "result.json").exists()


def test_an_evaluation_failure_keeps_the_trained_run_and_the_rerun_only_evaluates(
        tmp_path: Path) -> None:
    cfg = compose_config([*TINY, f"study_dir={tmp_path / 'study'}", "wandb.mode=disabled"])
    ckpt_dir = tmp_path / "study" / "checkpoints" / NAME
    (ckpt_dir / "samples.png").mkdir(parents=True)  # the picture cannot be written
    with pytest.raises(IsADirectoryError):
        run(cfg, tmp_path / "out")
    result_path = tmp_path / "study" / "runs" / NAME / "result.json"
    failed = RunResult.load(result_path)
    assert failed.status == "trained" and failed.error.startswith("IsADirectoryError")
    assert failed.epochs == 3 and failed.best_val_loss is not None
    best = (ckpt_dir / "best.pt").read_bytes()
    metrics = (tmp_path / "study" / "runs" / NAME / "metrics.jsonl").read_text()

    (ckpt_dir / "samples.png").rmdir()
    done = run(cfg, tmp_path / "out")
    assert done.status == "completed" and done.error is None and not done.skipped
    assert (done.epochs, done.best_val_loss) == (failed.epochs, failed.best_val_loss)
    assert (ckpt_dir / "best.pt").read_bytes() == best  # not retrained
    after = (tmp_path / "study" / "runs" / NAME / "metrics.jsonl").read_text()
    assert after.startswith(metrics) and after.count('"train/loss"') == metrics.count(
        '"train/loss"')
    assert '"sample/w2"' in after and RunResult.load(result_path).status == "completed"
