"""Signals to a real training process: what it says, what it saves, and how it continues."""

from __future__ import annotations

import shlex
import signal
from pathlib import Path

import pytest
import torch

from flowstudy.checkpoint import Checkpoint
from flowstudy.results import RunResult

from ..helpers import TINY, cli, name_of, start_cli, start_train, wait_for, wait_for_text

pytestmark = pytest.mark.e2e


NAME = name_of(TINY)


@pytest.mark.slow
def test_sighup_while_building_the_data_says_so_and_leaves_interrupted(tmp_path: Path,
                                                                       study: list[str]) -> None:
    # A data source as slow as a network filesystem: the signal lands while it is read.
    slow = """
        import time, flowstudy.build as b
        real = b.build_data
        def build_data(*a, **k):
            time.sleep(60)
            return real(*a, **k)
        b.build_data = build_data
    """
    proc = start_cli([*TINY, *study, "wandb.mode=disabled"], tmp_path, slow)
    result = tmp_path / "study" / "runs" / NAME / "result.json"
    wait_for(result, '"status": "running"', proc)
    proc.send_signal(signal.SIGHUP)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGHUP
    assert stderr.strip().splitlines()[-3:-1] == [
        "flowstudy: stopped by SIGHUP while building the data and model", "continue with:"]
    saved = RunResult.load(result)
    assert saved.status == "interrupted" and "while building the data" in saved.error


@pytest.mark.slow
def test_sigterm_during_final_evaluation_keeps_training_and_the_rerun_only_evaluates(
        tmp_path: Path, study: list[str]) -> None:
    args = [*TINY, *study, "wandb.mode=offline", "sample.steps=1500"]  # a long evaluation
    name = name_of(args)
    proc = start_cli(args, tmp_path)
    result = tmp_path / "study" / "runs" / name / "result.json"
    wait_for(result, '"status": "trained"', proc)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    lines = stderr.strip().splitlines()
    assert lines[-3] == ("flowstudy: stopped by SIGTERM while evaluating best.pt (training had "
                         "finished; rerun the same command to evaluate it without retraining)")
    assert lines[-2] == "continue with:"
    saved = RunResult.load(result)
    assert saved.status == "trained" and saved.epochs == 3 and saved.best_val_loss is not None
    best = (tmp_path / "study" / "checkpoints" / name / "best.pt").read_bytes()

    rerun = cli([*args, "resume=auto"], cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{name}: training finished earlier; evaluating" in rerun.stderr + rerun.stdout
    done = RunResult.load(result)
    assert done.status == "completed" and done.metrics["w2"] > 0
    assert (done.epochs, done.best_val_loss) == (saved.epochs, saved.best_val_loss)
    assert (tmp_path / "study" / "checkpoints" / name / "best.pt").read_bytes() == best


LONG = [*TINY, "dataset.size=3000", "train.epochs=12", "checkpoint.save_last=true",
        "wandb.mode=disabled"]


LONG_NAME, LONG50_NAME = name_of(LONG), name_of([*LONG, "train.epochs=50"])


@pytest.mark.slow
def test_sigterm_saves_last_marks_interrupted_and_the_printed_command_resumes_exactly(
        tmp_path: Path) -> None:
    straight = cli([*LONG, f"study_dir={tmp_path / 'a'}", f"hydra.run.dir={tmp_path / 'oa'}"],
                   cwd=tmp_path)
    assert straight.returncode == 0, straight.stderr

    study = tmp_path / "b"
    proc = start_train([*LONG, f"study_dir={study}", f"hydra.run.dir={tmp_path / 'ob'}"], tmp_path)
    metrics = study / "runs" / LONG_NAME / "metrics.jsonl"
    wait_for_text(metrics, '"epoch": 2')
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "stopped by SIGTERM; state saved to" in stderr
    result = RunResult.load(study / "runs" / LONG_NAME / "result.json")
    assert result.status == "interrupted" and 0 < result.epochs < 12

    command = stderr.strip().splitlines()[-1].strip()
    assert command.startswith("python -m flowstudy.train ") and "resume=" in command
    args = shlex.split(command)[3:]
    resumed = cli(args, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert RunResult.load(study / "runs" / LONG_NAME / "result.json").status == \
        "completed"

    a = Checkpoint.load(tmp_path / "a" / "checkpoints" / LONG_NAME / "last.pt")
    b = Checkpoint.load(study / "checkpoints" / LONG_NAME / "last.pt")
    for key in ("model", "ema"):
        flat_a = a.train[key] if key == "model" else a.ema_weights()
        flat_b = b.train[key] if key == "model" else b.ema_weights()
        assert all(torch.equal(flat_a[k], flat_b[k]) for k in flat_a)
    assert (tmp_path / "a" / "runs" / LONG_NAME / "metrics.jsonl").read_text() == \
        metrics.read_text()


@pytest.mark.slow
def test_a_second_signal_aborts_at_once_and_corrupts_nothing(tmp_path: Path) -> None:
    study = tmp_path / "study"
    proc = start_train([*LONG, "train.epochs=50", f"study_dir={study}",
                        f"hydra.run.dir={tmp_path / 'o'}"], tmp_path)
    wait_for_text(study / "runs" / LONG50_NAME / "metrics.jsonl", '"epoch": 2')
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=120)
    assert proc.returncode != 0
    ckpt_dir = study / "checkpoints" / LONG50_NAME
    assert Checkpoint.load(ckpt_dir / "best.pt").epoch >= 1
    assert not [p for p in ckpt_dir.iterdir() if p.suffix == ".tmp"]
    assert RunResult.load(study / "runs" / LONG50_NAME / "result.json").status == \
        "interrupted"


@pytest.mark.slow
def test_two_runs_of_the_same_name_at_once_the_second_refuses(tmp_path: Path) -> None:
    study = tmp_path / "study"
    first = start_train([*LONG, "train.epochs=50", f"study_dir={study}",
                         f"hydra.run.dir={tmp_path / 'o1'}"], tmp_path)
    try:
        wait_for_text(study / "runs" / LONG50_NAME / "metrics.jsonl", '"step"')
        second = cli([*LONG, "train.epochs=50", f"study_dir={study}",
                      f"hydra.run.dir={tmp_path / 'o2'}", "force=true"], cwd=tmp_path)
        assert second.returncode == 2
        assert f"run '{LONG50_NAME}' is already running (pid" in second.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=120)
