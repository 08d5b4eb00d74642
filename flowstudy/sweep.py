"""What a run knows of the sweep it is part of, and the sweep's end-of-run summary.

A run learns which keys its sweep varies (for its W&B tags and report), how many jobs share the
machine (for its thread count) and which GPU is its own; each job leaves a ``job.json`` in its
Hydra job directory, and the ``SweepSummary`` callback prints one line per job when the sweep
ends. Nothing else in a run knows it is in a sweep.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from hydra import compose
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from flowstudy.config import validate
from flowstudy.errors import Refused, describe
from flowstudy.fileio import write_json

# Set by SweepSummary when a sweep ends: (jobs, jobs that failed or were interrupted, jobs that
# another process is training).
last_sweep: tuple[int, int, int] | None = None


def swept_keys(hydra_cfg: DictConfig) -> list[str]:
    """Keys the sweep gives several values: on its command line or in ``hydra.sweeper.params``
    (where an ablation puts its grid)."""
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return []
    command_line = OmegaConf.load(Path(hydra_cfg.sweep.dir) / "multirun.yaml").hydra.overrides.task
    params = hydra_cfg.sweeper.get("params") or {}
    lines = [f"{key}={value}" for key, value in params.items()] + list(command_line)
    overrides = OverridesParser.create().parse_overrides(lines)
    return sorted({o.key_or_group for o in overrides if o.is_sweep_override()})


def swept_values(cfg: DictConfig, hydra_cfg: DictConfig) -> dict[str, Any]:
    """Every swept key -> this job's value (a group's value is the option chosen, not the whole
    node it composes). The run's name comes from all its overrides, swept or not."""
    choices = hydra_cfg.runtime.choices

    def value(key: str) -> Any:
        v = OmegaConf.select(cfg, key)
        return OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v

    return {key: choices[key] if key in choices else value(key) for key in swept_keys(hydra_cfg)}


def parallel_jobs(hydra_cfg: DictConfig) -> int:
    """How many jobs of this sweep run at once on this machine (joblib's n_jobs; else 1)."""
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return 1
    n_jobs = hydra_cfg.launcher.get("n_jobs")
    if n_jobs is None:
        return 1
    return (os.cpu_count() or 1) if n_jobs < 0 else max(1, int(n_jobs))


def write_job_record(job_dir: Path, record: dict[str, Any]) -> None:
    write_json(job_dir / "job.json", record)


def check_jobs(config: DictConfig) -> None:
    """Validate every job of a sweep before the first starts, so a bad value in a grid is one
    line (exit 2) and not a failed job after hours of others."""
    params = config.hydra.sweeper.get("params") or {}
    lines = [f"{key}={value}" for key, value in params.items()] + list(config.hydra.overrides.task)
    overrides = OverridesParser.create().parse_overrides(lines)
    for batch in BasicSweeper.split_arguments(overrides, None):
        for job in batch:
            job = [o for o in job if not o.startswith(("hydra.", "hydra/"))]
            validate(OmegaConf.to_object(compose("config", overrides=job)))


class SweepSummary(Callback):
    """Before a sweep: every job's config is checked. At its end: one line per job, and the
    count of jobs that did not complete."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            check_jobs(config)
        except Exception as e:  # Hydra turns a callback's Exception into a warning and goes on
            message = describe(e)
            if message is None:
                raise
            raise Refused(message) from e

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        global last_sweep
        records = [json.loads(p.read_text())
                   for p in Path(config.hydra.sweep.dir).glob("*/job.json")]
        records.sort(key=lambda r: r["job"])
        print("\nsweep summary:")
        for r in records:
            best = "-" if r.get("best_val_loss") is None else f"{r['best_val_loss']:.4f}"
            metric = r.get("metric") or {}
            quality = "  ".join(f"{k} {v:.4f}" for k, v in metric.items())
            print(f"  [{r['job']}] {r['name']:<40} {r['status']:<12} val {best:<8} {quality}"
                  + (f"  ({r['error']})" if r.get("error") else ""))
        busy = sum(r["status"] == "running elsewhere" for r in records)
        bad = sum(r["status"] not in ("completed", "skipped", "running elsewhere")
                  for r in records)
        print(f"{len(records) - bad - busy} of {len(records)} runs completed or skipped as done"
              + (f"; {busy} being trained by another process (rerun this sweep once it has "
                 f"finished to count them)" if busy else ""))
        last_sweep = (len(records), bad, busy)
