"""What a run knows of the sweep it is part of, the sweep's progress lines and its summary.

When a sweep starts (in the launching process) it records in ``<sweep dir>/sweep.json`` which
keys it varies and how many jobs it will run, whatever the sweeper (Hydra's basic grid or Optuna).
A run reads that file to learn its swept keys (for its name and W&B tags); how many jobs share the
machine (for its thread count) and which GPU is its own come from the launcher's config. Each job
leaves a ``job.json`` in its Hydra job directory; the ``SweepSummary`` callback prints one line per
job as it ends (``[k/n] name status objective elapsed ~remaining``) and one line per job when the
sweep ends. A job's return value, which Optuna optimises, is ``objective()``. Before the first
job, every job's config is validated. Nothing else in a run knows it is in a sweep.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import time
from enum import Enum
from pathlib import Path
from typing import Any

from hydra import compose
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ValueType
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from flowstudy.config import Config, check_keys, validate, validate_eval
from flowstudy.errors import ConfigError, Refused, UserError, describe, output_dir_line
from flowstudy.fileio import write_json
from flowstudy.metrics import OBJECTIVES
from flowstudy.results import RunResult

# Set by SweepSummary when a sweep ends: (jobs, jobs that failed or were interrupted, jobs that
# another process is training).
last_sweep: tuple[int, int, int] | None = None
_sweep_dir: Path | None = None  # the sweep this process launched, once it has started

SWEEP_FILE = "sweep.json"


def _sweep_overrides(config: DictConfig) -> list[Any]:
    """The sweep's overrides: its ``hydra.sweeper.params`` (where an ablation or a search space
    puts them), then its command line, which may narrow them."""
    params = config.hydra.sweeper.get("params") or {}
    lines = [f"{key}={value}" for key, value in params.items()]
    lines += list(config.hydra.overrides.task)
    return OverridesParser.create(config_loader=_config_loader()).parse_overrides(lines)


def _planned_jobs(config: DictConfig, overrides: list[Any]) -> int | None:
    """How many jobs the sweep will run: the basic sweeper's grid, Optuna's ``n_trials``."""
    sweeper = config.hydra.sweeper
    if "n_trials" in sweeper:
        return int(sweeper.n_trials)
    if sweeper.get("_target_", "").endswith(".BasicSweeper"):
        try:
            return len(BasicSweeper.split_arguments(overrides, None)[0])
        except Exception:  # a sweep syntax the grid cannot count (the sweep itself will say)
            return None
    return None


def _config_loader() -> Any:
    """The launching process's config loader: a grid's ``glob()`` over a group lists its
    options through it."""
    hydra = GlobalHydra.instance()
    return hydra.config_loader() if hydra.is_initialized() else None


def record_sweep(config: DictConfig) -> None:
    """Write ``sweep.json`` for the sweep ``config`` (the launching process's) is starting."""
    global _sweep_dir
    _sweep_dir = Path(config.hydra.sweep.dir)
    overrides = _sweep_overrides(config)
    write_json(_sweep_dir / SWEEP_FILE, {
        "keys": sorted({o.key_or_group for o in overrides if o.is_sweep_override()}),
        "jobs": _planned_jobs(config, overrides),
        "started": time.time(),
        # The command line (grid and all), for the command that continues an interrupted sweep.
        "overrides": [*(o for o in config.hydra.overrides.hydra
                        if not o.startswith(("hydra.mode=", "hydra.sweep.dir=", "hydra.run.dir="))),
                      *config.hydra.overrides.task],
    })


def _sweep_record(hydra_cfg: DictConfig) -> dict[str, Any]:
    return json.loads((Path(hydra_cfg.sweep.dir) / SWEEP_FILE).read_text())


def resume_command(hydra_cfg: DictConfig) -> str:
    """The command that continues an interrupted sweep: the whole grid again with
    ``resume=auto``, so completed jobs are skipped, the interrupted one continues from its
    ``last.pt`` and the jobs not yet started train."""
    given = _sweep_record(hydra_cfg).get("overrides") or list(hydra_cfg.overrides.task)
    kept = [o for o in given if not o.startswith(("resume=", "+resume=", "++resume="))]
    return shlex.join(["python", "-m", "flowstudy.train", "-m", *kept, "resume=auto"])


def swept_keys(hydra_cfg: DictConfig) -> list[str]:
    """Keys the sweep gives several values (a grid's lists, a search space's distributions)."""
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return []
    return list(_sweep_record(hydra_cfg)["keys"])


def swept_values(cfg: DictConfig, hydra_cfg: DictConfig) -> dict[str, Any]:
    """Every swept key -> this job's value (a group's value is the option chosen, not the whole
    node it composes). The run's name comes from all its overrides, swept or not."""
    choices = hydra_cfg.runtime.choices

    def value(key: str) -> Any:
        v = OmegaConf.select(cfg, key)
        return OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v

    return {key: choices[key] if key in choices else value(key) for key in swept_keys(hydra_cfg)}


def objective(result: RunResult, metric: str) -> float | None:
    """What a sweep job returns: ``metric`` (``best_val_loss`` or a sample metric) of a completed
    run, or of the completed run a rerun skipped. Anything else (not completed, no finite value)
    is None, which Optuna's sweeper records as a failed trial; NaN would stop the whole search."""
    if result.status != "completed":
        return None
    value = result.best_val_loss if metric == "best_val_loss" else result.metrics.get(metric)
    return float(value) if value is not None and math.isfinite(value) else None


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
    line (exit 2) and not a failed job after hours of others; a grid of no jobs is refused."""
    if not config.hydra.sweeper.get("_target_", "").endswith(".BasicSweeper"):
        return  # a search space (Optuna) has no grid to enumerate; its trials check themselves
    config_name = config.hydra.job.get("config_name") or "config"
    overrides = _sweep_overrides(config)
    ranges = [o.input_line for o in overrides if o.value_type == ValueType.INTERVAL_SWEEP]
    if ranges:
        raise UserError(f"{ranges[0]}: interval() is a range to search, which only an Optuna "
                        f"search samples; add hparams_search=lr_optuna (or "
                        f"hydra/sweeper=optuna), or list the values to run: key=0.1,0.3,1")
    jobs = 0
    for batch in BasicSweeper.split_arguments(overrides, None):
        for job in batch:
            jobs += 1
            job = [o for o in job if not o.startswith(("hydra.", "hydra/"))]
            composed = compose(config_name, overrides=job)
            check_keys(composed)
            typed = OmegaConf.to_object(composed)
            if isinstance(typed, Config):
                validate(typed)
            else:
                validate_eval(typed)
    if jobs == 0:
        swept = [o.input_line for o in _sweep_overrides(config) if o.is_sweep_override()]
        raise UserError(f"{' '.join(swept)}: this sweep expands to no jobs "
                        f"(an empty glob or range?); nothing to run")


def check_search(config: DictConfig) -> None:
    """An Optuna search's own settings, which Optuna reads only once the search is under way (a
    traceback, or a loop that never ends): one direction, the objective's, and at least one
    trial, proposed at least one at a time."""
    sweeper = config.hydra.sweeper
    if "n_trials" not in sweeper:
        return  # not a search
    objective = config.get("objective", "best_val_loss")
    wanted = OBJECTIVES.get(objective)
    direction = sweeper.get("direction")
    direction = direction.name if isinstance(direction, Enum) else direction  # Optuna's default
    if OmegaConf.is_list(direction) or str(direction) not in ("minimize", "maximize"):
        raise ConfigError("hydra.sweeper.direction", _plain(direction),
                          f"minimize or maximize, one direction (a run returns one objective); "
                          f"leave it out: the search takes {objective}'s ({wanted})")
    if wanted is not None and direction != wanted:
        raise ConfigError("hydra.sweeper.direction", direction,
                          f"{wanted} for objective={objective} (it would search for the worst "
                          f"runs); leave it out: the search takes the objective's direction")
    for key in ("n_trials", "n_jobs"):
        value = sweeper.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"hydra.sweeper.{key}", _plain(value), "an integer >= 1")


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value


class GridCheck(Callback):
    """``flowstudy.sample -m``: every job of the grid is checked before the first runs."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _refuse_bad_grid(config)


