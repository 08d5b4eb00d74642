"""Compute-matched arms in the report: the best size per budget, the verdict per budget, the
IsoFLOP figure (synthetic results; the real preset is in docs/sweeps-and-reports.md)."""

from __future__ import annotations

from pathlib import Path

from flowstudy import figures
from flowstudy.report.compute import compute_matched
from flowstudy.results import RunResult


def _run(arch: str, params: int, budget: float, seed: int, w2: float) -> RunResult:
    return RunResult(
        name=f"{arch}-{params}-{budget:g}-seed{seed}", group="g", status="completed",
        params=params, dim=2, steps=int(budget // (params * 1000)),
        config={"seed": seed, "arch": {"name": arch}, "train": {"budget": {"flops": budget}}},
        budget={"kind": "flops", "value": budget, "planned_steps": 1},
        metrics={"w2": w2, "w2_floor": 0.10, "w2_baseline": 0.36})


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
