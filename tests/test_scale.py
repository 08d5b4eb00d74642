"""Precision, accumulation, compile, determinism, DDP through torchrun, and what a run cost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from flowstudy.build import build
from flowstudy.checkpoint import Checkpoint
from flowstudy.config import Config
from flowstudy.errors import ConfigError
from flowstudy.results import RunResult
from flowstudy.rng import seed_everything
from flowstudy.run import run
from flowstudy.trainer import Checkpoints, fit

from .helpers import TINY, cli, compose_config, name_of
from .wandb_files import find_run_files, read_run


def _config(tmp_path: Path, *overrides: str) -> Config:
    return compose_config([*TINY, f"study_dir={tmp_path / 'study'}", "wandb.mode=disabled",
                           *overrides])


class Sink:
    def log(self, metrics: dict[str, float], step: int) -> None:
        pass


def test_bf16_autocast_trains_on_cpu_with_fp32_weights(tmp_path: Path) -> None:
    result = run(_config(tmp_path, "train.precision=bf16", "train.epochs=4"), tmp_path / "out")
    assert result.status == "completed"
    best = Checkpoint.load(Path(result.checkpoint))
    assert all(v.dtype == torch.float32 for v in best.train["model"].values())
    first = json.loads((tmp_path / "study" / "runs" / result.name / "metrics.jsonl")
                       .read_text().splitlines()[0])
    assert result.best_val_loss < first["train/loss"]


def test_fp16_needs_cuda(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match="fp16 needs CUDA"):
        run(_config(tmp_path, "train.precision=fp16"), tmp_path / "out")


def test_accumulation_gives_the_update_of_one_full_batch(tmp_path: Path) -> None:
    # One optimizer step on a 64-point batch: whole, or as two micro-batches of 32.
    weights = []
    for accum in (1, 2, 4):
        cfg = _config(tmp_path, f"train.accum_steps={accum}", "dataset.size=320", "train.epochs=1",
                      "dataset.n_val=128", "dataset.n_test=128")
        seed_everything(cfg.seed)
        built = build(cfg, torch.device("cpu"))
        fitted = fit(cfg.train, built.state, built.batches, built.val, Sink(),
                     Checkpoints(tmp_path / str(accum)), engine=built.engine)
        assert fitted.steps == 1 and built.state.ema.updates == 1
        weights.append([p.detach().clone() for p in built.state.model.parameters()])
    for other in weights[1:]:
        for a, b in zip(weights[0], other, strict=True):
            torch.testing.assert_close(a, b, atol=2e-6, rtol=1e-5)


def test_deterministic_runs_are_bitwise_equal(tmp_path: Path) -> None:
    results = [run(_config(tmp_path / str(i), "train.deterministic=true", "flow=minibatch_ot"),
                   tmp_path / "out") for i in range(2)]
    assert results[0].metrics == results[1].metrics
    a, b = (Checkpoint.load(Path(r.checkpoint)).train["model"] for r in results)
    assert all(torch.equal(a[k], b[k]) for k in a)
    torch.use_deterministic_algorithms(False)


@pytest.mark.slow
def test_compile_trains_or_falls_back_to_eager(tmp_path: Path) -> None:
    result = run(_config(tmp_path, "train.compile=true", "train.epochs=1"), tmp_path / "out")
    assert result.status == "completed" and result.steps == 8


def test_a_run_reports_what_it_cost(tmp_path: Path) -> None:
    result = run(_config(tmp_path, "arch.width=256"), tmp_path / "out")
    # A wide residual MLP spends its FLOPs in matmuls: forward + backward = 6 per weight and
    # sample (small models' norms and biases make the count fall below the estimate).
    per_step_6nd = result.flops_6nd / result.steps
    assert 0.8 < result.flops_per_step / per_step_6nd < 1.2
    assert result.flops == result.flops_per_step * result.steps
    assert result.steps_per_s > 0 and result.samples_per_s == pytest.approx(
        result.steps_per_s * 64, rel=0.01)
    assert result.peak_memory_bytes > 50 * 2**20


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
