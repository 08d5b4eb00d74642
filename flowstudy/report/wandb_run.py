"""The report's statistics into W&B: one run of ``job_type=report`` in the study group, with
every row's interval and every verdict in its summary and the tables as ``wandb.Table``s.

The training runs' own W&B summaries are not rewritten: an offline run cannot be reopened once
synced, and a report is a claim about the group, not about one run. The report run sits in the
same W&B group as the runs it summarises, so the W&B UI shows them together.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from flowstudy.config import WandbConfig
from flowstudy.report.exports import csv_rows
from flowstudy.report.tables import STATISTICS, Summary
from flowstudy.tracking import check_online


def summary_values(s: Summary) -> dict[str, Any]:
    """Flat W&B summary keys: ``<label>/<metric>/{mean,ci_low,ci_high,n}`` per row and metric,
    ``verdict/<metric>`` (the sentence) and ``winner/<metric>`` (a label, or "" for none)."""
    out: dict[str, Any] = {}
    for label, cells in zip(s.labels, s.cells, strict=True):
        for key in STATISTICS:
            iv = cells[key].interval
            if iv is None:
                continue
            out.update({f"{label}/{key}/mean": iv.mean, f"{label}/{key}/n": iv.n})
            if iv.known:
                out.update({f"{label}/{key}/ci_low": iv.low, f"{label}/{key}/ci_high": iv.high})
            for name in ("vs_floor", "vs_gauss"):
                if getattr(cells[key], name):
                    out[f"{label}/{key}/{name}"] = getattr(cells[key], name)
    for key, v in s.verdicts.items():
        out[f"verdict/{key}"] = v.text
        out[f"winner/{key}"] = v.winner or ""
    return out


def log_report(s: Summary, group: str, out: Path, mode: str) -> str:
    """Log the report to W&B (``mode`` offline or online) under ``out``; returns the run's
    directory (offline: what ``wandb sync`` takes)."""
    check_online(WandbConfig(mode=mode))
    import wandb  # imported here: the tables need no W&B

    first = s.rows[0].runs[0].config.get("wandb", {}) if s.rows else {}
    head, rows = csv_rows(s)
    comparisons = {key: [[c.a, c.b, c.paired, c.shared,
                          c.difference and c.difference.mean,
                          c.difference and c.difference.low, c.difference and c.difference.high,
                          c.p_improvement, c.wins, c.a_better, c.b_better]
                         for c in cs] for key, cs in s.comparisons.items()}
    run = wandb.init(
        project=first.get("project", "flow-matching-study"), entity=first.get("entity"),
        group=group, job_type="report", name=f"report-{group}", dir=str(out), mode=mode,
        config={"metric": s.metric, "interval": s.method,
                "runs": [r.name for row in s.rows for r in row.runs]},
        notes=s.verdict.text if s.verdict else None,
        settings=wandb.Settings(console="off", silent=True), reinit="finish_previous")
    try:
        run.summary.update(summary_values(s))
        tables = {"report": wandb.Table(columns=head, data=[[str(v) for v in r] for r in rows])}
        for key, lines in comparisons.items():
            tables[f"comparisons/{key}"] = wandb.Table(
                columns=["a", "b", "paired", "shared_seeds", "diff_mean", "diff_ci_low",
                         "diff_ci_high", "p_improvement", "a_wins", "a_better", "b_better"],
                data=lines)
        run.log(tables)
        where = os.path.relpath(run.settings.sync_dir) if mode == "offline" else run.url
    finally:
        run.finish()
    return where