def _refuse_bad_grid(config: DictConfig) -> None:
    try:
        check_search(config)
        check_jobs(config)
    except Exception as e:  # Hydra turns a callback's Exception into a warning and goes on
        message = describe(e)
        if message is None:
            raise
        raise Refused(message) from e


def duration(seconds: float) -> str:
    """``41s``, ``3m05s``, ``2h07m``: short enough for a progress line."""
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def progress_line(done: int, planned: int | None, record: dict[str, Any], objective_name: str,
                  value: float | None, job_seconds: float, sweep_seconds: float) -> str:
    """``[3/6] <name>  completed  best_val_loss 1.4432  12s  (sweep 41s, ~1m22s left)``."""
    shown = "-" if value is None else f"{value:.4f}"
    left = ""
    if planned is not None and planned > done:
        left = f", ~{duration(sweep_seconds / done * (planned - done))} left"
    error = f"  ({record['error']})" if record.get("error") else ""
    return (f"[{done}/{planned if planned is not None else '?'}] {record['name']}  "
            f"{record['status']}  {objective_name} {shown}  {duration(job_seconds)}  "
            f"(sweep {duration(sweep_seconds)}{left}){error}")


class SweepSummary(Callback):
    """Records the sweep and checks every job's config when it starts, prints a progress line as
    each job ends, and at the end one line per job and the count of jobs that did not complete.

    Job callbacks run where the job runs (a joblib worker, a SLURM node), so everything they
    report comes from the files in the sweep directory, not from this object's memory.
    """

    def __init__(self) -> None:
        self._job_started = 0.0

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _refuse_bad_grid(config)  # first: a refused grid leaves no sweep directory
        try:
            record_sweep(config)
        except OSError as e:  # Hydra would warn, then fail on the same directory itself
            raise Refused(output_dir_line(e)) from e

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._job_started = time.monotonic()

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        hydra_cfg = config.hydra
        job_file = Path(hydra_cfg.runtime.output_dir) / "job.json"
        if hydra_cfg.mode != RunMode.MULTIRUN or not job_file.exists():
            return
        sweep = _sweep_record(hydra_cfg)
        done = len(list(Path(hydra_cfg.sweep.dir).glob("*/job.json")))
        # A job that raised (an interruption) carries its exception, not a value.
        value = job_return._return_value if job_return.status.name == "COMPLETED" else None
        print(progress_line(done, sweep["jobs"], json.loads(job_file.read_text()),
                            config.get("objective", "best_val_loss"),
                            value if isinstance(value, float) else None,
                            time.monotonic() - self._job_started,
                            time.time() - sweep["started"]), flush=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        summarize(Path(config.hydra.sweep.dir))


def summarize(sweep_dir: Path) -> list[dict[str, Any]]:
    """One line per job of the sweep in ``sweep_dir``, the count that completed; ``last_sweep``.
    Returns the jobs' records."""
    global last_sweep
    records = [json.loads(p.read_text()) for p in sweep_dir.glob("*/job.json")]
    records.sort(key=lambda r: r["job"])
    print("\nsweep summary:")
    for r in records:
        best = "-" if r.get("best_val_loss") is None else f"{r['best_val_loss']:.4f}"
        metric = r.get("metric") or {}
        quality = "  ".join(f"{k} {v:.4f}" for k, v in metric.items())
        print(f"  [{r['job']}] {r['name']!s:<40} {r['status']:<12} val {best:<8} {quality}"
              + (f"  ({r['error']})" if r.get("error") else ""))
    busy = sum(r["status"] == "running elsewhere" for r in records)
    bad = sum(r["status"] not in ("completed", "skipped", "running elsewhere")
              for r in records)
    print(f"{len(records) - bad - busy} of {len(records)} runs completed or skipped as done"
          + (f"; {busy} being trained by another process (rerun this sweep once it has "
             f"finished to count them)" if busy else ""))
    last_sweep = (len(records), bad, busy)
    return records


def end_of_failed_search(e: Exception) -> str | None:
    """Optuna's sweeper asks for the best of the completed trials once the search is done, and
    raises ValueError where every trial failed: the search's end all the same. Its summary, and
    one line with the first failure; None for any other exception."""
    if not (isinstance(e, ValueError) and str(e).startswith("No trials are completed")
            and _sweep_dir is not None):
        return None
    records = summarize(_sweep_dir)
    first = next((r for r in records if r.get("error")), None)
    return (f"all {len(records)} trials of the search failed, so it has no best trial"
            + (f"; the first, job {first['job']}: {first['error']}" if first else ""))
