"""Files on real filesystems and left by real processes: a full disk (a small tmpfs, mounted
for the test) and a killed writer's temporary file."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from flowstudy.checkpoint import Checkpoint, CheckpointError
from flowstudy.data.fingerprint import data_fingerprint
from flowstudy.fileio import _HOST
from flowstudy.lineage import segment
from flowstudy.results import RunResult
from flowstudy.run import run
from flowstudy.tracking import Tracker

from ..helpers import TINY, compose_config, name_of, start_cli, wait_for

pytestmark = pytest.mark.e2e


NAME = name_of(TINY)


def test_a_killed_saves_temporary_file_is_removed_by_the_next_save(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    orphan = tmp_path / f".best.pt.{_HOST}.{dead.stdout.strip()}.abc123.tmp"
    orphan.write_bytes(b"\0" * 1000)
    mine = tmp_path / f".best.pt.{_HOST}.{os.getpid()}.zzz.tmp"  # a live writer's: kept
    mine.write_bytes(b"")
    Checkpoint({"epoch": 1}, {}, {}).save(tmp_path / "best.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["best.pt", mine.name])


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here ({mounted.stderr.strip()})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _fill(directory: Path, *growing: str) -> None:
    """Fill the filesystem of ``directory``, and the last page of each ``growing`` file."""
    for name, chunk in [("filler", 65536), *((g, 1) for g in growing)]:
        with contextlib.suppress(OSError), open(directory / name, "ab", buffering=0) as f:
            while True:
                f.write(b" " * chunk)


def test_disk_full_on_a_real_filesystem_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "small", "1m") as small:
        path = small / "best.pt"
        Checkpoint({"epoch": 1, "w": torch.ones(100_000)}, {}, {}).save(path)  # 400 kB
        before = path.read_bytes()
        with pytest.raises(CheckpointError) as info:
            Checkpoint({"epoch": 2, "w": torch.zeros(200_000)}, {}, {}).save(path)  # no room
        assert str(info.value) == (f"could not write {path} (No space left on device); the "
                                   f"previous best.pt, if any, is intact")
        assert path.read_bytes() == before
        assert [p.name for p in small.iterdir()] == ["best.pt"]


def test_a_run_whose_checkpoints_do_not_fit_fails_in_one_line(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "small", "16k") as small:
        cfg = compose_config([*TINY, f"study_dir={tmp_path / 'study'}", "wandb.mode=disabled",
                              f"checkpoint.dir={small}"])
        with pytest.raises(CheckpointError) as info:
            run(cfg, tmp_path / "out")
        assert str(info.value) == (f"could not write {small / NAME / 'best.pt'} (No space left "
                                   f"on device); the previous best.pt, if any, is intact")
        result = RunResult.load(tmp_path / "study" / "runs" / NAME / "result.json")
        assert result.status == "failed" and "No space left on device" in result.error
        # no half-written .tmp is left; the checkpoint directory the run made, then empty, is
        # removed with it (a failed run leaves no empty directories)
        assert not (small / NAME).exists() and not list(small.rglob("*.tmp"))


def test_a_full_metrics_directory_warns_once_and_training_goes_on(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = compose_config([*TINY, "wandb.mode=disabled"])
    with tmpfs(tmp_path / "small", "64k") as small:
        lineage = [segment(cfg, data_fingerprint(cfg.dataset, tmp_path), None)]
        tracker = Tracker(cfg, tmp_path / "out", small / "metrics.jsonl", lineage)
        with tracker:
            tracker.log({"train/loss": 1.0}, 1)
            _fill(small, "metrics.jsonl")
            for step in range(2, 200):
                tracker.log({"train/loss": 1.0, "pad": "x" * 200}, step)
        lines = (small / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[0]) == {"step": 1, "train/loss": 1.0}
    warnings = [r.getMessage() for r in caplog.records if "could not write" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].startswith(f"could not write {small / 'metrics.jsonl'} (No space left on "
                                  f"device); metrics go to W&B only from step ")


@pytest.mark.slow
def test_a_full_log_directory_warns_once_and_the_run_completes(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "logs", "256k") as logs:
        proc = start_cli([*TINY, "train.epochs=6", f"study_dir={tmp_path / 'study'}",
                          f"hydra.run.dir={logs}", "wandb.mode=disabled"], tmp_path)
        wait_for(logs / "train.log", "epoch 1/6", proc)
        _fill(logs, "train.log")
        _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert "Logging error" not in stderr and "Traceback" not in stderr
    assert stderr.count(f"flowstudy: warning: could not write the log file {logs}/train.log "
                        f"([Errno 28] No space left on device); logging to the console "
                        f"only") == 1
    name = name_of([*TINY, "train.epochs=6"])
    assert RunResult.load(tmp_path / "study" / "runs" / name / "result.json").status == \
        "completed"
