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

from flowstudy.build import build
from flowstudy.checkpoint import check_compatible, load_checkpoint, save_checkpoint
from flowstudy.config import Config, to_dict
from flowstudy.cost import record_cost
from flowstudy.devices import resolve_device, set_threads, use_deterministic, use_tf32
from flowstudy.distributed import Dist, from_environment
from flowstudy.evaluate import evaluate_best
from flowstudy.fileio import ensure_writable_dir, run_lock
from flowstudy.interrupt import StopRequest
from flowstudy.models import count_parameters
from flowstudy.prior_run import prior_run
from flowstudy.results import RunResult, log_summary, status_for
from flowstudy.rng import seed_everything, set_rng_state
from flowstudy.tracking import NullTracker, Tracker
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
    ranks = from_environment(cuda=cfg.train.device != "cpu" and torch.cuda.is_available())
    device = (torch.device(f"cuda:{ranks.local_rank}") if ranks.active and
              torch.cuda.is_available() and cfg.train.device != "cpu"
              else resolve_device(cfg.train.device, job_num, parallel))
    set_threads(cfg.train.threads, parallel * (ranks.world if device.type == "cpu" else 1))
    if cfg.train.deterministic:
        use_deterministic(device)
    checkpoint_dir = Path(cfg.checkpoint.dir) / cfg.name
    out_dir = Path(cfg.study_dir) / "runs" / cfg.name
    result_path = out_dir / "result.json"
    explicit = cfg.resume not in (None, "auto")
    resumed = load_checkpoint(cfg.resume, device) if explicit else None
    if resumed is not None:
        check_compatible(cfg.resume, resumed["config"], to_dict(cfg))
    if ranks.main:
        ensure_writable_dir(checkpoint_dir, "checkpoint.dir")
        ensure_writable_dir(out_dir, "study_dir")
    lock = (run_lock(checkpoint_dir / ".lock", f"run '{cfg.name}'") if ranks.main
            else contextlib.nullcontext())
    with lock:
        prior = prior_run(cfg, result_path, checkpoint_dir)  # every rank decides alike
        ranks.barrier()  # before rank 0 writes anything
        if prior is not None and prior.status == "completed":
            log.info("skipping %s: completed with this config (%s); force=true retrains",
                     cfg.name, result_path)
            if cfg.group not in prior.groups and ranks.main:
                prior.groups.append(cfg.group)
                prior.save(result_path)
            return dataclasses.replace(prior, skipped=True)
        last = checkpoint_dir / "last.pt"
        if cfg.resume == "auto" and prior is not None and last.exists():
            log.info("resume=auto: continuing the unfinished run from %s", last)
            resumed = load_checkpoint(last, device)
            check_compatible(last, resumed["config"], to_dict(cfg))
        return _train_and_evaluate(cfg, run_dir, device, ranks, resumed, checkpoint_dir,
                                   result_path, started, swept or {})


def _train_and_evaluate(cfg: Config, run_dir: Path, device: torch.device, ranks: Dist,
                        resumed: dict | None, checkpoint_dir: Path, result_path: Path,
                        started: float, swept: dict[str, Any]) -> RunResult:
    result = RunResult(name=cfg.name, group=cfg.group, groups=[cfg.group], swept=swept,
                       checkpoint=str(checkpoint_dir / "best.pt"), config=to_dict(cfg))
    record = partial(_record_end, result, result_path, started=started, write=ranks.main)
    record(None, status="running")
    try:
        result.tf32 = use_tf32(device, cfg.train.tf32)  # before the model first runs
        seed_everything(cfg.seed)
        built = build(cfg, device, ranks)
    except BaseException as e:
        record(e)
        raise
    data, batches, val, state = built.data, built.batches, built.val, built.state
    if resumed is not None:
        state.load_state_dict(resumed)
        set_rng_state(resumed["rng"])
        log.info("resumed %s at epoch %d (step %d, best %.4f)", cfg.resume, state.epoch,
                 state.step, state.stopper.best)

    result.params, result.dim = count_parameters(state.model), data.dim
    result.threads = torch.get_num_threads()
    result.compile_s = None if built.compile_s is None else round(built.compile_s, 3)
    if ranks.main:
        log.info("run %s (group %s): %s parameters, %d-d data, %d train points, on %s%s",
                 cfg.name, cfg.group, f"{result.params:,}", data.dim, data.train.shape[0],
                 device, f" x {ranks.world} ranks" if ranks.active else "")
    # W&B starts in the tracker's own thread, overlapping the first training steps (whose
    # torch kernels release the GIL; building, mostly imports, would not).
    tracker = (Tracker(cfg, run_dir, result_path.parent / "metrics.jsonl", swept=swept,
                       resume_run_id=resumed["wandb_run_id"] if resumed else None,
                       resume_step=state.step if resumed else None)
               if ranks.main else NullTracker())
    try:
        with tracker:
            extra = {"config": to_dict(cfg), "normalizer": data.normalizer.state_dict()}
            tracker.summary({"params": result.params})
            with StopRequest() as stop:
                fitted = fit(cfg.train, state, batches, val, tracker, checkpoint_dir,
                             save=lambda path, s: save_checkpoint(
                                 path, {**s, **extra, "wandb_run_id": tracker.run_id}),
                             save_last=cfg.checkpoint.save_last, stop=stop, engine=built.engine)
            result.stop_reason = fitted.stop_reason
            result.step_mode = fitted.step_mode
            result.best_val_loss = state.stopper.best
            result.best_epoch = state.stopper.best_epoch
            record_cost(result, fitted, cfg.train.batch_size, built)
            if ranks.main:
                evaluate_best(cfg, result, data, state, tracker, checkpoint_dir, device,
                              fitted.steps)
    except BaseException as e:
        result.epochs, result.steps = state.epoch, state.step
        record(e)
        raise
    result.epochs, result.steps = state.epoch, state.step
    record(None)
    ranks.barrier()
    if ranks.main:
        log_summary(result, result_path)
    return result


def _record_end(result: RunResult, path: Path, error: BaseException | None, *, started: float,
                write: bool, status: str | None = None) -> None:
    result.status = status or status_for(error)
    if error is not None:
        result.error = f"{type(error).__name__}: {error}"
    result.wall_time_s = round(time.perf_counter() - started, 3)
    if write:
        result.save(path)
