"""The report's statistics: verdicts on synthetic results, the files a notebook reads, the W&B
report run read back from its offline file, and a real small sweep with a broken arm."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
import wandb

from flowstudy.report import report, rows_for, summarise, table
from flowstudy.results import RunResult

from .helpers import TINY_MLP, TINY_TRAIN, name_of
from .test_sweeps import _sweep
from .wandb_files import find_run_files, read_run


def _result(name: str, seed: int, w2: float, val: float, atol: float = 1e-5,
            lr: float = 2e-3) -> RunResult:
    return RunResult(
        name=f"{name}-seed{seed}" if seed else name, group="g", status="completed",
        swept={"seed": seed}, best_val_loss=val, epochs=2, steps=16, dim=2,
        config={"seed": seed, "train": {"lr": lr}, "sample": {"solver": "euler", "atol": atol},
                "wandb": {"project": "flowstudy-test"}},
        metrics={"w2": w2, "w2_floor": 0.10, "w2_baseline": 0.36,
                 "fd": w2 / 10, "fd_floor": 0.005, "fd_baseline": 0.03})


# Per-seed W2 of a good arm, and of the same arm again under a result-neutral key (an ODE
# tolerance that the fixed-step Euler solver never reads): bitwise the same numbers.
GOOD = {0: 0.31, 1: 0.33, 2: 0.32}
BROKEN = {0: 0.43, 1: 0.44, 2: 0.45}


def _arms(*arms: tuple[str, dict[int, float], dict[str, float]]) -> list[RunResult]:
    return [_result(name, s, w2, 1.4 + w2, **kw) for name, by_seed, kw in arms
            for s, w2 in by_seed.items()]


def test_the_same_config_under_two_names_has_no_clear_winner() -> None:
    runs = _arms(("a", GOOD, {}), ("twin", GOOD, {"atol": 1e-6}))
    rows = rows_for(runs)
    s = summarise(rows, "w2")
    head, cells, best = table(rows, "w2", summary=s)
    assert [len(r.runs) for r in rows] == [3, 3] and s.labels == ["atol=1e-05", "atol=1e-06"]
    assert best is None and s.verdict.winner is None
    assert s.verdict.text.startswith("no clear winner by W2: ")
    assert "agree on every seed" in s.verdict.text
    (c,) = s.comparisons["w2"]
    assert c.paired and c.shared == 3 and c.p_improvement == 0.5 and c.wins == 0
    assert not c.a_better and not c.b_better
    # The cell: mean [t interval over the 3 seeds] (floor, gauss).
    low, high = scipy.stats.ttest_1samp(list(GOOD.values()), 0).confidence_interval()
    w2 = dict(zip(head, cells[0], strict=True))["w2 (floor, gauss)"]
    assert w2 == f"0.320 [{low:.3f}, {high:.3f}] (floor 0.100, gauss 0.360)"


def test_a_broken_arm_is_worse_outside_the_interval_and_the_good_row_is_bold() -> None:
    runs = _arms(("broken", BROKEN, {"lr": 1e-6}), ("good", GOOD, {}))
    rows = rows_for(runs)
    s = summarise(rows, "w2")
    assert s.labels == ["lr=1e-06", "lr=0.002"] and s.best == 1
    assert s.verdict.winner == "lr=0.002" and s.verdict.text.startswith("best by W2: lr=0.002")
    (c,) = s.comparisons["w2"]  # the leader first: good - broken < 0, P(good better) = 1
    assert (c.a, c.b) == ("lr=0.002", "lr=1e-06") and c.a_better and c.difference.high < 0
    assert c.p_improvement == 1.0 and c.wins == 3
    assert s.cells[0]["w2"].vs_gauss == "worse than gauss"
    assert s.cells[1]["w2"].vs_gauss == "beats gauss"
    assert s.cells[1]["w2"].vs_floor == "worse than floor"


def test_a_config_that_failed_a_seed_is_not_ranked() -> None:
    runs = _arms(("broken", BROKEN, {"lr": 1e-6}), ("good", GOOD, {}))
    runs[-1].status = "diverged"
    s = summarise(rows_for(runs), "w2")
    assert s.best is None and s.verdict.runner_up is None and "w2" not in s.comparisons


def _study(tmp_path: Path, runs: list[RunResult]) -> Path:
    study = tmp_path / "study"
    for r in runs:
        r.save(study / "runs" / r.name / "result.json")
    return study


def test_the_report_writes_its_statistics_for_notebooks_and_to_wandb(tmp_path: Path) -> None:
    runs = _arms(("broken", BROKEN, {"lr": 1e-6}), ("good", GOOD, {}),
                 ("twin", GOOD, {"atol": 1e-6}))
    study = _study(tmp_path, runs)
    out = report(study, "g", wandb_mode="offline")
    wandb.teardown()  # in-process W&B writes its offline file once its service stops
    text = (out / "report.md").read_text()
    # The good row and its twin tie, so nothing is bold, and the line says why.
    lines = [line for line in text.split("## Comparisons")[0].splitlines()
             if line.startswith("| ")]
    assert len(lines) == 4 and not any("**" in line for line in lines)
    assert re.search(r"\nno clear winner by W2: atol=1e-0[56], lr=0.002 \(0.32\) vs "
                     r"atol=1e-0[56], lr=0.002 \(0.32\): difference 0, 95% interval \[0, 0\] "
                     r"includes 0 \(paired over 3 seeds\); they agree on every seed", text)
    assert "## Comparisons by W2 (lower is better)" in text
    assert "| 3 paired | -0.120 [" in text and "| 1.00 | 3/3 | atol=1e-05, lr=0.002 better |" \
        in text
    assert "## Against the yardsticks" in text and "worse than gauss" in text

    doc = json.loads((out / "report.json").read_text())
    assert doc["metric"] == "w2" and doc["interval"] == "t" and doc["confidence"] == 0.95
    by_label = {r["label"]: r for r in doc["rows"]}
    broken = by_label["atol=1e-05, lr=1e-06"]["cells"]["w2"]
    low, high = scipy.stats.ttest_1samp(list(BROKEN.values()), 0).confidence_interval()
    assert broken["ci"] == pytest.approx([low, high]) and broken["n"] == 3
    assert broken["values"] == list(BROKEN.values()) and broken["seeds"] == [0, 1, 2]
    assert broken["baseline"]["mean"] == pytest.approx(0.36)
    assert broken["vs_gauss"] == "worse than gauss"
    assert doc["verdicts"]["w2"]["winner"] is None
    assert doc["verdicts"]["fd"]["winner"] is None  # FD too: the twins tie on every metric
    pairs = {(c["a"], c["b"]): c for c in doc["comparisons"]["w2"]}
    assert len(pairs) == 3
    assert all(c["a_better"] for (a, b), c in pairs.items() if b.endswith("lr=1e-06"))

    rows = list(csv.DictReader((out / "report.csv").open()))
    assert [r["best"] for r in rows] == ["", "", ""]
    assert {r["label"]: float(r["w2_ci_high"]) for r in rows}["atol=1e-05, lr=1e-06"] == \
        pytest.approx(high)
    assert {r["w2_vs_gauss"] for r in rows} == {"worse than gauss", "beats gauss"}

    # The metrics figure draws every interval; nothing else of the figures has data here.
    assert (out / "metrics.png").read_bytes()[:4] == b"\x89PNG"

    (wandb_file,) = find_run_files(out)
    w = read_run(wandb_file)
    assert (w.job_type, w.group, w.name, w.project) == ("report", "g", "report-g",
                                                        "flowstudy-test")
    assert w.summary["winner/w2"] == "" and w.summary["verdict/w2"].startswith("no clear winner")
    assert w.summary["atol=1e-05, lr=1e-06/w2/ci_high"] == pytest.approx(high)
    assert w.summary["atol=1e-05, lr=1e-06/w2/vs_gauss"] == "worse than gauss"
    assert w.summary["report/_type"] == "table-file" and w.exit_code == 0
    assert w.summary["comparisons/w2/nrows"] == 3
    # The table itself, as W&B wrote it beside the run: the report's CSV, row by row.
    logged = json.loads((wandb_file.parent / "files" / w.summary["report/path"]).read_text())
    assert logged["columns"] == list(rows[0]) and len(logged["data"]) == 3
    assert [line[logged["columns"].index("label")] for line in logged["data"]] == \
        [r["label"] for r in rows]


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
    assert f"**{good}**" in (reports / "lr" / "report.md").read_text()
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


# The report reads around damaged files (a warning naming each) and never
# tracebacks; a directory it cannot write is one line.
def test_the_report_skips_damaged_files_with_a_warning_naming_each(tmp_path: Path,
                                                                   capsys) -> None:
    runs = _arms(("good", GOOD, {}))
    for r in runs:
        r.checkpoint = str(tmp_path / "study" / "checkpoints" / r.name / "best.pt")
    study = _study(tmp_path, runs)
    first = runs[0].name
    (study / "runs" / first / "metrics.jsonl").write_text(
        '{"step": 8, "val/ema_loss": 1.5}\n{"step": 16, "val/ema_lo')  # a run killed mid-line
    eval_dir = study / "checkpoints" / first / "eval"
    eval_dir.mkdir(parents=True)
    (eval_dir / "best-e2-euler-2-n4-seed0.json").write_text('{"run": "go')
    (eval_dir / "best-e2-euler-4-n4-seed0.json").write_text("[1]")
    (study / "checkpoints" / first / "samples.npz").write_bytes(b"PK\x03\x04 cut short")
    for name, damage in (("nullmetrics", {"metrics": None}), ("junk", {"lineage": "junk"})):
        path = study / "runs" / name / "result.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({**_result(name, 0, 0.3, 1.7).__dict__, **damage}))
    out = report(study, "g")
    err = capsys.readouterr().err
    assert (out / "report.md").exists()
    expected = [
        f"skipping 1 unreadable line(s) of {study / 'runs' / first / 'metrics.jsonl'} "
        "(first: line 2)",
        f"skipping {eval_dir / 'best-e2-euler-2-n4-seed0.json'}: not a readable evaluation record",
        f"skipping {eval_dir / 'best-e2-euler-4-n4-seed0.json'}: not a flowstudy.sample record",
        f"skipping {study / 'checkpoints' / first / 'samples.npz'}: not a readable samples file",
        f"skipping {study / 'runs' / 'nullmetrics' / 'result.json'}: not a flowstudy result "
        "(metrics is null, expected an object)",
        f"skipping {study / 'runs' / 'junk' / 'result.json'}: not a flowstudy result (lineage "
        "is 'junk', expected a list)"]
    for line in expected:
        assert f"flowstudy.report: warning: {line}" in err, (line, err)
    assert "Traceback" not in err


def test_a_study_the_report_cannot_write_is_one_line(tmp_path: Path) -> None:
    study = _study(tmp_path, _arms(("good", GOOD, {})))
    (study / "reports").write_text("a file where the reports directory goes")
    with pytest.raises(SystemExit) as stopped:
        report(study, "g")
    assert str(stopped.value) == (
        f"flowstudy.report: --study: {study / 'reports' / 'g'} is not a writable directory "
        "(Not a directory); the report is written under <study>/reports/<group>")
