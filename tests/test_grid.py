"""Every config option trains and samples; every flow learns moons; every ablation sweeps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from flowstudy.config import group_options
from flowstudy.data import build_data
from flowstudy.evaluate import evaluate
from flowstudy.models import build_model
from flowstudy.resolve import arch_sizes
from flowstudy.results import RunResult
from flowstudy.run import run

from .helpers import SMALL_ARCH, SMALL_DATA, TINY_MOONS, TINY_TRAIN, cli, compose_config
from .wandb_files import find_run_files, read_run

PNG = b"\x89PNG\r\n\x1a\n"


def _run(tmp_path: Path, *overrides: str, arch: str = "mlp", data: str = "moons") -> RunResult:
    cfg = compose_config([f"arch={arch}", f"dataset={data}", *SMALL_ARCH[arch],
                          *SMALL_DATA.get(data, TINY_MOONS), *TINY_TRAIN, "train.epochs=2",
                          f"study_dir={tmp_path / 'study'}", "wandb.mode=disabled", *overrides])
    result = run(cfg, tmp_path / "out")
    assert result.status == "completed" and result.steps > 0
    dim = build_data(cfg.dataset, tmp_path / "study").dim
    model = build_model(arch_sizes(cfg.arch, dim), dim)
    assert result.params == sum(p.numel() for p in model.parameters())
    assert Path(result.samples_png).read_bytes()[:8] == PNG
    assert all(np.isfinite(v) for v in result.metrics.values()), result.metrics
    return result


@pytest.mark.parametrize("arch", group_options("arch"))
@pytest.mark.parametrize("data", ["moons", "digits"])
def test_every_arch_trains_and_samples(tmp_path: Path, arch: str, data: str) -> None:
    assert _run(tmp_path, arch=arch, data=data).name.startswith(f"{arch}-ot-{data}-none-")


@pytest.mark.parametrize("data", [d for d in group_options("dataset") if d != "embeddings"])
def test_every_dataset_trains_and_samples(tmp_path: Path, data: str) -> None:
    assert _run(tmp_path, data=data).name.startswith(f"mlp-ot-{data}-none-")


def test_embeddings_from_a_file_train_and_sample(tmp_path: Path) -> None:
    rows = np.random.default_rng(0).normal(size=(700, 24)).astype(np.float32)
    np.save(tmp_path / "sentences.npy", rows)
    result = _run(tmp_path, f"dataset.path={tmp_path / 'sentences.npy'}", "dataset.n_val=64",
                  "dataset.n_test=64", "dataset.normalize=robust", data="embeddings")
    assert result.name.startswith("mlp-ot-sentences-none-")
    assert (tmp_path / "study" / "datasets" / "sentences").is_dir()


@pytest.mark.parametrize("aug", group_options("aug"))
def test_every_augmentation_trains(tmp_path: Path, aug: str) -> None:
    assert _run(tmp_path, f"aug={aug}").name.startswith(f"mlp-ot-moons-{aug}-")


@pytest.mark.parametrize("solver", ["euler", "midpoint", "rk4", "dopri5"])
def test_every_solver_samples_and_reports_its_evaluations(tmp_path: Path, solver: str) -> None:
    result = _run(tmp_path, f"sample.solver={solver}", "sample.steps=5")
    expected = {"euler": 5, "midpoint": 10, "rk4": 20}.get(solver)
    assert result.nfe == expected if expected else result.nfe >= 6


@pytest.mark.parametrize("flow", group_options("flow"))
def test_every_flow_learns_moons(tmp_path: Path, flow: str) -> None:
    cfg = compose_config([f"flow={flow}", f"study_dir={tmp_path / 'study'}",
                          "wandb.mode=disabled", "dataset.size=3000", "dataset.n_val=250",
                          "dataset.n_test=250", "arch.width=64", "train.epochs=15",
                          "train.batch_size=64",
                          "train.warmup_steps=50", "sample.steps=30"])
    result = run(cfg, tmp_path / "out")
    torch.manual_seed(0)
    untrained = evaluate(build_model(arch_sizes(cfg.arch, 2), 2), build_data(cfg.dataset),
                         cfg.sample, cfg.seed, cfg.dataset.seed)
    assert result.metrics["w2"] < 0.6 * untrained.metrics["w2"], (result.metrics, untrained)


SWEEPS = {
    "architectures": ([], {"mlp", "dit", "unet"}, "arch"),
    "flow-methods": ([], {"ot", "cfm", "minibatch_ot", "vp", "sb"}, "flow"),
    "augmentations": ([], {"none", "noise", "mixup"}, "aug"),
    "dataset-size": (["dataset.n_train=64,128"], {"moons-n64", "moons-n128"}, "dataset"),
}


@pytest.mark.slow
@pytest.mark.parametrize("ablation", list(SWEEPS))
def test_each_ablation_sweeps_its_grid_with_distinct_names_in_its_group(
        tmp_path: Path, ablation: str) -> None:
    narrowing, expected, _ = SWEEPS[ablation]
    tiny = [*TINY_MOONS, *TINY_TRAIN]
    mode = "offline" if ablation == "architectures" else "disabled"
    proc = cli(["-m", f"ablation={ablation}", *tiny, "train.epochs=1", *narrowing,
                f"study_dir={tmp_path / 'study'}", f"hydra.sweep.dir={tmp_path / 'multirun'}",
                f"wandb.mode={mode}"], cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [RunResult.load(p) for p in (tmp_path / "study" / "runs").glob("*/result.json")]
    names = {r.name for r in results}
    assert len(names) == len(results) == len(expected)
    parts = {"-".join(r.name.split("-")[2:4]) if ablation == "dataset-size"
             else r.name.split("-")[{"arch": 0, "flow": 1, "aug": 3}[SWEEPS[ablation][2]]]
             for r in results}
    assert parts == expected
    assert {r.group for r in results} == {ablation}
    assert all(r.status == "completed" for r in results)
    if mode == "offline":
        runs = [read_run(f) for f in find_run_files(tmp_path / "multirun")]
        assert {r.group for r in runs} == {ablation} and {r.name for r in runs} == names
