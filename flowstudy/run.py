"""One run: decide what an earlier run of the name left, then build -> fit -> evaluate, with its
status recorded in ``result.json`` from start to end."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from functools import partial
from pathlib import Path
from typing import Any

import torch

from flowstudy.auto import warn_if_warmup_too_long
from flowstudy.build import Built, build
from flowstudy.checkpoint import (
    RESUMABLE,
    CheckpointError,
    check_compatible,
    load_checkpoint,
    save_checkpoint,
)
from flowstudy.config import Config, to_dict
from flowstudy.cost import record_cost
from flowstudy.data.fingerprint import data_fingerprint
from flowstudy.devices import resolve_device, set_threads, use_deterministic, use_tf32
from flowstudy.distributed import Dist, from_environment
from flowstudy.evaluate import evaluate_best
from flowstudy.fileio import ensure_writable_dir, run_lock
from flowstudy.interrupt import Interrupted, StopRequest
from flowstudy.lineage import (
    Start,
    lineage_differences,
    lineage_of,
    parent_metrics,
    resumed_start,
    segment,
)
from flowstudy.models import count_parameters
from flowstudy.prior_run import prior_run
from flowstudy.profiling import profile_steps
from flowstudy.results import RunResult, log_summary, status_for
from flowstudy.rng import seed_everything, set_rng_state
from flowstudy.tracking import NullTracker, Tracker, check_online
from flowstudy.trainer import fit

log = logging.getLogger("flowstudy")


def run(cfg: Config, run_dir: Path, swept: dict[str, Any] | None = None, job_num: int = 0,
        parallel: int = 1) -> RunResult:
    """Train, evaluate and record one run; ``run_dir`` holds its W&B files.

    A completed run with the same config is not retrained: its result is returned (and counted in
    ``cfg.group`` too). ``swept``, ``job_num`` and ``parallel`` describe the sweep it is part of.
    Under torchrun every rank calls this; only rank 0 writes files and logs.
    """
    started = time.perf_counter()
    check_online(cfg.wandb)
    ranks = from_environment(cuda=cfg.train.device != "cpu" and torch.cuda.is_available())
    device = (torch.device(f"cuda:{ranks.local_rank}") if ranks.active and
              torch.cuda.is_available() and cfg.train.device != "cpu"
              else resolve_device(cfg.train.device, job_num, parallel))
    set_threads(cfg.train.threads, parallel * (ranks.world if device.type == "cpu" else 1))
    if cfg.train.deterministic:
        use_deterministic(device)
    explicit = cfg.resume not in (None, "auto")
    resumed = load_checkpoint(cfg.resume, device, RESUMABLE) if explicit else None
    if resumed is not None:
        check_compatible(cfg.resume, resumed["config"], to_dict(cfg))
    data = data_fingerprint(cfg.dataset, cfg.study_dir)
    start = (resumed_start(cfg, data, resumed, cfg.resume) if resumed is not None
             else Start(cfg.name, [segment(cfg, data, None)]))
    cfg = dataclasses.replace(cfg, name=start.name)
    checkpoint_dir = Path(cfg.checkpoint.dir) / cfg.name
    out_dir = Path(cfg.study_dir) / "runs" / cfg.name
    result_path = out_dir / "result.json"
    if ranks.main:
        # checkpoint.dir defaults to a directory of study_dir: name the key the user set
        inside = Path(cfg.checkpoint.dir).is_relative_to(cfg.study_dir)
        ensure_writable_dir(checkpoint_dir, "study_dir" if inside else "checkpoint.dir")
        ensure_writable_dir(out_dir, "study_dir")
    with contextlib.ExitStack() as locks:
        if ranks.main:  # both directories: runs of one name may differ in checkpoint.dir
            for where in (checkpoint_dir, out_dir):
                locks.enter_context(run_lock(where / ".lock", f"run '{cfg.name}'"))
        best, last = checkpoint_dir / "best.pt", checkpoint_dir / "last.pt"
        auto = cfg.resume == "auto" and not cfg.force and last.exists()
        continuing = auto or (resumed is not None and not start.branch)
        prior = prior_run(cfg, start.lineage, result_path, checkpoint_dir, continuing)
        ranks.barrier()  # every rank decided alike; now rank 0 may write
        if prior is not None and prior.status == "completed":
            log.info("skipping %s: completed with this config (%s); force=true retrains",
                     cfg.name, result_path)
            if cfg.group not in prior.groups and ranks.main:
                prior.groups.append(cfg.group)
                prior.save(result_path)
            return dataclasses.replace(prior, skipped=True)
        trained = prior if prior is not None and prior.status == "trained" and best.exists() \
            else None
        if trained is not None:
            log.info("%s: training finished earlier; evaluating %s only", cfg.name, best)
            resumed = load_checkpoint(best, device, RESUMABLE)
        elif auto:
            log.info("resume=auto: continuing the unfinished run from %s", last)
            resumed = load_checkpoint(last, device, RESUMABLE)
            check_compatible(last, resumed["config"], to_dict(cfg))
            diffs = lineage_differences(lineage_of(resumed), start.lineage)
            if diffs:
                raise CheckpointError(f"resume=auto: {last} belongs to another run "
                                      f"({'; '.join(diffs[:3])}); resume it with resume={last} "
                                      f"and its own settings, or start over with force=true")
            start = Start(cfg.name, lineage_of(resumed))
        elif cfg.resume == "auto":
            log.info("resume=auto: %s left no unfinished run (%s); training from scratch",
                     cfg.name, last)
        if resumed is None and ranks.main:
            last.unlink(missing_ok=True)  # a fresh start (force=true) leaves no stale last.pt
        with StopRequest() as stop:
            return _train_and_evaluate(cfg, run_dir, device, ranks, resumed, start,
                                       checkpoint_dir, result_path, started, swept or {}, stop,
                                       trained)


def _train_and_evaluate(cfg: Config, run_dir: Path, device: torch.device, ranks: Dist,
                        resumed: dict | None, start: Start, checkpoint_dir: Path,
                        result_path: Path, started: float, swept: dict[str, Any],
                        stop: StopRequest, trained: RunResult | None) -> RunResult:
    """Build, fit (unless ``trained``: a run whose training finished and whose evaluation did
    not) and evaluate. result.json says ``running``, then ``trained`` once training has finished,
    then ``completed``; an error or a signal after training leaves it ``trained``, so the rerun
    only evaluates."""
    result = trained or RunResult(name=cfg.name, group=cfg.group, groups=[cfg.group],
                                  swept=swept, checkpoint=str(checkpoint_dir / "best.pt"),
                                  config=to_dict(cfg), lineage=start.lineage)
    result.error = None
    record = partial(_record_end, result, result_path, started=started, write=ranks.main)
    record(None, status="trained" if trained else "running")
    try:
        stop.phase = "building the data and model"
        result.tf32 = use_tf32(device, cfg.train.tf32)  # before the model first runs
        seed_everything(cfg.seed)
        built = build(cfg, device, ranks)
        data, state = built.data, built.state
        result.resolved = built.resolved.as_dict()
        if resumed is not None:
            state.load_state_dict(resumed)
            set_rng_state(resumed["rng"])
            if trained is None:
                log.info("resumed %s at epoch %d (step %d, best %.4f)", cfg.resume, state.epoch,
                         state.step, state.stopper.best)
        result.params, result.dim = count_parameters(state.model), data.dim
        result.threads = torch.get_num_threads()
        result.compile_s = None if built.compile_s is None else round(built.compile_s, 3)
        if ranks.main:
            log.info("run %s (group %s): %s parameters, %d-d data, %d train points, on %s%s",
                     cfg.name, cfg.group, f"{result.params:,}", data.dim, data.train.shape[0],
                     device, f" x {ranks.world} ranks" if ranks.active else "")
            log.info("%s", built.resolved.line())
            warn_if_warmup_too_long(built.resolved)
        # W&B starts in the tracker's own thread, overlapping the first training steps (whose
        # torch kernels release the GIL; building, mostly imports, would not).
        stop.phase = "starting W&B"
        parent_id = resumed.get("wandb_run_id") if resumed else None
        branch = start.branch and trained is None
        tracker = (Tracker(cfg, run_dir, result_path.parent / "metrics.jsonl", start.lineage,
                           swept=swept,
                           resume_step=(result.steps if trained else state.step)
                           if resumed else None,
                           resume_run_id=None if branch else parent_id,
                           fork_run_id=parent_id if branch else None,
                           history=parent_metrics(cfg.study_dir, start.lineage) if branch
                           else None)
                   if ranks.main else NullTracker())
        with tracker:
            if trained is None:
                _fit(cfg, result, built, start, tracker, checkpoint_dir, stop)
            stop.phase = "evaluating best.pt (training had finished; rerun the same command to " \
                         "evaluate it without retraining)"
            if trained is None and ranks.main and (checkpoint_dir / "best.pt").exists():
                record(None, status="trained")
            if ranks.main:
                evaluate_best(built.cfg, result, data, state, tracker, checkpoint_dir, device,
                              result.steps)
            stop.phase = "finishing W&B (training and evaluation had finished; rerun the same " \
                         "command to record it)"
    except BaseException as e:
        if isinstance(e, Interrupted):
            e.trained = result.status == "trained"
        record(e, status="trained" if result.status == "trained" else None)
        raise
    record(None)
    ranks.barrier()
    if ranks.main:
        log_summary(result, result_path)
    return result


def _fit(cfg: Config, result: RunResult, built: Built, start: Start,
         tracker: Tracker | NullTracker, checkpoint_dir: Path, stop: StopRequest) -> None:
    state = built.state
    extra = {"config": to_dict(cfg), "lineage": start.lineage, "resolved": result.resolved,
             "normalizer": built.data.normalizer.state_dict()}
    tracker.summary({"params": result.params,
                     **{f"resolved/{k}": v for k, v in result.resolved.items() if k != "arch"}})
    stop.phase = "training"
    profiled = cfg.train.profile_steps if built.engine.dist.main else 0
    try:
        with profile_steps(profiled, built.batches, checkpoint_dir) as batches:
            fitted = fit(built.cfg.train, state, batches, built.val, tracker, checkpoint_dir,
                         save=lambda path, s: save_checkpoint(
                             path, {**s, **extra, "wandb_run_id": tracker.run_id}),
                         save_last=cfg.checkpoint.save_last, stop=stop, engine=built.engine)
    finally:  # an interrupted run's record says how far it got and what best.pt holds
        result.epochs, result.steps = state.epoch, state.step
        if state.stopper.best_epoch:
            result.best_val_loss = state.stopper.best
            result.best_epoch = state.stopper.best_epoch
    result.stop_reason = fitted.stop_reason
    result.step_mode = fitted.step_mode
    record_cost(result, fitted, built.cfg.train.batch_size, built)


def _record_end(result: RunResult, path: Path, error: BaseException | None, *, started: float,
                write: bool, status: str | None = None) -> None:
    result.status = status or status_for(error)
    if error is not None:
        result.error = f"{type(error).__name__}: {error}"
    result.wall_time_s = round(time.perf_counter() - started, 3)
    if write:
        result.save(path)
