"""Train one flow-matching run: ``python -m flowstudy.train [group=option] [key=value] ...``.

compose (Hydra) -> validate (typed Config) -> build -> fit -> evaluate -> result.json.
``python -m flowstudy.train --help`` lists the groups and every key.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import resource
import shlex
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, NoReturn

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from flowstudy import distributed, sweep
from flowstudy.batches import BatchSource
from flowstudy.checkpoint import check_compatible, load_checkpoint, save_checkpoint
from flowstudy.config import CONF_DIR, Config, differences, identity, load_config, to_dict
from flowstudy.data import DataSplits, build_data
from flowstudy.data.augment import build_augment
from flowstudy.distributed import Dist, from_environment
from flowstudy.early_stopping import EarlyStopping
from flowstudy.ema import EMA
from flowstudy.errors import ConfigError, UserError, describe
from flowstudy.evaluate import evaluate, plot_samples
from flowstudy.figures import save_samples
from flowstudy.fileio import ensure_writable_dir, run_lock
from flowstudy.flows import build_flow
from flowstudy.interrupt import Interrupted, StopRequest
from flowstudy.models import build_model, count_parameters
from flowstudy.precision import Precision
from flowstudy.profiling import profile_steps
from flowstudy.results import COST_KEYS, RunResult, status_for
from flowstudy.rng import seed_everything, set_rng_state
from flowstudy.sweep import parallel_jobs, swept_values, write_job_record
from flowstudy.tracking import NullTracker, Tracker
from flowstudy.trainer import Engine, FitResult, TrainState, ValidationSet, fit, step_flops

log = logging.getLogger("flowstudy")


def auto_device(cuda_devices: int, job_num: int = 0, parallel: int = 1) -> str:
    """CUDA when present; jobs of a sweep running in parallel each take GPU job_num % count."""
    if cuda_devices == 0:
        return "cpu"
    return f"cuda:{job_num % cuda_devices}" if parallel > 1 and cuda_devices > 1 else "cuda"


def resolve_device(name: str, job_num: int = 0, parallel: int = 1) -> torch.device:
    if name == "auto":
        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return torch.device(auto_device(gpus, job_num, parallel))
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("train.device", name, "cpu or auto (this machine has no CUDA device)")
    return torch.device(name)


def _prior_run(cfg: Config, result_path: Path, checkpoint_dir: Path) -> RunResult | None:
    """What an earlier run of this name left, after checking it is this run.

    A different config under the same name is refused rather than overwritten (``force=true``
    replaces it); so is a checkpoint without a result. An explicit ``resume=PATH`` may change
    other settings (e.g. more epochs), so it skips the check.
    """
    if cfg.force or cfg.resume not in (None, "auto"):
        return None
    if not result_path.exists():
        if (checkpoint_dir / "best.pt").exists():
            raise UserError(f"run '{cfg.name}' has a checkpoint ({checkpoint_dir / 'best.pt'}) "
                            f"but no result: continue it with resume=, give this run another "
                            f"name=, or replace it with force=true")
        return None
    prior = RunResult.load(result_path)
    diffs = differences(identity(prior.config), identity(to_dict(cfg)))
    if diffs:
        raise UserError(f"run '{cfg.name}' in {result_path.parent} was trained with a different "
                        f"config ({'; '.join(diffs[:3])}{'; ...' if len(diffs) > 3 else ''}): "
                        f"give this run another name=, or replace it with force=true")
    return prior


@dataclass
class Built:
    """Everything a run trains with, built from its config."""

    data: DataSplits
    batches: BatchSource
    val: ValidationSet
    state: TrainState
    engine: Engine


def _compiled(model: nn.Module, example: tuple[torch.Tensor, torch.Tensor]) -> nn.Module:
    try:
        compiled = torch.compile(model)
        compiled(*example)  # compile now, so a missing toolchain shows here and not mid-run
        return compiled
    except Exception as e:  # torch.compile raises many types when a backend is unavailable
        log.warning("train.compile: torch.compile is unavailable here (%s); training eagerly",
                    str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)
        return model


def adamw(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with its fused kernel where torch has one for the device (CPU and CUDA): the same
    update as the default per-tensor loop, several times faster on a CPU."""
    try:
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, ValueError):
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)


