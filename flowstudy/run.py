"""One run, as a recipe: plan (what an earlier run of the name left decides: flowstudy.plan) ->
setup (build, restore) -> train -> evaluate -> record. ``result.json`` records its status from
start to end: ``running``, ``trained`` once training has finished, then ``completed``; an error
or a signal after training leaves it ``trained``, so the rerun only evaluates."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from flowstudy.alerts import NO_COMMANDS, Commands, LoopAlerts
from flowstudy.build import Built, build
from flowstudy.checkpoint import Checkpoint, CheckpointError, RunHeader, check_compatible
from flowstudy.config import Config, full_name, to_dict
from flowstudy.cost import record_cost
from flowstudy.data.fingerprint import data_fingerprint
from flowstudy.devices import resolve_device, set_threads, use_deterministic, use_tf32
from flowstudy.distributed import Dist, from_environment
from flowstudy.evaluate import evaluate_best
from flowstudy.fileio import (
    atomic_path,
    ensure_writable_dir,
    redirect_home_caches,
    removed_if_failed,
    run_lock,
)
from flowstudy.interrupt import Interrupted, StopRequest
from flowstudy.lineage import Start, lineage_of, parent_metrics, resumed_start, segment
from flowstudy.metrics import MONITORS
from flowstudy.models import count_parameters
from flowstudy.plan import (
    Branch,
    Continue,
    Disk,
    EvaluateOnly,
    Fresh,
    Plan,
    Request,
    Skip,
    plan_run,
)
from flowstudy.profiling import profile_steps
from flowstudy.resolve import warn_if_budget_beyond_epochs, warn_if_warmup_too_long
from flowstudy.results import RunResult, log_summary, status_for
from flowstudy.rng import seed_everything, set_rng_state
from flowstudy.tracking import NullTracker, Tracker, check_online, effective_mode
from flowstudy.trainer import Checkpoints, fit

log = logging.getLogger("flowstudy")


@dataclass(frozen=True)
class RunPaths:
    checkpoints: Path  # <checkpoint.dir>/<name>: best.pt, last.pt, samples
    results: Path  # <study_dir>/runs/<name>: result.json, metrics.jsonl

    @classmethod
    def of(cls, cfg: Config) -> RunPaths:
        return cls(Path(cfg.checkpoint.dir) / cfg.name, Path(cfg.study_dir) / "runs" / cfg.name)

    @property
    def result(self) -> Path:
        return self.results / "result.json"


def run(cfg: Config, run_dir: Path, swept: dict[str, Any] | None = None, job_num: int = 0,
        parallel: int = 1, commands: Commands = NO_COMMANDS) -> RunResult:
    """Train, evaluate and record one run; ``run_dir`` holds its W&B files.

    A completed run with the same lineage is not retrained: its result is returned (and counted
    in ``cfg.group`` too). ``swept``, ``job_num`` and ``parallel`` describe the sweep it is part
    of; ``commands`` what started it, for the commands its alerts give. Under torchrun every rank
    calls this; only rank 0 writes files and logs.
    """
    started = time.perf_counter()
    cfg = dataclasses.replace(cfg, wandb=effective_mode(cfg.wandb))
    check_online(cfg.wandb)
    ranks, device = _devices(cfg, job_num, parallel)
    explicit = cfg.resume not in (None, "auto")
    resumed = Checkpoint.load(cfg.resume, device) if explicit else None
    if resumed is not None:
        check_compatible(cfg.resume, resumed.config, to_dict(cfg))
    # The hash cache is written with the split, once the data is accepted (flowstudy.data).
    data = data_fingerprint(cfg.dataset, cfg.study_dir, save=False)
    start = (resumed_start(cfg, data, resumed, cfg.resume) if resumed is not None
             else Start(cfg.name, [segment(cfg, data, None)]))
    cfg = dataclasses.replace(cfg, name=start.name)
    paths = RunPaths.of(cfg)
    # A run refused (or failed) before it wrote anything leaves no empty directories behind.
    with removed_if_failed(*([paths.checkpoints, paths.results] if ranks.main else [])), \
            contextlib.ExitStack() as locks:
        if ranks.main:
            # checkpoint.dir defaults to a directory of study_dir: name the key the user set
            inside = Path(cfg.checkpoint.dir).is_relative_to(cfg.study_dir)
            ensure_writable_dir(paths.checkpoints, "study_dir" if inside else "checkpoint.dir")
            ensure_writable_dir(paths.results, "study_dir")
            redirect_home_caches(run_dir / ".cache")
            # both directories: runs of one name may differ in checkpoint.dir
            for where in (paths.checkpoints, paths.results):
                locks.enter_context(run_lock(where / ".lock", f"run '{cfg.name}'"))
        disk, last = _on_disk(cfg, paths, device)
        plan = plan_run(Request(cfg.name, start.lineage, cfg.resume, cfg.force, start.branch,
                                getattr(cfg.dataset, "path", None)), disk)
        ranks.barrier()  # every rank decided alike; now rank 0 may write
        if isinstance(plan, Skip):
            log.info("skipping %s: completed with this config (%s); force=true retrains",
                     cfg.name, paths.result)
            if cfg.group not in plan.result.groups and ranks.main:
                plan.result.groups.append(cfg.group)
                plan.result.save(paths.result)
            return dataclasses.replace(plan.result, skipped=True)
        checkpoint = _checkpoint_for(plan, resumed, last, device)
        with StopRequest() as stop:
            return _execute(cfg, plan, checkpoint, run_dir, device, ranks, paths, started,
                            swept or {}, stop, commands)


def _devices(cfg: Config, job_num: int, parallel: int) -> tuple[Dist, torch.device]:
    ranks = from_environment(cuda=cfg.train.device != "cpu" and torch.cuda.is_available())
    device = (torch.device(f"cuda:{ranks.local_rank}") if ranks.active and
              torch.cuda.is_available() and cfg.train.device != "cpu"
              else resolve_device(cfg.train.device, job_num, parallel))
    set_threads(cfg.train.threads, parallel * (ranks.world if device.type == "cpu" else 1))
    if cfg.train.deterministic:
        use_deterministic(device)
    return ranks, device


def _on_disk(cfg: Config, paths: RunPaths,
             device: torch.device) -> tuple[Disk, Checkpoint | None]:
    """What the plan needs from disk; ``last.pt`` is read only where resume=auto would
    continue it (and then used, not read again)."""
    result = RunResult.load(paths.result) if paths.result.exists() else None
    last_pt = paths.checkpoints / "last.pt"
    last = None
    if cfg.resume == "auto" and not cfg.force and last_pt.exists():
        last = Checkpoint.load(last_pt, device)
        check_compatible(last_pt, last.config, to_dict(cfg))
    last_lineage = lineage_of(last.lineage, last.config) if last is not None else None
    disk = Disk(paths.results, paths.checkpoints, result, (paths.checkpoints / "best.pt").exists(),
                last_pt.exists(), last_lineage, stale=result is not None and result.stale())
    return disk, last


def _checkpoint_for(plan: Plan, resumed: Checkpoint | None, last: Checkpoint | None,
                    device: torch.device) -> Checkpoint | None:
    """The checkpoint a plan starts from, read once."""
    if isinstance(plan, EvaluateOnly):
        log.info("%s: training finished earlier; evaluating %s only", plan.result.name,
                 plan.checkpoint)
        return Checkpoint.load(plan.checkpoint, device)
    if isinstance(plan, Continue) and resumed is None:
        log.info("resume=auto: continuing the unfinished run from %s", plan.checkpoint)
        return last
    if isinstance(plan, Fresh) and plan.note:
        log.info("%s", plan.note)
    return resumed


def _execute(cfg: Config, plan: Plan, checkpoint: Checkpoint | None, run_dir: Path,
             device: torch.device, ranks: Dist, paths: RunPaths, started: float,
             swept: dict[str, Any], stop: StopRequest, commands: Commands) -> RunResult:
    start: Start = plan.start if isinstance(plan, (Continue, Branch, Fresh)) else Start(
        cfg.name, plan.result.lineage)
    evaluate_only = isinstance(plan, EvaluateOnly)
    result = plan.result if evaluate_only else RunResult(
        name=cfg.name, group=cfg.group, full_name=full_name(cfg.name), groups=[cfg.group],
        swept=swept, checkpoint=str(paths.checkpoints / "best.pt"), config=to_dict(cfg),
        lineage=start.lineage)
    result.error = None
    result.pid, result.host = os.getpid(), socket.gethostname()
    record = _Record(result, paths.result, started, ranks.main,
                     paths.result.read_bytes() if ranks.main and paths.result.exists() else None)
    record.write("trained" if evaluate_only else "running")
    try:
        stop.phase = "building the data and model"
        built = _setup(cfg, result, device, ranks, checkpoint if not evaluate_only else None)
        record.before_training = False
        if isinstance(plan, Fresh) and ranks.main:
            last_pt = paths.checkpoints / "last.pt"
            last_pt.unlink(missing_ok=True)  # a fresh start (force=true) leaves no stale last.pt
        # W&B starts in the tracker's own thread, overlapping the first training steps (whose
        # torch kernels release the GIL; building, mostly imports, would not).
        stop.phase = "starting W&B"
        with _tracker(cfg, run_dir, paths, start, checkpoint, result, built, ranks,
                      evaluate_only, commands) as tracker:
            if not evaluate_only:
                _train(cfg, result, built, start, tracker, paths.checkpoints, stop, commands)
                if ranks.main and (paths.checkpoints / "best.pt").exists():
                    record.write("trained")
            stop.phase = "evaluating best.pt (training had finished; rerun the same command to " \
                         "evaluate it without retraining)"
            if ranks.main:
                best = checkpoint if evaluate_only else _best(paths.checkpoints, cfg, device)
                evaluate_best(built.cfg, result, built.data, built.state.ema.module, best,
                              tracker, paths.checkpoints)
            stop.phase = "finishing W&B (training and evaluation had finished; rerun the same " \
                         "command to record it)"
    except BaseException as e:
        if isinstance(e, Interrupted):
            e.trained = result.status == "trained"
        if record.before_training and (record.before is not None
                                       or not isinstance(e, Interrupted)):
            record.restore()  # nothing was trained: the disk stays as the run found it
        else:
            record.end(e)
        raise
    record.end(None)
    ranks.barrier()
    if ranks.main:
        log_summary(result, paths.result)
    return result


def _setup(cfg: Config, result: RunResult, device: torch.device, ranks: Dist,
           checkpoint: Checkpoint | None) -> Built:
    """Build the run and restore ``checkpoint``'s training state into it."""
    result.tf32 = use_tf32(device, cfg.train.tf32)  # before the model first runs
    seed_everything(cfg.seed)
    built = build(cfg, device, ranks)
    state = built.state
    result.resolved = built.resolved.as_dict()
    if checkpoint is not None:
        state.load_state_dict(checkpoint.train)
        set_rng_state(checkpoint.rng)
        log.info("resumed %s at epoch %d (step %d, best %.4g)", cfg.resume, state.epoch,
                 state.step, state.stopper.best)
        saved = checkpoint.config.get("train", {}).get("monitor", "ema")
        if MONITORS.get(saved, MONITORS["ema"]).measures != MONITORS[cfg.train.monitor].measures:
            state.stopper.reset()
            log.info("train.monitor=%s: the checkpoint's best is of train.monitor=%s, another "
                     "measure; this run's first measurement sets its best", cfg.train.monitor,
                     saved)
    result.params, result.dim = count_parameters(state.model), built.data.dim
    result.threads = torch.get_num_threads()
    result.compile_s = None if built.compile_s is None else round(built.compile_s, 3)
    if ranks.main:
        log.info("run %s (group %s): %s parameters, %d-d data, %d train points, on %s%s",
                 cfg.name, cfg.group, f"{result.params:,}", built.data.dim,
                 built.data.train.shape[0], device,
                 f" x {ranks.world} ranks" if ranks.active else "")
        log.info("%s", built.resolved.line())
        warn_if_warmup_too_long(built.resolved)
        warn_if_budget_beyond_epochs(built.resolved, built.cfg.train.epochs)
        if built.monitor is not None:
            log.info("%s", built.monitor.describe(cfg.train.monitor_every))
    return built


