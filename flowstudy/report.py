"""Side-by-side report of a study group: ``python -m flowstudy.report [--group G] [--study DIR]``.

Reads ``<study>/runs/*/result.json``, ``metrics.jsonl`` and the samples beside the checkpoints
(no W&B needed) and writes, under ``<study>/reports/<group>/``: ``report.md`` and ``report.csv``
(one row per configuration, runs that differ only by seed folded into mean +/- std, the best row
marked) and the figures of ``flowstudy.figures`` (PNG and SVG). The table is printed too.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import re
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowstudy.completion import shell_completion
from flowstudy.config import identity
from flowstudy.errors import UserError
from flowstudy.fileio import atomic_path
from flowstudy.metrics import METRICS, QUALITY
from flowstudy.results import RunResult, evaluation_records

# Ranked columns, then those shown for context only (never used to pick a best row).
RANKED = tuple(q for q in QUALITY if METRICS[q].direction is not None)
CONTEXT = tuple(q for q in QUALITY if METRICS[q].direction is None)


@dataclass
class Row:
    """One configuration: a run, or the runs of several seeds."""

    name: str
    runs: list[RunResult] = field(default_factory=list)

    def values(self, key: str) -> list[float]:
        out = []
        for r in self.runs:
            v = r.metrics.get(key) if key in r.metrics else getattr(r, key, None)
            if isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v)):
                out.append(float(v))
        return out

    def mean(self, key: str) -> float | None:
        v = self.values(key)
        return statistics.fmean(v) if v else None

    def std(self, key: str) -> float | None:
        v = self.values(key)
        return statistics.stdev(v) if len(v) > 1 else None


def load_runs(study: Path) -> list[RunResult]:
    """Every readable result; a damaged one is skipped with a warning, not the whole report."""
    runs = []
    for path in sorted((study / "runs").glob("*/result.json")):
        try:
            runs.append(RunResult.load(path))
        except UserError as e:
            print(f"flowstudy.report: warning: skipping {e}", file=sys.stderr)
    return runs


def _seedless(run: RunResult) -> str:
    """A run's identity less its seed: its config, and the checkpoints its lineage started from
    (a branch is never a seed of a fresh run with the same settings)."""
    config = {k: v for k, v in identity(run.config).items() if k != "seed"}
    parents = [s["parent"] for s in run.lineage if s.get("parent")]
    return json.dumps([config, parents], sort_keys=True)


def rows_for(runs: list[RunResult]) -> list[Row]:
    """Fold runs whose configs differ only by seed into one row."""
    rows: dict[str, Row] = {}
    for r in runs:
        key = _seedless(r)
        if key not in rows:
            rows[key] = Row(name=re.sub(r"-seed-?\d+", "", r.name))
        rows[key].runs.append(r)
    for row in rows.values():
        if len(row.runs) == 1:
            row.name = row.runs[0].name
    return list(rows.values())


def default_metric(runs: list[RunResult]) -> str:
    """W2 for 2-d data, Frechet distance otherwise; val loss when no run has sample metrics."""
    if not any(r.metrics for r in runs):
        return "best_val_loss"
    return "w2" if all(r.dim == 2 for r in runs if r.dim) else "fd"


def _cell(row: Row, key: str, digits: int = 4) -> str:
    """``mean ± std`` over the row's seeds; counts as integers, equal values without a spread."""
    values = row.values(key)
    if not values:
        return "-"
    mean, std = statistics.fmean(values), row.std(key)
    if key in ("epochs", "steps", "params", "flops"):
        text = f"{mean:,.0f}" if key != "flops" else f"{mean:.3g}"
        return text if len(set(values)) == 1 else f"{text} ± {std:.{digits}g}"
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")


def _quality(row: Row, key: str) -> str:
    """The metric with its real-vs-real floor and its Gaussian-fit baseline in brackets."""
    value = _cell(row, key)
    marks = [f"{label} {mean:.4f}" for label, mean in (("floor", row.mean(f"{key}_floor")),
                                                        ("gauss", row.mean(f"{key}_baseline")))
             if mean is not None]
    return value if not marks or value == "-" else f"{value} ({', '.join(marks)})"


def _swept(row: Row) -> str:
    keys = sorted({k for r in row.runs for k in r.swept if k != "seed" or len(row.runs) == 1})
    return ", ".join(f"{k}={row.runs[0].swept[k]}" for k in keys if k in row.runs[0].swept)


def _status(row: Row) -> str:
    statuses = sorted({r.status for r in row.runs})
    return "/".join(statuses)


def table(rows: list[Row], metric: str) -> tuple[list[str], list[list[str]], int | None]:
    """Header, cells and the index of the best completed row by ``metric``."""
    header = ["name", "swept", "seeds", "status", "epochs", "steps", "stop", "best val loss",
              *(f"{q} (floor, gauss)" for q in (*RANKED, *CONTEXT)), "params", "FLOPs",
              "wall s"]
    cells = []
    for row in rows:
        cells.append([row.name, _swept(row), str(len(row.runs)), _status(row),
                      _cell(row, "epochs"), _cell(row, "steps"),
                      "/".join(sorted({r.stop_reason or "-"
                                                              for r in row.runs})),
                      _cell(row, "best_val_loss"),
                      *(_quality(row, q) for q in (*RANKED, *CONTEXT)),
                      _cell(row, "params"), _cell(row, "flops"), _cell(row, "wall_time_s", 2)])
    done = [i for i, row in enumerate(rows)
            if all(r.status == "completed" for r in row.runs) and row.mean(metric) is not None]
    sign = 1 if METRICS[metric].lower_is_better else -1
    best = min(done, key=lambda i: sign * rows[i].mean(metric)) if done else None
    return header, cells, best


