"""One run through the real command line (``python -m flowstudy.train``): what it writes, and
the one-line errors it exits with."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from flowstudy.checkpoint import Checkpoint
from flowstudy.metrics import PROJECTED, SET_METRICS
from flowstudy.models import build_model
from flowstudy.resolve import arch_sizes
from flowstudy.results import RunResult

from ..helpers import TINY, TINY_MLP, TINY_TRAIN, cli, compose_config, name_of
from ..wandb_files import find_run_files, read_run

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(("args", "expected"), [
    (["train.lr=(1"], "'train.lr=(1' is not a valid override (extraneous input '('); quote a "
     "value holding spaces, brackets or commas, e.g. 'name=\"a b\"'"),
    (["train.lr=1", "2"], "'2' is not an override (key=value); quote a value holding spaces, "
     "brackets or commas, e.g. 'name=\"a b\"'"),
    (["hydra.run.dir=afile"], "afile: File exists; hydra.run.dir (hydra.sweep.dir with -m) must "
     "be a directory that can be created and written"),
])
def test_command_line_mistakes_are_one_line_with_exit_2(tmp_path: Path, args: list[str],
                                                        expected: str) -> None:
    (tmp_path / "afile").write_text("")
    proc = cli([f"study_dir={tmp_path / 'study'}", *args], cwd=tmp_path)
    assert (proc.returncode, proc.stderr.strip()) == (2, f"flowstudy: error: {expected}")
    assert not (tmp_path / "study").exists()


TINY_NAME = name_of(TINY)


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


@pytest.mark.slow
def test_the_quick_preset_runs_end_to_end_and_records_what_it_resolved(tmp_path: Path) -> None:
    args = ["experiment=quick", "wandb.mode=disabled", "train.threads=1"]
    first = cli(args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    name = "quick-mlp-ot-moons-none"
    result = json.loads((tmp_path / "study" / "runs" / name / "result.json").read_text())
    assert result["status"] == "completed" and result["epochs"] == 2
    r = result["resolved"]
    assert (r["n_train"], r["batch_size"], r["steps_per_epoch"]) == (20_000, 256, 78)
    assert result["steps"] == 2 * 78 and r["arch"]["width"] == 256
    assert result["config"]["train"]["batch_size"] is None  # the identity is what was asked
    log = (next(tmp_path.glob("outputs/*/*/train.log"))).read_text()
    assert "resolved: split 20000/1000/1000" in log
    assert "train.warmup_steps" not in log  # 10 warmup steps < 156 planned: no warning
    ckpt = Checkpoint.load(tmp_path / "study" / "checkpoints" / name / "best.pt")
    assert ckpt.resolved == r
    again = cli(args, cwd=tmp_path)
    assert again.returncode == 0 and "skipping quick-mlp-ot-moons-none" in again.stderr + \
        again.stdout


def _metrics(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_cli_run_writes_checkpoint_metrics_result_picture_and_wandb_run(
        tmp_path: Path, study: list[str]) -> None:
    proc = cli([*TINY, *study, "wandb.tags=[smoke]"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    name = name_of(TINY)
    ckpt_dir = tmp_path / "study" / "checkpoints" / name
    run_dir = tmp_path / "study" / "runs" / name

    result = RunResult.load(run_dir / "result.json")
    assert result.status == "completed" and result.stop_reason == "max_epochs"
    assert (result.epochs, result.steps) == (3, 24)  # 512 // 64 = 8 steps per epoch
    assert result.params == sum(p.numel() for p in build_model(
        arch_sizes(compose_config(TINY).arch, 2), 2).parameters())
    assert 0 < result.metrics["w2"] < 5 and result.wall_time_s > 0 and result.nfe == 8
    yardsticks = {f"{k}{f}" for k in SET_METRICS for f in ("", "_floor", "_baseline")}
    assert set(result.metrics) == yardsticks | {"test_nll", "test_nll_baseline"}
    assert result.checkpoint == str(ckpt_dir / "best.pt")
    assert result.config["arch"] == {"name": "mlp", "width": 32, "depth": 2}

    stored = torch.load(ckpt_dir / "best.pt", weights_only=True)  # the file's own layout
    for key in ("model", "ema", "optimizer", "early_stopping", "epoch", "step", "config",
                "normalizer", "rng", "generators", "wandb_run_id"):
        assert key in stored, key
    ckpt = Checkpoint.load(ckpt_dir / "best.pt")
    assert ckpt.epoch == result.best_epoch
    assert ckpt.train["early_stopping"]["best"] == result.best_val_loss
    assert (ckpt_dir / "samples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    records = _metrics(run_dir / "metrics.jsonl")
    train = [r for r in records if "train/loss" in r]
    val = [r for r in records if "val/ema_loss" in r]
    assert [r["step"] for r in train] == [4, 8, 12, 16, 20, 24]
    assert [(r["step"], r["epoch"]) for r in val] == [(8, 1), (16, 2), (24, 3)]
    assert min(r["val/ema_loss"] for r in val) == result.best_val_loss

    files = find_run_files(tmp_path / "out")
    assert len(files) == 1
    wb = read_run(files[0])
    assert (wb.name, wb.group, wb.project) == (name, "default", "flow-matching-study")
    assert wb.run_id == ckpt.wandb_run_id and wb.tags == ["smoke"] and wb.exit_code == 0
    assert {k: wb.config[k] for k in result.config} == result.config
    assert wb.summary["best_val_loss"] == result.best_val_loss
    assert wb.summary["val/ema_loss"] == {"min": result.best_val_loss}
    assert wb.summary["checkpoint"] == result.checkpoint
    assert wb.summary["sample/w2"] == result.metrics["w2"]
    assert wb.summary["samples/_type"] == "image-file"
    assert [h["_step"] for h in wb.history if "train/loss" in h] == [4, 8, 12, 16, 20, 24]


@pytest.mark.parametrize(
    ("resume", "expected"),
    [
        ("missing.pt", "resume=missing.pt: no such file"),
        (".", "resume=.: is a directory"),
        ("junk.pt", "resume=junk.pt: not a readable checkpoint"),
    ],
)
def test_cli_broken_resume_path_is_one_clear_error(tmp_path: Path, study: list[str],
                                                   resume: str, expected: str) -> None:
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    proc = cli([*TINY, *study, f"resume={resume}"], cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"flowstudy: error: {expected}"] or \
        proc.stderr.strip().startswith(f"flowstudy: error: {expected}")
    assert not (tmp_path / "study" / "runs").exists()


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("arch.width=abc", "arch.width: Value 'abc'"),
        ("train.lr=-1", "train.lr=-1.0 is not allowed: a float > 0"),
        ("train.bogus=3", "train.bogus is not a known key"),
        ("arch=nosuch", "arch=nosuch is not an option; available: dit, mlp, unet"),
    ],
)
def test_cli_rejects_bad_input_before_any_work(tmp_path: Path, override: str,
                                               expected: str) -> None:
    proc = cli([f"study_dir={tmp_path / 'study'}", f"hydra.run.dir={tmp_path / 'out'}",
                override], cwd=tmp_path)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == [lines[0]] and lines[0].startswith(f"flowstudy: error: {expected}")
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not (tmp_path / "study").exists()


def test_a_run_on_unit_norm_vectors_records_auto_global_projected_metrics_and_its_times(
        tmp_path: Path) -> None:
    x = torch.nn.functional.normalize(torch.randn(400, 8, generator=torch.Generator()
                                                  .manual_seed(0)), dim=1)
    torch.save(x, tmp_path / "unit8.pt")
    args = ["dataset=embeddings", f"dataset.path={tmp_path / 'unit8.pt'}", *TINY_MLP,
            *TINY_TRAIN, "train.epochs=1", "sample.likelihood=false", "sample.project_norm=true",
            "flow.time_sampling=beta", "wandb.mode=disabled", "train.threads=1"]
    proc = cli(args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    name = name_of(args)
    assert "-project_normtrue-" in name and "-time_samplingbeta-" in name
    result = json.loads((tmp_path / "study" / "runs" / name / "result.json").read_text())
    assert result["status"] == "completed"
    # dataset.normalize=null resolved from the data (unit norms: global); the identity keeps null
    assert result["resolved"]["normalize"] == "global" and result["resolved"]["norm_cv"] < 1e-6
    assert result["config"]["dataset"]["normalize"] is None
    m = result["metrics"]
    assert all(math.isfinite(m[k]) and math.isfinite(m[f"{k}{PROJECTED}"]) for k in SET_METRICS
               if not k.startswith("c2st"))
    assert m[f"norm_w1{PROJECTED}"] < 1e-6  # on the unit sphere, as the test points are
    assert m[f"norm_mean{PROJECTED}"] == pytest.approx(1.0)
    log = (next(tmp_path.glob("outputs/*/*/train.log"))).read_text()
    assert "normalize global (row norms' CV" in log
    assert "/ projected: the model's, rescaled to the data's norm" in log