def _tracker(cfg: Config, run_dir: Path, paths: RunPaths, start: Start,
             checkpoint: Checkpoint | None, result: RunResult, built: Built, ranks: Dist,
             evaluate_only: bool, commands: Commands) -> Tracker | NullTracker:
    """W&B and metrics.jsonl: a continued run resumes its W&B run at the checkpoint's step, a
    branch forks its parent's."""
    if not ranks.main:
        return NullTracker()
    parent_id = checkpoint.wandb_run_id if checkpoint is not None else None
    branch = start.branch and not evaluate_only
    resume_step = None if checkpoint is None else (
        result.steps if evaluate_only else built.state.step)
    return Tracker(cfg, run_dir, paths.results / "metrics.jsonl", start.lineage, swept=result.swept,
                   resume_step=resume_step, resume_run_id=None if branch else parent_id,
                   fork_run_id=parent_id if branch else None,
                   history=parent_metrics(cfg.study_dir, start.lineage) if branch else None,
                   commands=commands)


def _train(cfg: Config, result: RunResult, built: Built, start: Start,
           tracker: Tracker | NullTracker, checkpoint_dir: Path, stop: StopRequest,
           commands: Commands) -> None:
    state = built.state
    header = RunHeader(config=to_dict(cfg), lineage=start.lineage, resolved=result.resolved,
                       normalizer=built.data.normalizer.state_dict(), full_name=result.full_name)
    tracker.summary({"params": result.params,
                     **{f"resolved/{k}": v for k, v in result.resolved.items() if k != "arch"}})
    if start.branch and built.engine.dist.main:
        _branch_best(cfg, state, header, checkpoint_dir, tracker.run_id)
    stop.phase = "training"
    profiled = cfg.train.profile_steps if built.engine.dist.main else 0
    stall = cfg.wandb.stall_minutes
    alerts = LoopAlerts(tracker.alert, cfg.name, commands, stall and stall * 60) \
        if built.engine.dist.main else None
    try:
        with profile_steps(profiled, built.batches, checkpoint_dir) as batches:
            fitted = fit(built.cfg.train, state, batches, built.val, tracker,
                         Checkpoints(checkpoint_dir, header, cfg.checkpoint.save_last,
                                     lambda: tracker.run_id),
                         stop=stop, engine=built.engine, budget=built.budget, alerts=alerts,
                         monitor=built.monitor)
    finally:  # an interrupted run's record says how far it got and what best.pt holds
        result.epochs, result.steps = state.epoch, state.step
        if state.stopper.best_epoch:
            result.best_val_loss = state.stopper.best_val_loss
            result.best_epoch = state.stopper.best_epoch
    if built.monitor is not None:
        result.monitor = built.monitor.record(state.stopper, fitted.monitor_s)
    result.stop_reason = fitted.stop_reason
    result.step_mode = fitted.step_mode
    result.budget = fitted.budget
    record_cost(result, fitted, built.cfg.train.batch_size, state.model,
                built.batches.flow.path, built.data.dim, built.resolved.flops_per_step)


