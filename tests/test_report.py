"""The report's statistics: verdicts on synthetic results, the files a notebook reads, the W&B
report run read back from its offline file, compute-matched arms and the IsoFLOP figure
(synthetic results; the real preset is in docs/sweeps-and-reports.md). A real small sweep with
a broken arm is in tests/e2e/test_sweeps.py."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
import scipy.stats
import wandb

from flowstudy import figures
from flowstudy.report import load_runs, report, rows_for, summarise, table
from flowstudy.report.compute import compute_matched
from flowstudy.results import RunResult, checkpoint_dir_in

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


def test_the_report_skips_a_damaged_result_with_a_warning(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    good = RunResult(name="good", group="g", groups=["g"], status="completed")
    good.save(tmp_path / "runs" / "good" / "result.json")
    bad = tmp_path / "runs" / "bad" / "result.json"
    bad.parent.mkdir(parents=True)
    bad.write_text('{"name": "bad", "sta')
    other = tmp_path / "runs" / "other" / "result.json"
    other.parent.mkdir(parents=True)
    other.write_text('[1, 2]')
    assert [r.name for r in load_runs(tmp_path)] == ["good"]
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"flowstudy.report: warning: skipping {bad}: not a readable "
                             f"result.json (")
    assert err[0].endswith("); move it away, or replace the run with force=true")
    assert err[1].startswith(f"flowstudy.report: warning: skipping {other}: not a flowstudy "
                             f"result (")


def _run(arch: str, params: int, budget: float, seed: int, w2: float) -> RunResult:
    return RunResult(
        name=f"{arch}-{params}-{budget:g}-seed{seed}", group="g", status="completed",
        params=params, dim=2, steps=int(budget // (params * 1000)),
        config={"seed": seed, "arch": {"name": arch}, "train": {"budget": {"flops": budget}}},
        budget={"kind": "flops", "value": budget, "planned_steps": 1},
        metrics={"w2": w2, "w2_floor": 0.10, "w2_baseline": 0.36})


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


def _runs(table: dict[tuple[str, int, float], list[float]]) -> list[RunResult]:
    return [_run(arch, params, budget, seed, w2) for (arch, params, budget), values in
            table.items() for seed, w2 in enumerate(values)]


# mlp: its small size wins at the small budget, its large size at the large one. dit: a clear
# loser at 1e10, level with mlp at 1e11 (differences of opposite sign by seed).
TABLE = {("mlp", 60_000, 1e10): [0.20, 0.21, 0.22], ("mlp", 200_000, 1e10): [0.30, 0.31, 0.29],
         ("mlp", 60_000, 1e11): [0.15, 0.16, 0.15], ("mlp", 200_000, 1e11): [0.12, 0.13, 0.12],
         ("dit", 40_000, 1e10): [0.40, 0.43, 0.41], ("dit", 40_000, 1e11): [0.11, 0.14, 0.12]}


def test_the_best_size_per_budget_and_a_verdict_per_budget() -> None:
    m = compute_matched(_runs(TABLE), "w2")
    assert m is not None and m.budgets == [1e10, 1e11]
    best = {(p.budget, p.arch): p.best for p in m.points}
    assert best == {(1e10, "mlp"): "mlp 60k", (1e11, "mlp"): "mlp 200k",
                    (1e10, "dit"): "dit 40k", (1e11, "dit"): "dit 40k"}
    assert m.verdicts[1e10].winner == "mlp 60k"  # 0.21 against 0.41 on every seed
    assert m.verdicts[1e11].winner is None  # 0.1233 vs 0.1233, seeds disagree
    assert m.verdicts[1e11].text.startswith("no clear winner by W2")
    assert (m.floor, m.baseline) == (0.10, 0.36)
    text = m.markdown()
    assert "| 1e+10 |" in text and "**mlp 60k**" in text and "no clear winner |" in text
    assert set(m.to_dict()["verdicts"]) == {"1e+10", "1e+11"}


def test_one_budget_or_no_budget_is_no_compute_matched_section() -> None:
    one = {k: v for k, v in TABLE.items() if k[2] == 1e10}
    assert compute_matched(_runs(one), "w2") is None
    plain = _runs(TABLE)
    for r in plain:
        r.budget = None
    assert compute_matched(plain, "w2") is None


def test_the_isoflop_figure_is_drawn(tmp_path: Path) -> None:
    png = tmp_path / "isoflop.png"
    assert figures.isoflop(compute_matched(_runs(TABLE), "w2"), png, "g")
    assert png.read_bytes()[:4] == b"\x89PNG" and png.with_suffix(".svg").exists()
    assert not figures.isoflop(None, tmp_path / "none.png", "g")


@pytest.mark.parametrize(("checkpoint", "study_dir", "expected"), [
    # as a run records it: relative to where it ran, under its study_dir
    ("study/checkpoints/r/best.pt", "study", "copy/checkpoints/r"),
    ("./runs/../study/checkpoints/r/best.pt", "study", "copy/checkpoints/r"),
    ("/data/study/ckpt/r/best.pt", "/data/study", "copy/ckpt/r"),
    # leading outside the study: not followed, the default layout read instead
    ("study/../other/checkpoints/r/best.pt", "study", "copy/checkpoints/r"),
    ("/scratch/ckpts/r/best.pt", "study", "copy/checkpoints/r"),
    (None, "study", "copy/checkpoints/r"),
])
def test_a_runs_checkpoint_dir_is_resolved_inside_the_study(checkpoint: str | None,
                                                            study_dir: str,
                                                            expected: str) -> None:
    run = RunResult(name="r", group="g", checkpoint=checkpoint, config={"study_dir": study_dir})
    assert checkpoint_dir_in(Path("copy"), run) == Path(expected)
    # an absolute path into the study read is inside it too, wherever study_dir was
    inside = RunResult(name="r", group="g", checkpoint=str(Path("copy/ckpt/r/best.pt").absolute()),
                       config={"study_dir": study_dir})
    assert checkpoint_dir_in(Path("copy"), inside) == Path("copy/ckpt/r")


# Per-seed metrics shaped like those of the bundled 384-d embeddings (docs/evaluation-and-
# metrics.md): real points x0.9 (collapsed inward), x1.2 (over-spread) and a fresh real draw.
FLOORS = {"fd": 0.086, "w2": 0.97, "precision": 0.90, "recall": 0.88, "density": 1.0,
          "coverage": 0.96, "norm_w1": 0.0005, "norm_mean": 1.0, "norm_std": 0.001}
GAUSS = {"fd": 0.109, "w2": 1.2, "precision": 0.5, "recall": 0.7, "density": 0.5,
         "coverage": 0.6, "norm_w1": 0.06, "norm_mean": 1.0, "norm_std": 0.075}
SHRUNK = {"fd": 0.086, "w2": 0.93, "precision": 0.99, "recall": 0.61, "density": 2.9,
          "coverage": 0.99, "norm_w1": 0.1, "norm_mean": 0.9, "norm_std": 0.001}
SPREAD = {"fd": 0.5, "w2": 1.6, "precision": 0.6, "recall": 0.98, "density": 0.17,
          "coverage": 0.8, "norm_w1": 0.2, "norm_mean": 1.2, "norm_std": 0.001}
REAL = {"fd": 0.2, "w2": 1.1, "precision": 0.88, "recall": 0.87, "density": 1.02,
        "coverage": 0.95, "norm_w1": 0.0006, "norm_mean": 1.0, "norm_std": 0.001}
WOBBLE = (0.01, -0.012, 0.003)  # per seed: the differences to the floor change sign


def _shaped(lr: float, seed: int, model: dict[str, float]) -> RunResult:
    metrics = {k: v * (1 + WOBBLE[seed]) for k, v in model.items()}
    metrics |= {f"{k}_floor": v for k, v in FLOORS.items()}
    metrics |= {f"{k}_baseline": v for k, v in GAUSS.items()}
    return RunResult(name=f"lr{lr}-seed{seed}", group="g", status="completed", swept={"seed": seed},
                     best_val_loss=1.0 + seed / 100, epochs=2, steps=16, dim=384,
                     config={"seed": seed, "train": {"lr": lr}}, metrics=metrics)


def test_collapsed_and_over_spread_configurations_are_flagged_not_celebrated(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = [_shaped(lr, seed, model) for lr, model in ((1e-3, SHRUNK), (1e-2, SPREAD),
                                                       (2e-3, REAL)) for seed in range(3)]
    s = summarise(rows_for(runs), "fd")
    assert s.labels == ["lr=0.001", "lr=0.01", "lr=0.002"]
    assert [[(sh.kind, sh.seeds, len(sh.evidence)) for sh in found] for found in s.shapes] == [
        [("collapse", [0, 1, 2], 2)], [("over-spread", [0, 1, 2], 2)], []]
    # Collapsed: FD at its floor, precision better, density far above it: each flagged.
    assert s.cells[0]["fd"].vs_floor == "≈ floor"
    assert s.yardstick_words(0, "fd") == ["beats gauss (flagged: collapse)",
                                          "≈ floor (flagged: collapse)"]
    assert s.yardstick_words(0, "density") == ["beats gauss (flagged: collapse)",
                                               "better than floor (flagged: collapse)"]
    assert s.yardstick_words(0, "recall") == ["worse than gauss", "worse than floor"]
    # Over-spread: recall better than its floor is flagged; what reads worse is left as it is.
    assert s.yardstick_words(1, "recall") == ["beats gauss (flagged: over-spread)",
                                              "better than floor (flagged: over-spread)"]
    assert s.yardstick_words(1, "fd") == ["worse than gauss", "worse than floor"]
    assert s.yardstick_words(1, "precision") == ["beats gauss", "worse than floor"]
    # Healthy: its words as they were, none flagged.
    for key in ("fd", "recall", "density", "precision"):
        assert s.flagged(2, key) is None
        assert not any("flagged" in w for w in s.yardstick_words(2, key))
    # The winners by density (collapsed) and by recall (over-spread) are flagged, not bold.
    assert s.verdicts["density"].winner == "lr=0.001"
    assert s.verdict_text("density").endswith(
        "; flagged, not a win: its samples show collapse, which flatters density")
    assert s.verdict_text("recall").endswith(
        "; flagged, not a win: its samples show over-spread, which flatters recall")
    head, cells, _ = table(s.rows, "fd", summary=s)  # the main table's column
    assert [dict(zip(head, line, strict=True))["sample shape"] for line in cells] == [
        "collapse 3/3", "over-spread 3/3", "-"]
    dense = summarise(rows_for(runs), "density")
    assert dense.best == 0 and dense.celebrated is None
    assert table(dense.rows, "density", summary=dense)[2] is None

    out = report(_study(tmp_path, runs), "g")
    text = (out / "report.md").read_text()
    section = text.split("## Collapse and over-spread\n\n")[1].split("\n## ")[0]
    collapsed, spread = [line for line in section.splitlines() if line.startswith("- ")]
    assert collapsed.startswith("- lr=0.001: collapse on 3/3 seeds (0, 1, 2); seed 0: density 2.93 "
                                "is 1.9 above its floor 1 (limit 0.3) and recall 0.616 is 0.26 "
                                "below its floor 0.88 (limit 0.1); sample norms 0.909 ± 0.001")
    assert collapsed.endswith(". Flagged, not a win: W2, FD, precision, density, coverage")
    assert spread.startswith("- lr=0.01: over-spread on 3/3 seeds (0, 1, 2); seed 0: density "
                             "0.172 is 0.83 below its floor 1")
    # Its precision and coverage beat gauss: over-spread does not flatter them, so no flag.
    assert spread.endswith(". Flagged, not a win: recall")
    assert "lr=0.002:" not in section
    assert "| lr=0.001 | beats gauss (flagged: collapse), better than floor (flagged: collapse) " \
        in text
    err = capsys.readouterr().err
    assert f"flowstudy.report: warning: group 'g': samples of {collapsed[2:]}\n" in err
    assert "flowstudy.report: warning: group 'g': samples of lr=0.01: over-spread on 3/3" in err

    doc = json.loads((out / "report.json").read_text())
    by_label = {r["label"]: r for r in doc["rows"]}
    assert [sh["kind"] for sh in by_label["lr=0.01"]["sample_shape"]] == ["over-spread"]
    assert by_label["lr=0.01"]["cells"]["recall"]["flagged"] == "flagged: over-spread"
    assert by_label["lr=0.002"]["sample_shape"] == []
    assert by_label["lr=0.002"]["cells"]["recall"]["flagged"] is None
    assert doc["verdicts"]["density"]["flagged"] == "collapse"
    csv_rows = {r["label"]: r for r in csv.DictReader((out / "report.csv").open())}
    assert csv_rows["lr=0.001"]["sample shape"] == "collapse 3/3"
    assert csv_rows["lr=0.001"]["fd_flagged"] == "flagged: collapse"
    assert csv_rows["lr=0.002"]["fd_flagged"] == ""


def test_seeds_that_disagree_are_counted_and_flag_as_a_share() -> None:
    runs = [_shaped(1e-3, 0, SHRUNK), _shaped(1e-3, 1, REAL), _shaped(1e-3, 2, SHRUNK)]
    s = summarise(rows_for(runs), "fd")
    (shape,) = s.shapes[0]
    assert shape.seeds == [0, 2] and shape.note == "collapse on 2/3 seeds"
    assert shape.text().startswith("collapse on 2/3 seeds (0, 2); seed 0: density 2.93 ")
    assert s.flagged(0, "precision") == "flagged: collapse on 2/3 seeds"
    assert s.flagged(0, "recall") is None  # collapse does not flatter recall
