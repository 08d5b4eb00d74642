"""Sweeps through the real CLI: names, failures, skip-completed, launchers, reports."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.stats

from flowstudy.results import RunResult

from ..helpers import (
    TINY,
    TINY_MLP,
    TINY_MOONS,
    TINY_TRAIN,
    cli,
    name_of,
    start_cli,
    wait_for,
)
from ..wandb_files import find_run_files, read_run

pytestmark = pytest.mark.e2e


def _sweep(tmp_path: Path, study: str, *args: str,
           base: tuple[str, ...] = tuple(TINY)) -> tuple[int, str, dict[str, RunResult]]:
    sweep_dir = tmp_path / f"{study}-{len(list(tmp_path.glob(f'{study}-*')))}"
    proc = cli(["-m", *base, "train.epochs=2", f"study_dir={tmp_path / study}",
                f"hydra.sweep.dir={sweep_dir}", *args], cwd=tmp_path, timeout=600)
    results = {p.parent.name: RunResult.load(p)
               for p in (tmp_path / study / "runs").glob("*/result.json")}
    return proc.returncode, proc.stdout + proc.stderr, results


@pytest.mark.slow
def test_swept_values_off_their_defaults_name_each_run(tmp_path: Path) -> None:
    code, out, results = _sweep(tmp_path, "study", "seed=0,1", "train.lr=2e-3,5e-4",
                                "wandb.mode=disabled")
    assert code == 0, out
    # Every override names the run, swept or not, in one suffix sorted by label.
    name = "mlp-ot-moons-none-batch_size64-depth2-epochs2{}-n_test128-n_val128{}-size768-" \
           "steps8-warmup_steps10-width32"
    lr_seed = name.format("-lr5e-4", "-seed1")
    assert set(results) == {name.format("", ""), name.format("", "-seed1"),
                            name.format("-lr5e-4", ""), lr_seed}
    assert results[lr_seed].swept == {"seed": 1, "train.lr": 5e-4}
    assert results[lr_seed].config["train"]["lr"] == 5e-4
    assert "4 of 4 runs completed" in out


@pytest.mark.slow
def test_a_failed_job_is_recorded_the_rest_finish_and_a_rerun_retries_only_it(
        tmp_path: Path) -> None:
    rows = np.random.default_rng(0).normal(size=(700, 4)).astype(np.float32)
    np.save(tmp_path / "a.npy", rows)
    args = ["dataset=embeddings", "dataset.path=a.npy,b.npy", "dataset.n_val=64",
            "dataset.n_test=64", "wandb.mode=disabled"]
    no_size = tuple(a for a in TINY if not a.startswith("dataset."))
    code, out, results = _sweep(tmp_path, "study", *args, base=no_size)
    assert code == 1
    name = name_of([*no_size, "train.epochs=2", "dataset=embeddings", "dataset.path=a.npy",
                    "dataset.n_val=64", "dataset.n_test=64"])
    a, b = name, name.replace("-ot-a-", "-ot-b-", 1)
    assert results[a].status == "completed"
    assert b not in results  # refused before any work: no file to fingerprint
    assert "dataset.path=b.npy: no such file" in out
    assert b in out and "failed" in out and "1 of 2 runs did not complete" in out
    best_a = (tmp_path / "study" / "checkpoints" / a / "best.pt").read_bytes()

    np.save(tmp_path / "b.npy", rows[::-1].copy())  # the fix
    code, out, results = _sweep(tmp_path, "study", *args, base=no_size)
    assert code == 0, out
    assert f"skipping {a}: completed with this config" in out
    assert results[b].status == "completed"
    assert (tmp_path / "study" / "checkpoints" / a / "best.pt").read_bytes() == \
        best_a  # not retrained
    assert "2 of 2 runs completed or skipped" in out


@pytest.mark.slow
def test_a_failure_at_run_time_tags_the_wandb_run_failed(tmp_path: Path) -> None:
    # rtol 1e-300 alone is harmless next to atol 1e-5; with atol 1e-300 no step size fits.
    code, _, results = _sweep(tmp_path, "study", "sample.solver=dopri5",
                              "sample.atol=1e-5,1e-300", "sample.rtol=1e-300",
                              "wandb.mode=offline")
    assert code == 1
    common = [*TINY, "train.epochs=2", "sample.solver=dopri5", "sample.rtol=1e-300"]
    assert results[name_of(common)].status == "completed"
    failed = results[name_of([*common, "sample.atol=1e-300"])]  # in evaluation: training kept
    assert "-atol1e-300-" in failed.name
    assert failed.status == "trained" and "underflow in dt" in failed.error
    runs = {r.name: r for r in (read_run(f) for f in find_run_files(tmp_path))}
    assert "failed" in runs[failed.name].tags and runs[failed.name].exit_code == 1
    assert "sample.atol=1e-300" in runs[failed.name].tags and runs[failed.name].job_type == "sweep"
    # Its alert names the run and the command that reruns the sweep; the completed job has none.
    [alert] = runs[failed.name].alerts
    assert alert["title"].startswith("sweep job failed: ") and len(alert["title"]) < 64
    assert alert["level"] == "ERROR"
    assert f"Sweep job {failed.name} failed (AssertionError: underflow in dt" in alert["text"]
    rerun = alert["text"].split("completed jobs are skipped): ")[1]
    assert rerun.startswith("python -m flowstudy.train -m ") and rerun.endswith(" resume=auto")
    assert "sample.atol=1e-5,1e-300" in rerun
    assert runs[name_of(common)].alerts == []


@pytest.mark.slow
def test_joblib_runs_two_jobs_at_once_with_the_same_results_as_serial(tmp_path: Path) -> None:
    common = ["seed=0,1", "train.threads=1", "wandb.mode=disabled"]
    code, out, serial = _sweep(tmp_path, "serial", *common)
    assert code == 0, out
    code, out, parallel = _sweep(tmp_path, "parallel", *common, "hydra/launcher=joblib",
                                 "hydra.launcher.n_jobs=2")
    assert code == 0, out
    names = {name_of([*TINY, "train.epochs=2", f"seed={s}"]) for s in (0, 1)}
    assert set(serial) == set(parallel) == names
    for name in serial:
        assert serial[name].best_val_loss == parallel[name].best_val_loss
        assert serial[name].metrics == parallel[name].metrics


@pytest.mark.slow
def test_joblib_jobs_share_the_cores(tmp_path: Path) -> None:
    code, out, results = _sweep(tmp_path, "study", "seed=0,1", "wandb.mode=disabled",
                                "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    assert code == 0, out
    cores = len(os.sched_getaffinity(0))
    assert {r.threads for r in results.values()} == {max(1, cores // 2)}
    # The workers print the progress lines, counted from the sweep directory's files.
    progress = sorted(re.findall(r"^\[(\d)/2\] (\S+)  completed", out, re.M))
    assert progress == [("1", progress[0][1]), ("2", progress[1][1])]
    assert {name for _, name in progress} == set(results)


@pytest.mark.slow
def test_submitit_local_runs_a_two_job_sweep(tmp_path: Path) -> None:
    code, out, results = _sweep(tmp_path, "study", "seed=0,1", "wandb.mode=disabled",
                                "hydra/launcher=submitit_local")
    assert code == 0, out
    assert {r.status for r in results.values()} == {"completed"} and len(results) == 2


@pytest.mark.slow
def test_the_report_tabulates_the_group_from_the_files(tmp_path: Path) -> None:
    code, out, results = _sweep(tmp_path, "study", "ablation=architectures", "seed=0,1",
                                "wandb.mode=disabled", base=(*TINY_MOONS, *TINY_TRAIN))
    assert code == 0, out
    report = subprocess.run([sys.executable, "-m", "flowstudy.report", "--study",
                             str(tmp_path / "study"), "--group", "architectures"],
                            capture_output=True, text=True, cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    out_dir = tmp_path / "study" / "reports" / "architectures"
    rows = list(csv.DictReader((out_dir / "report.csv").open()))
    assert [r["name"] for r in rows] == [
        name_of([*TINY_MOONS, *TINY_TRAIN, "train.epochs=2", f"arch={a}"])
        for a in ("dit", "mlp", "unet")]
    for row in rows:
        runs = [r for r in results.values()
                if r.config["arch"]["name"] == row["name"].split("-")[0]]
        assert row["seeds"] == "2" and len(runs) == 2
        # The mean over the two seeds with its 95% t interval, as numbers and as shown.
        losses = [r.best_val_loss for r in runs]
        low, high = scipy.stats.ttest_1samp(losses, 0.0).confidence_interval()
        assert float(row["best_val_loss_mean"]) == pytest.approx(np.mean(losses))
        assert (float(row["best_val_loss_ci_low"]), float(row["best_val_loss_ci_high"])) == \
            pytest.approx((low, high))
        shown = re.fullmatch(r"(-?[\d.]+) \[(-?[\d.]+), (-?[\d.]+)\]", row["best val loss"])
        assert shown, row["best val loss"]
        places = len(shown[1].split(".")[1]) if "." in shown[1] else 0
        assert [float(x) for x in shown.groups()] == pytest.approx(
            [np.mean(losses), low, high], abs=0.51 * 10 ** -places)
        assert row["swept"] == f"arch={row['name'].split('-')[0]}"
    # A best row only when the verdict names a winner; the leader has the lowest mean W2.
    verdict = json.loads((out_dir / "report.json").read_text())["verdicts"]["w2"]
    w2 = {r["name"]: float(r["w2_mean"]) for r in rows}
    leader = next(r["name"] for r in rows if r["label"] == verdict["leader"])
    assert leader == min(w2, key=w2.get)
    best = [r["name"] for r in rows if r["best"] == "yes"]
    assert best == ([leader] if verdict["winner"] else [])
    assert verdict["text"] in report.stdout
    if not verdict["winner"]:
        assert "no clear winner by W2: " in report.stdout and "**" not in report.stdout.split(
            "## Comparisons")[0]
    assert "| name | swept | seeds |" in report.stdout
    assert "## Comparisons by W2 (lower is better)" in report.stdout
    for png in ("val_loss.png", "samples.png"):
        assert (out_dir / png).read_bytes()[:4] == b"\x89PNG"


# A real sweep small enough for seconds per run, yet confident: 512 test points make W2 steady
# enough that 3 seeds separate a model trained 8 epochs from one that has not moved (lr 1e-6).
SWEEP = ["dataset.size=1664", "dataset.n_val=128", "dataset.n_test=512", *TINY_MLP,
         *TINY_TRAIN, "train.epochs=8", "train.threads=1", "wandb.mode=disabled"]


@pytest.mark.slow
def test_a_real_sweep_declares_a_broken_arm_worse_and_a_neutral_key_no_winner(
        tmp_path: Path) -> None:
    # (_sweep puts train.epochs=2 after the base: the epochs go again after it.)
    code, out, _ = _sweep(tmp_path, "study", "seed=0,1,2", "train.lr=1e-6,2e-3", "group=lr",
                          "train.epochs=8", base=tuple(SWEEP))
    assert code == 0, out
    # The same config but for an ODE tolerance that Euler never reads; the default tolerance's
    # runs are skipped as completed and counted in this group too.
    code, out, results = _sweep(tmp_path, "study", "seed=0,1,2", "sample.atol=1e-5,1e-6",
                                "group=twins", "train.epochs=8", base=tuple(SWEEP))
    assert code == 0, out
    assert len(results) == 9 and "skipping" in out
    proc = subprocess.run([sys.executable, "-m", "flowstudy.report", "--study",
                           str(tmp_path / "study")], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    reports = tmp_path / "study" / "reports"

    lr = json.loads((reports / "lr" / "report.json").read_text())
    verdict = lr["verdicts"]["w2"]
    assert verdict["winner"] == "lr=0.002" and verdict["runner_up"] == "lr=1e-06"
    difference = verdict["comparison"]["difference"]
    assert verdict["comparison"]["paired"] and difference["n"] == 3
    assert difference["high"] < 0  # confidently lower W2 than the broken arm, on 3 seeds
    assert verdict["comparison"]["wins"] == 3
    good = name_of([*SWEEP, "train.lr=2e-3"])
    rows = list(csv.DictReader((reports / "lr" / "report.csv").open()))
    assert [r["name"] for r in rows if r["best"] == "yes"] == [good]
    # Bold only when the win is not one its samples flatter: 8 epochs leave these samples
    # over-spread and their norms off, so the verdict is flagged (flowstudy.metrics.collapse).
    text = (reports / "lr" / "report.md").read_text()
    flagged = verdict["flagged"]
    assert (f"**{good}**" in text) == (flagged is None)
    if flagged is not None:
        assert f"; flagged, not a win: its samples show {flagged}, which flatters W2" in text
        assert "\n## Collapse and over-spread\n" in text and "lr=0.002: " in proc.stderr
    broken = {r["label"]: r for r in lr["rows"]}["lr=1e-06"]["cells"]["w2"]
    values = [results[n].metrics["w2"] for n in {r["label"]: r for r in lr["rows"]}[
        "lr=1e-06"]["runs"]]
    assert broken["values"] == pytest.approx(values)
    assert broken["ci"] == pytest.approx(list(scipy.stats.ttest_1samp(values, 0)
                                              .confidence_interval()))

    twins = json.loads((reports / "twins" / "report.json").read_text())
    for metric, v in twins["verdicts"].items():
        assert v["winner"] is None, (metric, v["text"])
    assert "agree on every seed" in twins["verdicts"]["w2"]["text"]
    assert "no clear winner by W2" in (reports / "twins" / "report.md").read_text()
    assert np.all([r["best"] is False for r in twins["rows"]])


@pytest.mark.slow
def test_a_bad_value_in_a_sweep_grid_stops_the_sweep_before_any_job(tmp_path: Path,
                                                                    study: list[str]) -> None:
    proc = cli(["-m", *study, f"hydra.sweep.dir={tmp_path / 'multi'}", *TINY,
                "train.grad_clip=1.0,inf"], cwd=tmp_path)
    assert (proc.returncode, proc.stderr.strip().splitlines()[-1]) == (
        2, "flowstudy: error: train.grad_clip=inf is not allowed: a float > 0")
    assert not (tmp_path / "study").exists()


@pytest.mark.slow
def test_a_second_sweep_reports_a_run_another_process_trains_as_busy(tmp_path: Path) -> None:
    study = tmp_path / "study"
    first = start_cli([*TINY, "train.epochs=200", f"study_dir={study}",
                       f"hydra.run.dir={tmp_path / 'o1'}", "wandb.mode=disabled"], tmp_path)
    try:
        wait_for(study / "runs" / name_of([*TINY, "train.epochs=200"]) / "metrics.jsonl",
                 '"step"', first)
        # job 0 is the run the first process trains; job 1 a short one of its own
        second = cli(["-m", *TINY, f"study_dir={study}", f"hydra.sweep.dir={tmp_path / 'm'}",
                      "wandb.mode=disabled", "train.epochs=200,2"], cwd=tmp_path)
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=120)
    assert second.returncode == 75, second.stderr
    job0 = json.loads((tmp_path / "m" / "0" / "job.json").read_text())
    assert job0["status"] == "running elsewhere"
    assert "1 of 2 runs completed or skipped as done; 1 being trained by another process" in \
        second.stdout
    assert second.stderr.strip().splitlines()[-1] == (
        "flowstudy: 1 runs are being trained by another process; rerun this sweep once it has "
        "finished")


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


@pytest.mark.slow
def test_a_sweep_refuses_one_name_for_all_its_runs(tmp_path: Path) -> None:
    proc = cli(["-m", "name=foo", "seed=0,1", f"study_dir={tmp_path / 'study'}"], cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "flowstudy: error: name=foo: a sweep names each of its runs by its config "
        "(<arch>-<flow>-<dataset>-<aug>-<overrides>); drop name=, or label the sweep with "
        "group= or wandb.tags=")
    assert not (tmp_path / "study").exists()


@pytest.mark.slow
def test_an_architectures_sweep_under_a_flop_budget_ends_every_run_within_one_step(
        tmp_path: Path) -> None:
    # Default sizes on 2-d moons, batch 64: 5.2e7 (unet) to 8.0e7 (mlp) FLOPs per step, so
    # 2e9 FLOPs is 24 to 38 steps; 50 epochs of 8 steps never end a run first.
    budget = 2e9
    proc = cli(["-m", *TINY_MOONS, *TINY_TRAIN, "ablation=architectures", "train.epochs=50",
                f"train.budget.flops={budget:g}", "sample.likelihood=false",
                "wandb.mode=disabled", f"study_dir={tmp_path / 'study'}",
                f"hydra.sweep.dir={tmp_path / 'sweep'}"], cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = [RunResult.load(p) for p in (tmp_path / "study" / "runs").glob("*/result.json")]
    assert sorted(r.config["arch"]["name"] for r in results) == ["dit", "mlp", "unet"]
    steps = set()
    for r in results:
        assert r.status == "completed" and r.stop_reason == "budget"
        assert budget - r.flops_per_step < r.flops <= budget
        assert r.budget["kind"] == "flops" and r.budget["value"] == budget
        assert r.budget["flops_spent"] == r.flops and r.budget["planned_steps"] == r.steps
        steps.add(r.steps)
    assert len(steps) == 3  # the same FLOPs buy each architecture its own number of steps
