"""The report's "Sampling cost vs quality" table: the records ``python -m flowstudy.sample``
wrote beside each run's checkpoint, read only inside the study (torch-free)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flowstudy.metrics import QUALITY
from flowstudy.results import RunResult, checkpoint_dir_in, evaluation_records


def evaluations(runs: list[RunResult], study: Path) -> list[dict[str, Any]]:
    """The records ``python -m flowstudy.sample`` wrote beside each run's checkpoint in
    ``study``."""
    records = [e for r in runs for e in evaluation_records(checkpoint_dir_in(study, r))]
    return sorted(records, key=lambda e: (e["run"], e["sample"]["solver"], e["nfe"]))


def evaluations_markdown(records: list[dict[str, Any]], metric: str) -> str:
    """Sampling cost against quality: one line per checkpoint evaluation."""
    keys = [k for k in (metric, "w2", "fd") if k in QUALITY]
    keys = list(dict.fromkeys(keys))
    lines = ["| run | epoch | solver | steps | NFE | seed | "
             + " | ".join(f"{k} (floor)" for k in keys) + " |",
             "|" + "---|" * (6 + len(keys))]
    for e in records:
        m, smp = e["metrics"], e["sample"]
        quality = [f"{m[k]:.4f} ({m[k + '_floor']:.4f})" if k in m else "-" for k in keys]
        steps = "-" if smp["solver"] == "dopri5" else str(smp["steps"])
        lines.append(f"| {e['run']} | {e['epoch']} | {smp['solver']} | {steps} | {e['nfe']} | "
                     f"{e['seed']} | " + " | ".join(quality) + " |")
    return "\n".join(lines)
