"""The report's figures, from real runs: which points they plot and which files they write."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from flowstudy import figures
from flowstudy.report import report
from flowstudy.run import run

from .helpers import TINY, compose_config


def test_budget_figures_plot_quality_against_nfe_and_data_size(tmp_path: Path) -> None:
    study = tmp_path / "study"
    runs = {}
    for name, n_train, steps in (("a", 256, 4), ("b", 256, 8), ("c", 512, 4)):
        cfg = compose_config([*TINY, f"name={name}", f"dataset.n_train={n_train}",
                              f"sample.steps={steps}", "group=budget", f"study_dir={study}",
                              "wandb.mode=disabled"])
        runs[name] = run(cfg, tmp_path / "out", swept={"dataset.n_train": n_train,
                                                        "sample.steps": steps})
    a, b, c = runs["a"], runs["b"], runs["c"]
    w2 = {k: (r.metrics["w2"], r.metrics["w2_floor"]) for k, r in runs.items()}

    # a and b trained alike and sampled with 4 and 8 Euler steps; c trained on more data.
    assert sorted(figures.nfe_points([a, b, c], study, "w2")) == sorted([
        ("n_train=256, euler", 4.0, *w2["a"]), ("n_train=256, euler", 8.0, *w2["b"]),
        ("n_train=512, euler", 4.0, *w2["c"])])
    # a and c differ only in n_train; b samples differently, so it is a line of its own.
    assert sorted(figures.data_size_points([a, b, c], "w2")) == sorted([
        ("steps=4", 256.0, *w2["a"]), ("steps=4", 512.0, *w2["c"]),
        ("steps=8", 256.0, *w2["b"])])
    assert figures.nfe_points([a], study, "w2") == [("euler", 4.0, *w2["a"])]

    out = report(study, "budget")
    for figure in ("val_loss", "samples", "nfe", "data_size"):
        assert (out / f"{figure}.png").read_bytes()[:4] == b"\x89PNG"
        assert b"<svg" in (out / f"{figure}.svg").read_bytes()[:500]
    # a and c are on lines of their own, each with one NFE: nothing to draw.
    assert not figures.quality_vs_nfe([a, c], study, tmp_path / "nfe.png", "x", "w2")
    samples = np.load(study / "checkpoints" / "a" / "samples.npz")
    assert samples["samples"].shape == samples["reference"].shape == (128, 2)


def test_the_curves_y_range_shows_the_end_of_training_not_the_first_epochs() -> None:
    # A loss falling from 3.0 to a plateau near 1.45: late differences must stay readable.
    mean = np.array([3.0, 1.9, 1.6, 1.5, 1.47, 1.46, 1.455, 1.45, 1.45, 1.449])
    late = list(mean[len(mean) // 5:])
    low, high = figures.y_range(list(mean - 0.01), late + late)
    assert low < 1.439 and 1.6 <= high < 1.65  # 3.0 and 1.9 run off the top
    assert (1.5 - low) / (high - low) < 0.5  # 1.449 to 1.5 fills a third of the height