def _branch_best(cfg: Config, state: Any, header: RunHeader, checkpoint_dir: Path,
                 run_id: str | None) -> None:
    """A branch keeps its parent's best as the best to beat: early stopping carries the parent's
    best loss over, so the branch's ``best.pt`` starts as the weights that reached it. They are
    the checkpoint the branch started from when that was its best epoch, else the best.pt beside
    it when that holds the same run's best epoch; written with the branch's own header."""
    best_epoch = state.stopper.best_epoch
    if not best_epoch:
        return  # the parent had no best yet: the branch's first validation makes one
    target = checkpoint_dir / "best.pt"
    if best_epoch == state.epoch:
        Checkpoint.capture(state, header, run_id).save(target)
        log.info("branch %s: %s is its parent's best (%s %.4f at epoch %d); written as %s, the "
                 "best to beat", cfg.name, cfg.resume, cfg.train.monitor, state.stopper.best,
                 best_epoch, target)
        return
    sibling = Path(str(cfg.resume)).parent / "best.pt"
    parent = Checkpoint.load(sibling) if sibling.exists() else None
    # The branch's lineage is its parent's plus one segment: no second read of cfg.resume.
    if parent is not None and parent.epoch == best_epoch and \
            lineage_of(parent.lineage, parent.config) == header.lineage[:-1]:
        dataclasses.replace(parent, config=header.config, lineage=header.lineage,
                            resolved=header.resolved, normalizer=header.normalizer,
                            wandb_run_id=run_id).save(target)
        log.info("branch %s: its parent's best is %s (%s %.4f at epoch %d); copied to %s, the "
                 "best to beat", cfg.name, sibling, cfg.train.monitor, state.stopper.best,
                 best_epoch, target)
        return
    log.warning("branch %s: its parent's best (epoch %d, %s %.4f) is not beside %s; the branch "
                "has a best.pt only if it beats that loss", cfg.name, best_epoch,
                cfg.train.monitor, state.stopper.best, cfg.resume)