def build(cfg: Config, device: torch.device, ranks: Dist | None = None) -> Built:
    ranks = ranks or Dist()
    t = cfg.train
    if t.precision == "fp16" and device.type != "cuda":
        raise ConfigError("train.precision", "fp16", "fp32 or bf16 on a CPU (fp16 needs CUDA)")
    if t.batch_size % (t.accum_steps * ranks.world):
        raise ConfigError("train.batch_size", t.batch_size,
                          f"a multiple of train.accum_steps x ranks = "
                          f"{t.accum_steps} x {ranks.world} (the batch is global)")
    data = build_data(cfg.dataset, cfg.study_dir)
    if t.batch_size > data.train.shape[0]:
        raise ConfigError("train.batch_size", t.batch_size,
                          f"at most the {data.train.shape[0]} training points (full batches only)")
    flow = build_flow(cfg.flow)
    batches = BatchSource(train=data.normalizer.encode(data.train).to(device),
                          batch_size=t.batch_size, source=data.source, flow=flow,
                          augment=build_augment(cfg.aug), seed=cfg.seed,
                          overfit_batches=t.overfit_batches)
    # Validation noise is seeded by the data seed: runs of any seed are scored on the same problem.
    val = ValidationSet.fixed(data.normalizer.encode(data.val).to(device), data.source, flow,
                              t.batch_size, seed=cfg.dataset.seed)
    if t.overfit_batches:  # scored on the very batches it fits
        val = ValidationSet(*batches.fixed_validation())
    model = build_model(cfg.arch, data.dim).to(device)
    example = (batches.train[:2], torch.zeros(2, device=device))
    with torch.no_grad():
        probe = model(*example)
    if probe.shape != (2, data.dim):
        raise UserError(f"arch={cfg.arch.name}: the model maps x_t of shape [2, {data.dim}] to "
                        f"{list(probe.shape)}; a velocity must have the shape of x_t")
    precision = Precision.create(t.precision, device)
    state = TrainState(
        model=model,
        ema=EMA(model, t.ema_decay, t.ema_power),
        optimizer=adamw(model, t.lr, t.weight_decay),
        stopper=EarlyStopping(t.patience, t.min_delta),
        shuffle_gen=torch.Generator().manual_seed(cfg.seed),
        noise_gen=torch.Generator(device).manual_seed(cfg.seed + 1),
        scaler=precision.scaler,
    )
    forward = _compiled(model, example) if t.compile else model
    if ranks.active:
        forward = DistributedDataParallel(
            forward, device_ids=[device.index] if device.type == "cuda" else None)
    return Built(data, batches, val, state, Engine(forward, precision, ranks))


