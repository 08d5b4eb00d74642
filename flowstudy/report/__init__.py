"""Side-by-side report of a study group: ``python -m flowstudy.report [--group G] [--study DIR]``.

Reads ``<study>/runs/*/result.json``, ``metrics.jsonl`` and the samples beside the checkpoints
(no W&B needed) and writes, under ``<study>/reports/<group>/``: ``report.md``, ``report.csv``
and ``report.json`` (one row per configuration, the runs that differ only by seed together:
every metric with its 95% interval over seeds, paired comparisons, verdicts; the statistics are
``flowstudy.stats``'s) and the figures of ``flowstudy.figures`` (PNG and SVG). The table is
printed too; ``--wandb offline`` also logs it as a W&B run of the group.

- ``rows``: runs on disk, folded into rows; ``tables``: statistics, Markdown, CSV, JSON;
  ``wandb_run``: the W&B report run; ``command``: ``report()`` and the CLI.
"""

from flowstudy.report.command import main, report
from flowstudy.report.rows import Row, default_metric, load_runs, rows_for, study_groups
from flowstudy.report.tables import markdown, summarise, table

__all__ = ["Row", "default_metric", "load_runs", "main", "markdown", "report", "rows_for",
           "study_groups", "summarise", "table"]
