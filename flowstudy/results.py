"""A run's ``result.json``: what happened and what it reached, rewritten atomically."""

from __future__ import annotations

import logging
import os
import socket
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from flowstudy.errors import Busy, Diverged, UserError
from flowstudy.fileio import alive, read_json, write_json
from flowstudy.interrupt import Interrupted
from flowstudy.metrics import PROJECTED, SET_METRICS
from flowstudy.metrics.collapse import collapse_warnings

log = logging.getLogger("flowstudy")


@dataclass
class RunResult:
    name: str
    group: str  # the W&B group it was trained in
    # The derived name in full where ``name`` is its shortened form (config.naming.short_name)
    full_name: str | None = None
    groups: list[str] = field(default_factory=list)  # every study group that counts this run
    swept: dict[str, Any] = field(default_factory=dict)  # the keys its sweep varied
    # running | trained (training finished, evaluation not: rerunning evaluates) | completed |
    # failed | interrupted | diverged
    status: str = "running"
    stop_reason: str | None = None  # max_epochs | early_stopping | budget
    error: str | None = None
    epochs: int = 0
    steps: int = 0
    # the monitored val loss at best.pt (for a sample monitor: best.pt's EMA val loss)
    best_val_loss: float | None = None
    best_epoch: int | None = None
    wall_time_s: float = 0.0
    threads: int | None = None  # torch intra-op threads it trained with
    tf32: bool | None = None  # whether fp32 matmuls ran on TF32 tensor cores (CUDA only)
    step_mode: str | None = None  # eager | cuda_graph: how its training steps ran
    compile_s: float | None = None  # seconds torch.compile took, outside steps_per_s
    # What it cost: FLOPs counted for one step (forward + backward, all ranks) and in total, the
    # 6 * params * samples estimate beside them, throughput and peak memory (CUDA allocated, or
    # the process's peak RSS on a CPU).
    flops_per_step: float | None = None
    flops: float | None = None
    flops_6nd: float | None = None
    steps_per_s: float | None = None
    samples_per_s: float | None = None
    peak_memory_bytes: int | None = None
    # train.budget (flowstudy.budget.Budget.record): kind, value, planned_steps,
    # flops_per_step, steps_taken, flops_spent, seconds; for a seconds budget also the device
    # it ran on (wall time is not comparable across machines) and whether the schedule's
    # length was estimated.
    budget: dict[str, Any] | None = None
    # A sample monitor (train.monitor=val_*; flowstudy.monitor): its metric, best value and
    # epoch, what it measured on, and its cost (this training segment's measurements).
    monitor: dict[str, Any] | None = None
    params: int | None = None
    dim: int | None = None  # data dimension
    metrics: dict[str, float] = field(default_factory=dict)  # sample quality, each with a floor
    nfe: int | None = None  # velocity evaluations used to sample
    checkpoint: str | None = None
    samples_png: str | None = None
    config: dict[str, Any] = field(default_factory=dict)  # as requested
    # Its identity: the segments that trained it (config, data hashes, checkpoint started from).
    lineage: list[dict[str, Any]] = field(default_factory=list)
    # What the data decided where the config said null (flowstudy.resolve.Resolved): split sizes,
    # batch, passes and steps per epoch, planned steps, architecture sizes, sample count.
    resolved: dict[str, Any] = field(default_factory=dict)
    # The process that last wrote it and its host: a reader tells a killed run's ``running``
    # (its process gone) from one under way.
    pid: int | None = None
    host: str | None = None
    # True only on the result handed back for a completed run that was not retrained.
    skipped: bool = False

    def stale(self) -> bool:
        """``running``, though its process on this host is gone (killed, or the machine
        restarted): no run is under way. A process on another host cannot be checked."""
        return (self.status == "running" and self.pid is not None
                and self.host == socket.gethostname() and not alive(self.pid))

    @property
    def shown_status(self) -> str:
        """The status as a reader should see it: ``running (pid N, not alive)`` when stale."""
        return stale_running(self.pid) if self.stale() else self.status

    def full_lineage(self) -> list[dict[str, Any]]:
        from flowstudy.lineage import lineage_of  # lineage reads configs; results stay light

        return lineage_of(self.lineage, self.config)

    def save(self, path: str | os.PathLike[str]) -> None:
        write_json(path, {**asdict(self), "skipped": False})

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> RunResult:
        fix = "move it away, or replace the run with force=true"
        data = read_json(path, "result.json", fix)
        try:
            result = cls(**data)
        except TypeError as e:  # not a dict, or keys this flowstudy does not know
            raise UserError(f"{path}: not a flowstudy result ({e}); {fix}") from e
        wrong = _wrong_shape(result)
        if wrong:
            raise UserError(f"{path}: not a flowstudy result ({wrong}); {fix}")
        return result


