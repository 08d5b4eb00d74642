"""Interruptions, mid-epoch resume, and the catalogue of bad inputs."""

from __future__ import annotations

import errno
import io
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from flowstudy import checkpoint as checkpoint_module
from flowstudy.build import build
from flowstudy.checkpoint import Checkpoint, CheckpointError
from flowstudy.config import Config
from flowstudy.errors import UserError
from flowstudy.interrupt import Interrupted, StopRequest
from flowstudy.models import MODELS
from flowstudy.results import RunResult
from flowstudy.rng import seed_everything, set_rng_state
from flowstudy.run import run
from flowstudy.trainer import Checkpoints, fit

from .helpers import TINY, cli, compose_config, name_of


def _config(tmp_path: Path, *overrides: str) -> Config:
    return compose_config([*TINY, f"study_dir={tmp_path / 'study'}", "wandb.mode=disabled",
                           *overrides])


class StopAt:
    """A metrics sink that raises the stop flag, as a signal handler would, at a given step."""

    def __init__(self, stop: StopRequest, step: int) -> None:
        self.stop, self.at, self.records = stop, step, []

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.records.append({"step": step, **metrics})
        if step == self.at:
            self.stop.signum = signal.SIGTERM


# 8 batches per pass; min_epoch_steps=20 makes an epoch 3 passes (24 steps), and step 35 lands
# in the second pass of the second epoch.
@pytest.mark.parametrize(("flow", "min_epoch_steps", "stop_step"),
                         [("ot", 1, 11), ("minibatch_ot", 1, 11), ("minibatch_ot", 20, 35)])
