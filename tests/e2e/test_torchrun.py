"""DDP through torchrun: two gloo ranks train like one process, and resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flowstudy.results import RunResult

from ..helpers import TINY, cli, name_of
from ..wandb_files import find_run_files, read_run

pytestmark = pytest.mark.e2e


def _torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_SILENT": "true"}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node=2", "-m", "flowstudy.train", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=600)


def _records(study: Path, name: str) -> list[dict]:
    path = study / "runs" / name / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_torchrun_two_ranks_train_like_one_process_and_resume(tmp_path: Path) -> None:
    common = [*TINY, "train.epochs=3", "train.log_every=1", "checkpoint.save_last=true",
              "train.device=cpu"]  # gloo: two ranks on any machine, GPUs or not
    single = cli([*common, f"study_dir={tmp_path / 'one'}", f"hydra.run.dir={tmp_path / 'o1'}",
                  "wandb.mode=disabled"], cwd=tmp_path)
    assert single.returncode == 0, single.stderr
    ddp = _torchrun([*common, f"study_dir={tmp_path / 'two'}",
                     f"hydra.run.dir={tmp_path / 'o2'}"], tmp_path)
    assert ddp.returncode == 0, ddp.stderr[-3000:]

    study, name = tmp_path / "two", name_of(common)
    assert [p.name for p in (study / "runs").iterdir()] == [name]
    ckpts = sorted(p.name for p in (study / "checkpoints" / name).iterdir())
    assert ckpts == ["best.pt", "last.pt", "samples.npz", "samples.png"]
    assert len(find_run_files(tmp_path / "o2")) == 1
    assert read_run(find_run_files(tmp_path / "o2")[0]).exit_code == 0
    result = RunResult.load(study / "runs" / name / "result.json")
    assert result.status == "completed" and result.steps == 24

    # Same global batch and seed: the same loss curve, up to float reduction order.
    one, two = _records(tmp_path / "one", name), _records(study, name)
    assert [r["step"] for r in one] == [r["step"] for r in two]
    for a, b in zip(one, two, strict=True):
        for key in ("train/loss", "val/ema_loss"):
            if key in a:
                assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-5), (a["step"], key)

    last = study / "checkpoints" / name / "last.pt"
    again = _torchrun([*common, "train.epochs=5", f"study_dir={study}",
                       f"hydra.run.dir={tmp_path / 'o3'}", f"resume={last}"], tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    # More epochs make a branch of its own; the 3-epoch run stays as it was.
    resumed = RunResult.load(study / "runs" / f"{name}+epochs5" / "result.json")
    assert (resumed.status, resumed.epochs, resumed.steps) == ("completed", 5, 40)
    assert [r["epoch"] for r in _records(study, f"{name}+epochs5") if "val/ema_loss" in r] == \
        [1, 2, 3, 4, 5]
    assert RunResult.load(study / "runs" / name / "result.json").epochs == 3


def test_a_bad_value_under_torchrun_is_said_once(tmp_path: Path) -> None:
    """Issue 21 item 6: both ranks refuse, only rank 0 prints the line (torchrun's own
    ChildFailedError report follows it: torchrun's code, not flowstudy's)."""
    done = _torchrun(["train.lr=-1", f"hydra.run.dir={tmp_path / 'out'}"], tmp_path)
    assert done.returncode != 0
    assert done.stderr.count("flowstudy: error: train.lr=-1.0 is not allowed: a float > 0") == 1