def markdown(header: list[str], cells: list[list[str]], best: int | None) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for i, line in enumerate(cells):
        shown = [f"**{c}**" if i == best and c not in ("-", "") else c for c in line]
        lines.append("| " + " | ".join(shown) + " |")
    return "\n".join(lines)


def evaluations(runs: list[RunResult]) -> list[dict[str, Any]]:
    """The records ``python -m flowstudy.sample`` wrote beside each run's checkpoint."""
    records = [e for r in runs for e in evaluation_records(r.checkpoint)]
    return sorted(records, key=lambda e: (e["run"], e["sample"]["solver"], e["nfe"]))


def evaluations_markdown(records: list[dict[str, Any]], metric: str) -> str:
    """Sampling cost against quality: one line per checkpoint evaluation."""
    keys = [k for k in (metric, "w2", "fd") if k in QUALITY]
    keys = list(dict.fromkeys(keys))
    lines = ["| run | epoch | solver | steps | NFE | seed | "
             + " | ".join(f"{k} (floor)" for k in keys) + " |",
             "|" + "---|" * (6 + len(keys))]
    for e in records:
        m, s = e["metrics"], e["sample"]
        quality = [f"{m[k]:.4f} ({m[k + '_floor']:.4f})" if k in m else "-" for k in keys]
        steps = "-" if s["solver"] == "dopri5" else str(s["steps"])
        lines.append(f"| {e['run']} | {e['epoch']} | {s['solver']} | {steps} | {e['nfe']} | "
                     f"{e['seed']} | " + " | ".join(quality) + " |")
    return "\n".join(lines)


def report(study: Path, group: str, metric: str | None = None) -> Path:
    runs = [r for r in load_runs(study) if group in (r.groups or [r.group])]
    if not runs:
        raise SystemExit(f"flowstudy.report: no runs in group {group!r} under {study / 'runs'}")
    metric = metric or default_metric(runs)
    rows = rows_for(runs)
    header, cells, best = table(rows, metric)
    out = study / "reports" / group
    out.mkdir(parents=True, exist_ok=True)
    text = (f"# Study group `{group}`\n\n{len(runs)} runs, {len(rows)} configurations; "
            f"best (bold) by {metric}; floor: the same metric between two real sample sets; "
            f"gauss: for samples of a Gaussian fitted to the train split.\n\n"
            + markdown(header, cells, best) + "\n")
    evaluated = evaluations(runs)
    if evaluated:
        text += ("\n## Sampling cost vs quality\n\nCheckpoints re-sampled with "
                 "`python -m flowstudy.sample` (the runs' results are unchanged).\n\n"
                 + evaluations_markdown(evaluated, metric) + "\n")
    with atomic_path(out / "report.md") as tmp:
        tmp.write_text(text)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([*header, "best"])
    for i, line in enumerate(cells):
        writer.writerow([*line, "yes" if i == best else ""])
    with atomic_path(out / "report.csv") as tmp:
        tmp.write_text(buffer.getvalue())
    # The figures need torch (samples on disk are tensors) and matplotlib: imported here, where
    # they are drawn, so --help, completion and the table need neither.
    from flowstudy import figures

    configs = [(row.name, row.runs) for row in rows]
    drawn = [name for name, made in (
        ("val_loss", figures.validation_curves(configs, study, out / "val_loss.png", group)),
        ("samples", figures.sample_montage(configs, study, out / "samples.png", group, metric)),
        ("nfe", figures.quality_vs_nfe(runs, study, out / "nfe.png", group, metric)),
        ("data_size", figures.quality_vs_data_size(runs, study, out / "data_size.png", group,
                                                   metric))) if made]
    print(text)
    print(f"wrote {out}/report.md, report.csv" + "".join(f", {n}.png/.svg" for n in drawn))
    return out


def study_groups(study: Path) -> list[str]:
    return sorted({g for r in load_runs(study) for g in (r.groups or [r.group])})


def main() -> None:
    script = "flowstudy-report"
    parser = argparse.ArgumentParser(
        prog=script if Path(sys.argv[0]).name == script else "python -m flowstudy.report",
        description="Tabulate and plot a study group's runs.")
    parser.add_argument("--group", help="study group (default: every group found)")
    parser.add_argument("--study", default="study", type=Path, help="study dir (default: study)")
    parser.add_argument("--metric", choices=[m.name for m in METRICS.values() if m.direction],
                        help="what picks the best row (default: w2 for 2-d data, else fd)")
    parser.add_argument("-sc", "--shell-completion", metavar="install=bash",
                        help=f'print the bash completion of {script}: eval "$({script} -sc '
                             f'install=bash)"')
    args = parser.parse_args()
    if args.shell_completion:
        print(shell_completion(args.shell_completion, script, parser,
                               {"group": lambda given: study_groups(given.study)}))
        return
    groups = [args.group] if args.group else study_groups(args.study)
    if not groups:
        raise SystemExit(f"flowstudy.report: no runs under {args.study / 'runs'}")
    for group in groups:
        report(args.study, group, args.metric)


if __name__ == "__main__":
    main()