def _best(checkpoint_dir: Path, cfg: Config, device: torch.device) -> Checkpoint:
    best = checkpoint_dir / "best.pt"
    if not best.exists():
        raise CheckpointError(f"no epoch produced a finite train.monitor={cfg.train.monitor} "
                              f"value, so there is no best checkpoint to evaluate")
    return Checkpoint.load(best, device)


@dataclass
class _Record:
    """result.json's status line: rewritten (atomically) at each change, on rank 0."""

    result: RunResult
    path: Path
    started: float
    write_files: bool
    before: bytes | None = None  # result.json as the run found it
    before_training: bool = True  # until the data and model are built

    def restore(self) -> None:
        """Put back the result.json the run found (none: remove the one it wrote). A run that
        stops before training (rejected data, a bug in building) trained nothing, so its record
        neither replaces a completed one (force=true) nor claims the data or the name."""
        if not self.write_files:
            return
        if self.before is None:
            self.path.unlink(missing_ok=True)
        else:
            with atomic_path(self.path) as tmp:
                tmp.write_bytes(self.before)

    def write(self, status: str) -> None:
        self.result.status = status
        self.result.wall_time_s = round(time.perf_counter() - self.started, 3)
        if self.write_files:
            self.result.save(self.path)

    def end(self, error: BaseException | None) -> None:
        """Completed, or what the error makes it; a run that had finished training stays
        ``trained`` whatever stopped its evaluation."""
        if error is not None:
            self.result.error = f"{type(error).__name__}: {error}"
        trained = error is not None and self.result.status == "trained"
        self.write("trained" if trained else status_for(error))
