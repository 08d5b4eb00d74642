"""Signals to a real training process: what it says, what it saves, and how it continues."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from flowstudy.results import RunResult

from ..helpers import TINY, cli, name_of, start_cli, wait_for

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
