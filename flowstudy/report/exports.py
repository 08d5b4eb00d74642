"""A report's ``Summary`` as CSV rows and as report.json: every statistic as numbers, for a
spreadsheet or a notebook, with no parsing of cells (torch-free)."""

from __future__ import annotations

from typing import Any

from flowstudy import stats
from flowstudy.metrics import METRICS
from flowstudy.report.tables import COSTS, STATISTICS, Summary, header, swept_text, table_cells


def csv_rows(s: Summary) -> tuple[list[str], list[list[Any]]]:
    """The table's columns, ``best``, then every statistic as numbers: per metric its mean,
    interval, seeds, sd, yardstick means and verdicts, and its collapse flag."""
    numeric = ["mean", "ci_low", "ci_high", "n", "sd", "floor", "baseline", "vs_floor",
               "vs_gauss", "flagged"]
    head = [*header(), "best", "label",
            *(f"{k}_{n}" for k in STATISTICS for n in numeric)]
    out = []
    for i, line in enumerate(table_cells(s)):
        values: list[Any] = []
        for k in STATISTICS:
            c = s.cells[i][k]
            iv = c.interval
            values += [iv and iv.mean, iv and iv.low, iv and iv.high, iv.n if iv else 0,
                       iv and iv.sd, c.floor and c.floor.mean, c.baseline and c.baseline.mean,
                       c.vs_floor, c.vs_gauss, s.flagged(i, k)]
        out.append([*line, "yes" if i == s.best else "", s.labels[i],
                    *("" if v is None else v for v in values)])
    return head, out


def document(s: Summary, group: str) -> dict[str, Any]:
    """report.json: what a notebook needs, with no parsing of cells."""
    return {
        "group": group, "metric": s.metric, "interval": s.method,
        "confidence": stats.CONFIDENCE,
        "directions": {k: METRICS[k].direction for k in STATISTICS},
        "rows": [{"name": row.name, "label": s.labels[i], "swept": swept_text(row),
                  "status": sorted({r.status for r in row.runs}), "seeds": row.seeds,
                  "runs": [r.name for r in row.runs], "best": i == s.best,
                  "cells": {k: {**c.to_dict(), "flagged": s.flagged(i, k)}
                            for k, c in s.cells[i].items() if c.seeds},
                  "sample_shape": [sh.to_dict() for sh in s.shapes[i]],
                  "cost": {k: row.mean(k) for k, _ in COSTS}}
                 for i, row in enumerate(s.rows)],
        "comparisons": {k: [c.to_dict() for c in cs] for k, cs in s.comparisons.items()},
        "verdicts": {k: {**v.to_dict(), "flagged": s.verdict_flag(k)}
                     for k, v in s.verdicts.items()},
    }
