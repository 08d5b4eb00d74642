"""Train one flow-matching run: ``python -m flowstudy.train [group=option] [key=value] ...``.

compose (Hydra) -> validate (typed Config) -> build -> fit -> evaluate -> result.json.
``python -m flowstudy.train --help`` lists the groups and every key.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from flowstudy import sweep
from flowstudy.batches import BatchSource
from flowstudy.checkpoint import check_compatible, load_checkpoint, save_checkpoint
from flowstudy.config import CONF_DIR, Config, differences, identity, load_config, to_dict
from flowstudy.data import DataSplits, build_data
from flowstudy.data.augment import build_augment
from flowstudy.early_stopping import EarlyStopping
from flowstudy.ema import EMA
from flowstudy.errors import ConfigError, UserError, describe
from flowstudy.evaluate import evaluate, plot_samples
from flowstudy.fileio import ensure_writable_dir, run_lock
from flowstudy.flows import build_flow
from flowstudy.interrupt import Interrupted, StopRequest
from flowstudy.models import build_model, count_parameters
from flowstudy.results import RunResult, status_for
from flowstudy.rng import seed_everything, set_rng_state
from flowstudy.sweep import parallel_jobs, swept_values, write_job_record
from flowstudy.tracking import Tracker
from flowstudy.trainer import TrainState, ValidationSet, fit

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


def build(cfg: Config, device: torch.device) -> Built:
    data = build_data(cfg.dataset, cfg.study_dir)
    if cfg.train.batch_size > data.train.shape[0]:
        raise ConfigError("train.batch_size", cfg.train.batch_size,
                          f"at most the {data.train.shape[0]} training points (full batches only)")
    flow = build_flow(cfg.flow)
    batches = BatchSource(train=data.normalizer.encode(data.train).to(device),
                          batch_size=cfg.train.batch_size, source=data.source, flow=flow,
                          augment=build_augment(cfg.aug), seed=cfg.seed)
    # Validation noise is seeded by the data seed: runs of any seed are scored on the same problem.
    val = ValidationSet.fixed(data.normalizer.encode(data.val).to(device), data.source, flow,
                              cfg.train.batch_size, seed=cfg.dataset.seed)
    model = build_model(cfg.arch, data.dim).to(device)
    with torch.no_grad():
        probe = model(batches.train[:2], torch.zeros(2, device=device))
    if probe.shape != (2, data.dim):
        raise UserError(f"arch={cfg.arch.name}: the model maps x_t of shape [2, {data.dim}] to "
                        f"{list(probe.shape)}; a velocity must have the shape of x_t")
    state = TrainState(
        model=model,
        ema=EMA(model, cfg.train.ema_decay, cfg.train.ema_power),
        optimizer=torch.optim.AdamW(model.parameters(), lr=cfg.train.lr,
                                    weight_decay=cfg.train.weight_decay),
        stopper=EarlyStopping(cfg.train.patience, cfg.train.min_delta),
        shuffle_gen=torch.Generator().manual_seed(cfg.seed),
        noise_gen=torch.Generator(device).manual_seed(cfg.seed + 1),
    )
    return Built(data, batches, val, state)


def run(cfg: Config, run_dir: Path, swept: dict[str, Any] | None = None, job_num: int = 0,
        parallel: int = 1) -> RunResult:
    """Train, evaluate and record one run; ``run_dir`` holds its W&B files.

    A completed run with the same config is not retrained: its result is returned (and counted in
    ``cfg.group`` too). ``swept``, ``job_num`` and ``parallel`` describe the sweep it is part of.
    """
    started = time.perf_counter()
    device = resolve_device(cfg.train.device, job_num, parallel)
    # Parallel jobs share the cores rather than each taking all of them.
    torch.set_num_threads(cfg.train.threads or max(1, len(os.sched_getaffinity(0)) // parallel))
    checkpoint_dir = Path(cfg.checkpoint.dir) / cfg.name
    out_dir = Path(cfg.study_dir) / "runs" / cfg.name
    result_path = out_dir / "result.json"
    explicit = cfg.resume not in (None, "auto")
    resumed = load_checkpoint(cfg.resume, device) if explicit else None
    if resumed is not None:
        check_compatible(cfg.resume, resumed["config"], to_dict(cfg))
    ensure_writable_dir(checkpoint_dir, "checkpoint.dir")
    ensure_writable_dir(out_dir, "study_dir")
    with run_lock(checkpoint_dir / ".lock", f"run '{cfg.name}'"):
        prior = _prior_run(cfg, result_path, checkpoint_dir)
        if prior is not None and prior.status == "completed":
            log.info("skipping %s: completed with this config (%s); force=true retrains",
                     cfg.name, result_path)
            if cfg.group not in prior.groups:
                prior.groups.append(cfg.group)
                prior.save(result_path)
            return dataclasses.replace(prior, skipped=True)
        last = checkpoint_dir / "last.pt"
        if cfg.resume == "auto" and prior is not None and last.exists():
            log.info("resume=auto: continuing the unfinished run from %s", last)
            resumed = load_checkpoint(last, device)
            check_compatible(last, resumed["config"], to_dict(cfg))
        return _train_and_evaluate(cfg, run_dir, device, resumed, checkpoint_dir, result_path,
                                   started, swept or {})


def _train_and_evaluate(cfg: Config, run_dir: Path, device: torch.device, resumed: dict | None,
                        checkpoint_dir: Path, result_path: Path, started: float,
                        swept: dict[str, Any]) -> RunResult:
    result = RunResult(name=cfg.name, group=cfg.group, groups=[cfg.group], swept=swept,
                       checkpoint=str(checkpoint_dir / "best.pt"), config=to_dict(cfg))
    result.save(result_path)
    try:
        seed_everything(cfg.seed)
        built = build(cfg, device)
    except BaseException as e:
        _record_end(result, result_path, e, started)
        raise
    data, batches, val, state = built.data, built.batches, built.val, built.state
    model = state.model
    if resumed is not None:
        state.load_state_dict(resumed)
        set_rng_state(resumed["rng"])
        log.info("resumed %s at epoch %d (step %d, best %.4f)", cfg.resume, state.epoch,
                 state.step, state.stopper.best)

    result.params, result.dim = count_parameters(model), data.dim
    result.threads = torch.get_num_threads()
    log.info("run %s (group %s): %s parameters, %d-d data, %d train points, on %s", cfg.name,
             cfg.group, f"{result.params:,}", data.dim, data.train.shape[0], device)
    try:
        with Tracker(cfg, run_dir, result_path.parent / "metrics.jsonl", swept=swept,
                     resume_run_id=resumed["wandb_run_id"] if resumed else None,
                     resume_step=state.step if resumed else None) as tracker:
            extra = {"config": to_dict(cfg), "normalizer": data.normalizer.state_dict(),
                     "wandb_run_id": tracker.run_id}
            tracker.summary({"params": result.params})
            with StopRequest() as stop:
                fitted = fit(cfg.train, state, batches, val, tracker, checkpoint_dir,
                             save=lambda path, s: save_checkpoint(path, {**s, **extra}),
                             save_last=cfg.checkpoint.save_last, stop=stop)

            best_path = checkpoint_dir / "best.pt"
            if not best_path.exists():
                raise RuntimeError(f"no epoch produced a finite {cfg.train.monitor} validation "
                                   f"loss, so there is no best checkpoint to evaluate")
            best = load_checkpoint(best_path, device)
            state.ema.load_state_dict(best["ema"])
            evaluation = evaluate(state.ema.module, data, cfg.sample, seed=cfg.seed)
            png = checkpoint_dir / "samples.png"
            plot_samples(evaluation, data, png, title=f"{cfg.name} (epoch {best['epoch']})")
            sample_log = {f"sample/{k}": v for k, v in evaluation.metrics.items()}
            tracker.log({**sample_log, "sample/nfe": evaluation.nfe}, fitted.steps)
            tracker.image("samples", png, fitted.steps, caption=cfg.name)

            result.status, result.stop_reason = "completed", fitted.stop_reason
            result.best_val_loss = state.stopper.best
            result.best_epoch = state.stopper.best_epoch
            result.metrics, result.nfe = evaluation.metrics, evaluation.nfe
            result.samples_png = str(png)
            tracker.summary({"best_val_loss": result.best_val_loss,
                             "best_epoch": result.best_epoch, "checkpoint": result.checkpoint,
                             "stop_reason": result.stop_reason})
    except BaseException as e:
        result.epochs, result.steps = state.epoch, state.step
        _record_end(result, result_path, e, started)
        raise
    result.epochs, result.steps = state.epoch, state.step
    _record_end(result, result_path, None, started)

    m = result.metrics
    log.info("done: %s after %d epochs (%s); best val loss %.4f at epoch %d", cfg.name,
             result.epochs, result.stop_reason, result.best_val_loss, result.best_epoch)
    log.info("samples: W2 %.4f (floor %.4f)  MMD %.4f (floor %.4f)  FD %.4f (floor %.4f)  "
             "precision %.3f  recall %.3f  NFE %d", m["w2"], m["w2_floor"], m["mmd"],
             m["mmd_floor"], m["fd"], m["fd_floor"], m["precision"], m["recall"], result.nfe)
    log.info("checkpoint %s, samples %s, result %s", result.checkpoint, result.samples_png,
             result_path)
    return result


def _exit_with_error(message: str) -> NoReturn:
    print(f"flowstudy: error: {message}", file=sys.stderr)
    sys.exit(2)


def _record_end(result: RunResult, path: Path, error: BaseException | None,
                started: float) -> None:
    result.status = status_for(error)
    if error is not None:
        result.error = f"{type(error).__name__}: {error}"
    result.wall_time_s = round(time.perf_counter() - started, 3)
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
        return result.best_val_loss
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
    main()