def stale_running(pid: int | None) -> str:
    """How a run killed while ``running`` is shown, by the report and the next run's messages."""
    return f"running (pid {pid}, not alive)"


# The fields every reader indexes into, and the JSON type each must hold.
_SHAPES: dict[str, tuple[type, ...]] = {
    "name": (str,), "group": (str,), "groups": (list,), "swept": (dict,), "status": (str,),
    "metrics": (dict,), "config": (dict,), "lineage": (list,), "resolved": (dict,),
    "budget": (dict, type(None)), "checkpoint": (str, type(None)), "pid": (int, type(None)),
    "host": (str, type(None)), "monitor": (dict, type(None))}
_JSON_TYPE = {str: "a string", int: "an integer", list: "a list", dict: "an object",
              type(None): "null"}


def _json_name(value: Any) -> str:
    return "null" if value is None else repr(value) if isinstance(value, (str, int, float)) \
        else _JSON_TYPE.get(type(value), type(value).__name__)


def _wrong_shape(result: RunResult) -> str | None:
    """What in a loaded result.json has the wrong type (a reader would crash on it), or None."""
    for key, types in _SHAPES.items():
        value = getattr(result, key)
        if not isinstance(value, types):
            allowed = " or ".join(_JSON_TYPE[t] for t in types)
            return f"{key} is {_json_name(value)[:40]}, expected {allowed}"
    if not all(isinstance(s, dict) for s in result.lineage):
        return "lineage holds something other than segments (objects)"
    if not all(isinstance(v, (int, float, type(None))) for v in result.metrics.values()):
        return "metrics holds a value that is not a number"
    return None


_SKIPPED: set[str] = set()


def skip_warning(what: str) -> None:
    """``flowstudy.report: warning: skipping <what>`` on stderr, once per process: the report
    reads around a damaged file rather than failing on it."""
    if what not in _SKIPPED:
        _SKIPPED.add(what)
        print(f"flowstudy.report: warning: skipping {what}", file=sys.stderr)


# What an evaluation record must hold for the report's table and figures.
_RECORD_KEYS = {"run": str, "epoch": int, "seed": int, "nfe": int, "sample": dict,
                "metrics": dict}


def checkpoint_dir_in(study: Path, run: RunResult) -> Path:
    """The run's checkpoint directory inside ``study``, which a reader of the study reads alone.

    result.json records the checkpoint as the run saw it: relative to the directory it ran in
    (``study/checkpoints/<name>/best.pt``), or absolute. Read relative to the ``study_dir`` the
    run recorded, it lands in ``study`` wherever the reader runs and whatever the study was
    copied to; a path that leads elsewhere (another study, a ``checkpoint.dir`` outside the
    study) is not followed: the default ``<study>/checkpoints/<name>`` is read instead."""
    default = study / "checkpoints" / run.name
    if not run.checkpoint:
        return default
    recorded = Path(os.path.normpath(Path(run.checkpoint).parent))
    bases = [Path(os.path.normpath(str(run.config.get("study_dir", "study"))))]
    if recorded.is_absolute():
        bases.append(study.absolute())
    for base in bases:
        if recorded.is_relative_to(base) and ".." not in recorded.relative_to(base).parts:
            return study / recorded.relative_to(base)
    return default