def _deterministic(device: torch.device) -> None:
    """Deterministic kernels only; on CUDA cuBLAS needs a fixed workspace for that."""
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True)


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
    # Parallel jobs (and ranks on one machine) share the cores rather than each taking all.
    sharing = parallel * (ranks.world if device.type == "cpu" else 1)
    torch.set_num_threads(cfg.train.threads or max(1, len(os.sched_getaffinity(0)) // sharing))
    if cfg.train.deterministic:
        _deterministic(device)
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
        prior = _prior_run(cfg, result_path, checkpoint_dir)  # every rank decides alike
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
            profiled = cfg.train.profile_steps if ranks.main else 0
            with StopRequest() as stop, profile_steps(profiled, batches, checkpoint_dir) as train:
                fitted = fit(cfg.train, state, train, val, tracker, checkpoint_dir,
                             save=lambda path, s: save_checkpoint(
                                 path, {**s, **extra, "wandb_run_id": tracker.run_id}),
                             save_last=cfg.checkpoint.save_last, stop=stop, engine=built.engine)
            result.stop_reason = fitted.stop_reason
            result.best_val_loss = state.stopper.best
            result.best_epoch = state.stopper.best_epoch
            _record_cost(result, fitted, cfg, built)
            if ranks.main:
                _evaluate_best(cfg, result, data, state, tracker, checkpoint_dir, device,
                               fitted.steps)
    except BaseException as e:
        result.epochs, result.steps = state.epoch, state.step
        record(e)
        raise
    result.epochs, result.steps = state.epoch, state.step
    record(None)
    ranks.barrier()
    if ranks.main:
        _log_summary(result, result_path)
    return result


def _record_cost(result: RunResult, fitted: FitResult, cfg: Config, built: Built) -> None:
    """What the run cost: FLOPs (counted, and the 6 N D estimate), throughput, peak memory."""
    device = built.batches.train.device
    samples = fitted.steps * cfg.train.batch_size
    result.flops_per_step = step_flops(built.state.model, built.batches.flow.path,
                                       cfg.train.batch_size, built.data.dim, device)
    result.flops = result.flops_per_step * fitted.steps
    result.flops_6nd = 6.0 * (result.params or 0) * samples
    if fitted.seconds > 0:
        result.steps_per_s = round(fitted.steps_done / fitted.seconds, 3)
        result.samples_per_s = round(result.steps_per_s * cfg.train.batch_size, 1)
    result.peak_memory_bytes = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
                                else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


def _evaluate_best(cfg: Config, result: RunResult, data: DataSplits, state: TrainState,
                   tracker: Tracker, checkpoint_dir: Path, device: torch.device,
                   step: int) -> None:
    best_path = checkpoint_dir / "best.pt"
    if not best_path.exists():
        raise RuntimeError(f"no epoch produced a finite {cfg.train.monitor} validation "
                           f"loss, so there is no best checkpoint to evaluate")
    best = load_checkpoint(best_path, device)
    state.ema.load_state_dict(best["ema"])
    evaluation = evaluate(state.ema.module, data, cfg.sample, seed=cfg.seed)
    png = checkpoint_dir / "samples.png"
    plot_samples(evaluation, data, png, title=f"{cfg.name} (epoch {best['epoch']})")
    save_samples(checkpoint_dir / "samples.npz", evaluation.samples, data.test)
    sample_log = {f"sample/{k}": v for k, v in evaluation.metrics.items()}
    tracker.log({**sample_log, "sample/nfe": evaluation.nfe}, step)
    tracker.image("samples", png, step, caption=cfg.name)
    result.metrics, result.nfe, result.samples_png = evaluation.metrics, evaluation.nfe, str(png)
    tracker.summary({"best_val_loss": result.best_val_loss, "best_epoch": result.best_epoch,
                     "checkpoint": result.checkpoint, "stop_reason": result.stop_reason,
                     **{k: getattr(result, k) for k in COST_KEYS}})


def _log_summary(result: RunResult, result_path: Path) -> None:
    m = result.metrics
    log.info("done: %s after %d epochs (%s); best val loss %.4f at epoch %d", result.name,
             result.epochs, result.stop_reason, result.best_val_loss, result.best_epoch)
    log.info("samples: W2 %.4f (floor %.4f)  MMD %.4f (floor %.4f)  FD %.4f (floor %.4f)  "
             "precision %.3f  recall %.3f  NFE %d", m["w2"], m["w2_floor"], m["mmd"],
             m["mmd_floor"], m["fd"], m["fd_floor"], m["precision"], m["recall"], result.nfe)
    log.info("cost: %.3g FLOPs (6ND estimate %.3g), %.1f steps/s, %.0f samples/s, peak memory "
             "%.0f MiB, %.1f s", result.flops or float("nan"), result.flops_6nd,
             result.steps_per_s or 0, result.samples_per_s or 0,
             (result.peak_memory_bytes or 0) / 2**20, result.wall_time_s)
    log.info("checkpoint %s, samples %s, result %s", result.checkpoint, result.samples_png,
             result_path)


def _exit_with_error(message: str) -> NoReturn:
    print(f"flowstudy: error: {message}", file=sys.stderr)
    sys.exit(2)


def _record_end(result: RunResult, path: Path, error: BaseException | None, *, started: float,
                write: bool, status: str | None = None) -> None:
    result.status = status or status_for(error)
    if error is not None:
        result.error = f"{type(error).__name__}: {error}"
    result.wall_time_s = round(time.perf_counter() - started, 3)
    if write:
        result.save(path)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def _hydra_main(cfg: DictConfig) -> float | None:
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        try:
            config = load_config(cfg)
            return run(config, Path(hydra_cfg.runtime.output_dir)).best_val_loss
        except Interrupted as e:
            e.command = _resume_command(hydra_cfg.overrides.task, e.checkpoint)
            raise
        except UserError as e:  # Hydra would add its own "Error executing job" line
            _exit_with_error(str(e))
    return _sweep_job(cfg, hydra_cfg)


def _resume_command(overrides: list[str], checkpoint: str) -> str:
    kept = [o for o in overrides if not o.startswith("resume=")]
    return shlex.join(["python", "-m", "flowstudy.train", *kept, f"resume={checkpoint}"])


def _sweep_job(cfg: DictConfig, hydra_cfg: DictConfig) -> float | None:
    """One job of a sweep: its failure is recorded and logged, never fatal to the sweep; an
    interruption stops the sweep."""
    job_dir = Path(hydra_cfg.runtime.output_dir)
    record: dict[str, Any] = {"job": hydra_cfg.job.num,
                              "name": " ".join(hydra_cfg.overrides.task), "status": "failed"}
    try:
        swept, naming = swept_values(cfg, hydra_cfg)
        config = load_config(cfg, naming)
        record["name"] = config.name
        result = run(config, job_dir, swept=swept, job_num=hydra_cfg.job.num,
                     parallel=parallel_jobs(hydra_cfg))
        record.update(status="skipped" if result.skipped else result.status,
                      best_val_loss=result.best_val_loss,
                      metric={k: v for k, v in result.metrics.items() if k in ("w2", "fd")})
        return sweep.objective(result, config.objective)
    except Interrupted as e:
        e.command = _resume_command(hydra_cfg.overrides.task, e.checkpoint) + " -m"
        record["status"] = "interrupted"
        raise
    except Exception as e:
        message = describe(e)
        if message is None:
            log.exception("job %d failed", hydra_cfg.job.num)
        else:
            log.error("job %d failed: %s", hydra_cfg.job.num, message)
        record.update(status=status_for(e), error=message or f"{type(e).__name__}: {e}")
        return None
    finally:
        write_job_record(job_dir, record)


def main() -> None:
    """CLI entry: user errors become one line on stderr and exit status 2."""
    keep_traceback = os.environ.get("HYDRA_FULL_ERROR") == "1"
    # Let exceptions reach this frame instead of Hydra's multi-line report.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        _hydra_main()
        distributed.shutdown()
        if sweep.last_sweep is not None and sweep.last_sweep[1]:
            jobs, bad = sweep.last_sweep
            print(f"flowstudy: {bad} of {jobs} runs did not complete (see the summary above)",
                  file=sys.stderr)
            sys.exit(1)
    except Interrupted as e:
        print(f"flowstudy: {e}\nresume with:\n  {e.command}", file=sys.stderr)
        sys.exit(128 + e.signum)
    except KeyboardInterrupt:
        print("flowstudy: aborted", file=sys.stderr)
        sys.exit(130)
    except Exception as e:
        message = None if keep_traceback else describe(e)
        if message is None:
            raise
        _exit_with_error(message)


if __name__ == "__main__":
    # Run the importable module's main: launchers that pickle the task function (joblib) then
    # pickle a reference to flowstudy.train instead of this __main__ copy and all it refers to.
    from flowstudy.train import main as entry

    entry()
