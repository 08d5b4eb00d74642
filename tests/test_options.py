"""The option table agrees with conf/: every YAML option has its row, on the schema it composes
onto, and every row builds its object; every option trains and samples, every flow learns moons."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from flowstudy.config import CONF_DIR, GROUP_SCHEMAS, group_options
from flowstudy.data import build_data
from flowstudy.evaluate import evaluate
from flowstudy.models import build_model
from flowstudy.options import OPTIONS, build
from flowstudy.resolve import arch_sizes
from flowstudy.results import RunResult
from flowstudy.run import run

from .helpers import SMALL_ARCH, SMALL_DATA, TINY_MOONS, TINY_TRAIN, compose_config


@pytest.mark.parametrize("group", sorted(OPTIONS))
def test_every_yaml_option_has_its_row_on_the_schema_it_composes_onto(group: str) -> None:
    yamls = {p.stem for p in (CONF_DIR / group).glob("*.yaml")}
    assert yamls == set(OPTIONS[group])
    for name, row in OPTIONS[group].items():
        schema_name = (CONF_DIR / group / f"{name}.yaml").read_text().split(
            "- /", 1)[1].split("@", 1)[0]
        assert GROUP_SCHEMAS[group][schema_name] is row.schema, name


@pytest.mark.parametrize(("group", "name"), [(g, n) for g in sorted(OPTIONS)
                                             for n in sorted(OPTIONS[g]) if n != "embeddings"])
def test_every_row_builds_from_its_composed_config(group: str, name: str) -> None:
    cfg = getattr(compose_config([f"{group}={name}"]), group)
    assert isinstance(cfg, OPTIONS[group][name].schema)
    if group == "arch":
        model = build(group, arch_sizes(cfg, 3), 3)
        assert model(torch.randn(2, 3), torch.rand(2)).shape == (2, 3)
    elif group == "dataset":
        points = build(group, cfg)
        assert points.ndim == 2 and torch.isfinite(points).all()
    elif group == "flow":
        assert build(group, cfg).path is not None
    else:
        made = build(group, cfg)
        assert (made is None) == (name == "none")


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