def test_a_mid_epoch_stop_resumes_bitwise(tmp_path: Path, flow: str, min_epoch_steps: int,
                                          stop_step: int) -> None:
    cfg = _config(tmp_path, f"flow={flow}", "train.epochs=3", "train.log_every=1",
                  f"train.min_epoch_steps={min_epoch_steps}")

    def fresh():
        seed_everything(cfg.seed)
        return build(cfg, torch.device("cpu"))

    straight = fresh()
    never = StopRequest()
    sink_a = StopAt(never, -1)
    fit(cfg.train, straight.state, straight.batches, straight.val, sink_a,
        Checkpoints(tmp_path / "a"), stop=never)

    first, stop = fresh(), StopRequest()
    per_epoch = first.batches.steps_per_epoch
    assert per_epoch == 8 * first.resolved.passes_per_epoch and per_epoch >= min_epoch_steps
    with pytest.raises(Interrupted):
        fit(cfg.train, first.state, first.batches, first.val, StopAt(stop, stop_step),
            Checkpoints(tmp_path / "b"), stop=stop)
    last = Checkpoint.load(tmp_path / "b" / "last.pt")
    assert (last.epoch, last.train["batch"], last.step) == (
        stop_step // per_epoch, stop_step % per_epoch, stop_step)

    resumed, sink_b = fresh(), StopAt(never, -1)
    resumed.state.load_state_dict(last.train)
    set_rng_state(last.rng)
    fit(cfg.train, resumed.state, resumed.batches, resumed.val, sink_b,
        Checkpoints(tmp_path / "c"), stop=never)
    for a, b in zip([*straight.state.model.parameters(), *straight.state.ema.module.parameters()],
                    [*resumed.state.model.parameters(), *resumed.state.ema.module.parameters()],
                    strict=True):
        assert torch.equal(a, b)
    assert sink_b.records == [r for r in sink_a.records if r["step"] > stop_step]


def _start(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_SILENT": "true"}
    return subprocess.Popen([sys.executable, "-m", "flowstudy.train", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(path: Path, text: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text():
            return
        time.sleep(0.05)
    raise TimeoutError(f"{text!r} never appeared in {path}")


LONG = [*TINY, "dataset.size=3000", "train.epochs=12", "checkpoint.save_last=true",
        "wandb.mode=disabled"]
LONG_NAME, LONG50_NAME = name_of(LONG), name_of([*LONG, "train.epochs=50"])
TINY_NAME = name_of(TINY)


@pytest.mark.slow
def test_sigterm_saves_last_marks_interrupted_and_the_printed_command_resumes_exactly(
        tmp_path: Path) -> None:
    straight = cli([*LONG, f"study_dir={tmp_path / 'a'}", f"hydra.run.dir={tmp_path / 'oa'}"],
                   cwd=tmp_path)
    assert straight.returncode == 0, straight.stderr

    study = tmp_path / "b"
    proc = _start([*LONG, f"study_dir={study}", f"hydra.run.dir={tmp_path / 'ob'}"], tmp_path)
    metrics = study / "runs" / LONG_NAME / "metrics.jsonl"
    _wait_for(metrics, '"epoch": 2')
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
    proc = _start([*LONG, "train.epochs=50", f"study_dir={study}",
                   f"hydra.run.dir={tmp_path / 'o'}"], tmp_path)
    _wait_for(study / "runs" / LONG50_NAME / "metrics.jsonl", '"epoch": 2')
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
    first = _start([*LONG, "train.epochs=50", f"study_dir={study}",
                    f"hydra.run.dir={tmp_path / 'o1'}"], tmp_path)
    try:
        _wait_for(study / "runs" / LONG50_NAME / "metrics.jsonl", '"step"')
        second = cli([*LONG, "train.epochs=50", f"study_dir={study}",
                      f"hydra.run.dir={tmp_path / 'o2'}", "force=true"], cwd=tmp_path)
        assert second.returncode == 2
        assert f"run '{LONG50_NAME}' is already running (pid" in second.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=120)


def test_an_unwritable_checkpoint_dir_is_refused_before_any_work(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    proc = cli([*TINY, f"study_dir={tmp_path / 'study'}", f"checkpoint.dir={blocker}/ckpts",
                f"hydra.run.dir={tmp_path / 'out'}"], cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"flowstudy: error: checkpoint.dir: {blocker}/ckpts/"
                                   f"{TINY_NAME} is not a writable directory "
                                   f"(Not a directory)")
    assert not (tmp_path / "study").exists()


def test_disk_full_while_saving_keeps_the_previous_checkpoint(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    path = tmp_path / "best.pt"
    Checkpoint({"epoch": 1, "w": torch.ones(10)}, {}, {}).save(path)
    before = path.read_bytes()

    def full_disk(obj: object, f: io.BufferedWriter) -> None:
        f.write(b"partial checkpoint bytes")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint_module.torch, "save", full_disk)
    with pytest.raises(CheckpointError, match=r"No space left on device.*previous best\.pt"):
        Checkpoint({"epoch": 2, "w": torch.zeros(10)}, {}, {}).save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["best.pt"]


class WrongShape(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.layer = nn.Linear(dim, dim + 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


def test_a_model_with_the_wrong_output_shape_is_refused(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(MODELS, "mlp", lambda cfg, dim: WrongShape(dim))
    with pytest.raises(UserError, match=r"maps x_t of shape \[2, 2\] to \[2, 3\]"):
        run(_config(tmp_path), tmp_path / "out")
    result = RunResult.load(tmp_path / "study" / "runs" / TINY_NAME / "result.json")
    assert result.status == "failed" and "a velocity must have the shape of x_t" in result.error


def test_gradient_statistics_are_logged_when_asked_and_absent_by_default(tmp_path: Path) -> None:
    run(_config(tmp_path / "on", "train.grad_stats_every=4"), tmp_path / "out")
    run(_config(tmp_path / "off"), tmp_path / "out")
    on = (tmp_path / "on" / "study" / "runs" / TINY_NAME / "metrics.jsonl").read_text()
    off = (tmp_path / "off" / "study" / "runs" / TINY_NAME / "metrics.jsonl").read_text()
    records = [json.loads(line) for line in on.splitlines()]
    stats = [r for r in records if "grad/inp.weight/l2" in r]
    assert [r["step"] for r in stats] == [0, 4, 8, 12, 16, 20]
    first = stats[0]
    assert first["grad/inp.weight/l2"] > 0 and first["grad/inp.weight/max_abs"] > 0
    assert 0 <= first["grad/out.2.weight/zero_frac"] <= 1
    assert "grad/" not in off
