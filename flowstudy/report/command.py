"""``python -m flowstudy.report``: write a group's report files and print its table."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path

from flowstudy import stats
from flowstudy.completion import shell_completion
from flowstudy.errors import UserError
from flowstudy.fileio import atomic_path, ensure_writable_dir
from flowstudy.metrics import METRICS
from flowstudy.report.compute import compute_matched
from flowstudy.report.evaluations import evaluations, evaluations_markdown
from flowstudy.report.exports import csv_rows, document
from flowstudy.report.rows import default_metric, load_runs, rows_for, study_groups
from flowstudy.report.tables import (
    markdown,
    shape_lines,
    summarise,
    summary_markdown,
    table,
)


def report(study: Path, group: str, metric: str | None = None, method: stats.Method = "t",
           wandb_mode: str | None = None) -> Path:
    every = load_runs(study)
    runs = [r for r in every if group in (r.groups or [r.group])]
    if not runs:
        groups = sorted({g for r in every for g in (r.groups or [r.group])})
        raise SystemExit(f"flowstudy.report: no runs in group {group!r} under {study / 'runs'}"
                         + (f"; its groups: {', '.join(groups)}" if groups else ""))
    metric = metric or default_metric(runs)
    rows = rows_for(runs)
    s = summarise(rows, metric, method)
    head, cells, best = table(rows, metric, method, s)
    out = study / "reports" / group
    try:  # before any work: a study the report cannot write to is one line
        ensure_writable_dir(out, "--study")
    except UserError as e:
        raise SystemExit(f"flowstudy.report: {e}; the report is written under "
                         f"<study>/reports/<group>") from None
    interval = ("Student-t" if method == "t" else f"{method} bootstrap")
    fewest = min((len(row.runs) for row in rows), default=0)
    warning = ""
    if method != "t" and fewest < 10:  # flowstudy.stats: 48-88% coverage from 2 to 10 seeds
        warning = (f" With {fewest} seeds a bootstrap interval is too narrow: below ~10 seeds "
                   f"it covers the mean well under 95% of the time (the default t interval "
                   f"does not).")
    text = (f"# Study group `{group}`\n\n{len(runs)} runs, {len(rows)} configurations. Each "
            f"metric: mean [{stats.CONFIDENCE:.0%} {interval} interval over seeds] (floor: the "
            f"same metric between two real sample sets; gauss: for samples of a Gaussian fitted "
            f"to the train split). A row is bold only when it wins by {metric} outside the "
            f"interval and its samples do not flatter {metric} (collapse, over-spread)."
            f"{warning}\n\n" + markdown(head, cells, best) + "\n\n"
            + summary_markdown(s) + "\n")
    matched = compute_matched(runs, metric, method)  # FLOP-budget runs at two budgets or more
    if matched is not None:
        text += "\n" + matched.markdown() + "\n"
    for line in shape_lines(s):  # on the console too, where a sweep's log is read
        print(f"flowstudy.report: warning: group {group!r}: samples of {line}", file=sys.stderr)
    evaluated = evaluations(runs, study)
    if evaluated:
        text += ("\n## Sampling cost vs quality\n\nCheckpoints re-sampled with "
                 "`python -m flowstudy.sample` (the runs' results are unchanged).\n\n"
                 + evaluations_markdown(evaluated, metric) + "\n")
    with atomic_path(out / "report.md") as tmp:
        tmp.write_text(text)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    csv_head, csv_lines = csv_rows(s)
    writer.writerow(csv_head)
    writer.writerows(csv_lines)
    with atomic_path(out / "report.csv") as tmp:
        tmp.write_text(buffer.getvalue())
    with atomic_path(out / "report.json") as tmp:
        doc = document(s, group)
        if matched is not None:
            doc["compute_matched"] = matched.to_dict()
        tmp.write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n")
    from flowstudy import figures  # imported here: the tables (and --help) need no torch

    configs = [(row.name, row.runs) for row in rows]
    drawn = [name for name, made in (
        ("metrics", figures.metric_intervals(s, out / "metrics.png", group)),
        ("val_loss", figures.validation_curves(configs, study, out / "val_loss.png", group)),
        ("samples", figures.sample_montage(configs, study, out / "samples.png", group, metric)),
        ("nfe", figures.quality_vs_nfe(runs, study, out / "nfe.png", group, metric)),
        ("data_size", figures.quality_vs_data_size(runs, study, out / "data_size.png", group,
                                                   metric)),
        ("isoflop", figures.isoflop(matched, out / "isoflop.png", group))) if made]
    print(text)
    print(f"wrote {out}/report.md, report.csv, report.json"
          + "".join(f", {n}.png/.svg" for n in drawn))
    if wandb_mode:
        from flowstudy.report.wandb_run import log_report

        print(f"W&B report run: {log_report(s, group, out, wandb_mode)}")
    return out


def main() -> None:
    script = "flowstudy-report"
    parser = argparse.ArgumentParser(
        prog=script if Path(sys.argv[0]).name == script else "python -m flowstudy.report",
        description="Tabulate and plot a study group's runs, with intervals over seeds, "
                    "paired comparisons and verdicts.")
    parser.add_argument("--group", help="study group (default: every group found)")
    parser.add_argument("--study", default="study", type=Path, help="study dir (default: study)")
    parser.add_argument("--metric", choices=[m.name for m in METRICS.values() if m.direction],
                        help="what picks the best row (default: w2 for 2-d data, else fd)")
    parser.add_argument("--interval", choices=stats.METHODS, default="t",
                        help="the 95%% interval over seeds: t (Student-t, the default: honest "
                             "at 2-5 seeds), or a percentile or bca bootstrap (many seeds)")
    parser.add_argument("--wandb", choices=("offline", "online"),
                        help="also log the report as a W&B run (job_type=report) in the group")
    parser.add_argument("-sc", "--shell-completion", metavar="install=bash",
                        help=f'print the bash completion of {script}: eval "$({script} -sc '
                             f'install=bash)"')
    # argparse's usage text would bury the one line that says what is wrong (--help has it)
    parser.error = lambda message: parser.exit(  # type: ignore[method-assign]
        2, f"{parser.prog}: error: {message}\n")
    args = parser.parse_args()
    if args.shell_completion:
        print(shell_completion(args.shell_completion, script, parser,
                               {"group": lambda given: study_groups(given.study)}))
        return
    if args.study.exists() and not args.study.is_dir():
        raise SystemExit(f"flowstudy.report: --study {args.study} is not a directory: give the "
                         f"study directory (the one holding runs/)")
    groups = [args.group] if args.group else study_groups(args.study)
    if not groups:
        raise SystemExit(f"flowstudy.report: no runs under {args.study / 'runs'}")
    for group in groups:
        try:
            report(args.study, group, args.metric, args.interval, args.wandb)
        except OSError as e:  # the disk filled, or the directory changed under the report
            where = f"{e.filename}" if e.filename else f"the report of group {group!r}"
            raise SystemExit(f"flowstudy.report: could not write {where} "
                             f"({e.strerror or e})") from None