def evaluation_records(checkpoint_dir: Path) -> list[dict[str, Any]]:
    """The records ``python -m flowstudy.sample`` wrote beside a run's best.pt (in
    ``checkpoint_dir``); a damaged one is skipped with a warning naming it."""
    records = []
    for path in sorted((checkpoint_dir / "eval").glob("*.json")):
        try:
            record = read_json(path, "evaluation record", "move it away, or rerun "
                               "flowstudy.sample")
        except UserError as e:
            skip_warning(str(e))
            continue
        wrong = [key for key, kind in _RECORD_KEYS.items()
                 if not isinstance(record, dict) or not isinstance(record.get(key), kind)]
        if not wrong and not isinstance(record["sample"].get("solver"), str):
            wrong = ["sample.solver"]
        if wrong:
            skip_warning(f"{path}: not a flowstudy.sample record (no valid {', '.join(wrong)}); "
                         f"move it away, or rerun flowstudy.sample")
            continue
        records.append(record)
    return records


COST_KEYS = ("flops_per_step", "flops", "flops_6nd", "steps_per_s", "samples_per_s",
             "peak_memory_bytes")


def status_for(error: BaseException | None) -> str:
    """The final status of a run that ended with ``error`` (None: it completed)."""
    if error is None:
        return "completed"
    if isinstance(error, (Interrupted, KeyboardInterrupt)):
        return "interrupted"
    if isinstance(error, Busy):
        return "running elsewhere"
    return "diverged" if isinstance(error, Diverged) else "failed"


def log_summary(result: RunResult, result_path: Path) -> None:
    """The end-of-run lines: how training ended, sample quality, cost, and where the files are."""
    m = result.metrics
    log.info("done: %s after %d epochs (%s); best val loss %.4f at epoch %d", result.name,
             result.epochs, result.stop_reason, result.best_val_loss, result.best_epoch)
    if result.monitor is not None:
        mon = result.monitor
        log.info("best.pt chosen by %s on the val split: %.4g at epoch %d (%d measurements, "
                 "%.2f s each)", mon["name"], mon["best"], mon["best_epoch"],
                 mon["measurements"], mon["seconds_per_measurement"] or 0.0)
    projected = f"{SET_METRICS[0]}{PROJECTED}" in m  # sample.project_norm
    log.info("samples, NFE %d (model / floor: real vs real / gauss: a Gaussian fit to train%s):",
             result.nfe, " / projected: the model's, rescaled to the data's norm" * projected)
    for key in SET_METRICS:
        if key in m:
            log.info("  %-10s %10.4g / %10.4g / %10.4g%s", key, m[key], m[f"{key}_floor"],
                     m[f"{key}_baseline"],
                     f" / {m[f'{key}{PROJECTED}']:10.4g}" if projected else "")
    if "test_nll" in m:
        log.info("  test NLL  %10.4g nats/dim (gauss %.4g)", m["test_nll"],
                 m["test_nll_baseline"])
    # Collapse and over-spread, read from the metrics above (flowstudy.metrics.collapse): one
    # line per rule that fires, and the metrics that then sit at the floor without a win.
    for warning in collapse_warnings(m):
        log.warning("samples: %s", warning)
    log.info("cost: %.3g FLOPs (6ND estimate %.3g), %.1f steps/s, %.0f samples/s, peak memory "
             "%.0f MiB, %.1f s", result.flops or float("nan"), result.flops_6nd,
             result.steps_per_s or 0, result.samples_per_s or 0,
             (result.peak_memory_bytes or 0) / 2**20, result.wall_time_s)
    if result.budget is not None:
        b = result.budget
        log.info("budget %s=%g: %d of %s planned steps, %.4g FLOPs spent (%.4g per step)%s",
                 b["kind"], b["value"], b["steps_taken"], b["planned_steps"], b["flops_spent"],
                 b["flops_per_step"], f", on {b['device']} (wall time: compare on this "
                 f"device only)" if b["kind"] == "seconds" else "")
    log.info("checkpoint %s, samples %s, result %s", result.checkpoint, result.samples_png,
             result_path)
