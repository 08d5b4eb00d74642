"""An Optuna search through the real CLI: trial names, records, failures, skips."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from flowstudy.results import RunResult

from ..helpers import TINY, cli, name_of

pytestmark = pytest.mark.e2e


@pytest.mark.slow
def test_optuna_search_names_records_fails_and_skips_its_trials(tmp_path: Path) -> None:
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    # Trials that draw n_train=4096 fail before training: only 512 training points exist.
    args = ["-m", "hparams_search=lr_optuna", "hydra.sweeper.n_trials=6", *TINY,
            "train.epochs=2", "dataset.n_train=choice(256,4096)", "objective=w2",
            "wandb.mode=disabled", f"study_dir={tmp_path / 'study'}"]

    def search(attempt: int) -> tuple[str, list[RunResult], Path]:
        sweep_dir = tmp_path / f"sweep{attempt}"
        proc = cli([*args, f"hydra.sweep.dir={sweep_dir}"], cwd=tmp_path, timeout=900)
        assert proc.returncode == 1, proc.stderr[-3000:]  # some trial failed, the search went on
        results = [RunResult.load(p) for p in (tmp_path / "study" / "runs").glob("*/result.json")]
        return proc.stdout + proc.stderr, results, sweep_dir

    out, results, sweep_dir = search(0)
    assert {r.group for r in results} == {"lr_optuna"}
    done = [r for r in results if r.status == "completed"]
    # A trial refused before training claims no name: it leaves no result.json, only its line.
    assert done == results and len(results) <= 6  # a repeated proposal reruns nothing
    for r in results:  # each trial is named by, and records, its sampled values
        lr, n_train = r.swept["train.lr"], r.swept["dataset.n_train"]
        assert r.config["train"]["lr"] == lr and 1e-4 <= lr <= 1e-2
        assert r.config["dataset"]["n_train"] == n_train
        assert r.name == name_of([*TINY, "train.epochs=2", f"dataset.n_train={n_train}",
                                  f"train.lr={lr}"])
    progress = re.findall(r"^\[(\d)/6\] (\S+)  (\w+)  w2 (\S+)", out, re.M)
    assert [int(k) for k, *_ in progress] == [1, 2, 3, 4, 5, 6]
    refused = [(name, value) for _, name, status, value in progress if status == "failed"]
    assert refused and all("-n4096-" in name and value == "-" for name, value in refused)
    assert "dataset.n_train=4096" in out  # each refusal's one line names the key
    for _, name, status, value in progress:
        if status == "failed":
            continue
        run = next(r for r in results if r.name == name)
        assert status in ("skipped", run.status)  # a repeated proposal is skipped as done
        assert value == ("-" if run.status == "failed" else f"{run.metrics['w2']:.4f}")
    best = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert best["best_value"] == min(r.metrics["w2"] for r in done)  # told the w2 of each
    checkpoints = {r.name: Path(r.checkpoint).stat().st_mtime_ns for r in done}

    out, results, _ = search(1)  # the seeded sampler proposes the same trials again
    for r in done:
        assert f"skipping {r.name}: completed with this config" in out
        assert Path(r.checkpoint).stat().st_mtime_ns == checkpoints[r.name]
    assert len(re.findall(r"^\[\d/6\] \S+  skipped", out, re.M)) >= len(done)
    assert {r.name for r in results} == {r.name for r in done}  # refused trials again left none
