"""The command line: Hydra composes the config, one run or one sweep job runs, and user errors
become one line on stderr with exit status 2."""

from __future__ import annotations

import logging
import os
import shlex
import sys
from pathlib import Path
from typing import Any, NoReturn

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from flowstudy import distributed, sweep
from flowstudy.config import CONF_DIR, load_config
from flowstudy.errors import Refused, UserError, describe
from flowstudy.interrupt import Interrupted
from flowstudy.results import status_for
from flowstudy.run import run
from flowstudy.sweep import parallel_jobs, swept_values, write_job_record

log = logging.getLogger("flowstudy")
_task_started = False  # set once Hydra has set up the job (its output dir) and calls the task


def _exit_with_error(message: str) -> NoReturn:
    print(f"flowstudy: error: {message}", file=sys.stderr)
    sys.exit(2)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def _hydra_main(cfg: DictConfig) -> float | None:
    global _task_started
    _task_started = True
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
    except Refused as e:
        _exit_with_error(str(e))
    except OSError as e:
        # Before the task starts, an OSError can only be Hydra creating its output directory.
        if keep_traceback or _task_started or not e.filename:
            raise
        _exit_with_error(f"{e.filename}: {e.strerror}; hydra.run.dir (hydra.sweep.dir with -m) "
                         f"must be a directory that can be created and written")
    except Exception as e:
        message = None if keep_traceback else describe(e)
        if message is None:
            raise
        _exit_with_error(message)
