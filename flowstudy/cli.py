"""The command line: Hydra composes the config, one run or one sweep job runs, and user errors
become one line on stderr with exit status 2."""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import string
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, NoReturn

import hydra
from hydra._internal.hydra import Hydra
from hydra._internal.utils import get_args_parser as _hydra_args_parser
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from flowstudy import sweep
from flowstudy.alerts import Commands
from flowstudy.config import CONF_DIR, Config, load_config, register_configs
from flowstudy.errors import Refused, UserError, describe, output_dir_line
from flowstudy.interrupt import Interrupted
from flowstudy.metrics import HEADLINE
from flowstudy.results import RunResult, status_for
from flowstudy.sweep import parallel_jobs, swept_values, write_job_record

log = logging.getLogger("flowstudy")
EXIT_BUSY = 75  # EX_TEMPFAIL: nothing failed, but the sweep is not done; try again later
_task_started = False  # set once Hydra has set up the job (its output dir) and calls the task
_full_error = False  # HYDRA_FULL_ERROR=1 as the user set it (run_cli sets it for itself)


# What Hydra writes into a single run's output directory before the task starts, but its log.
HYDRA_FILES = {".hydra/config.yaml", ".hydra/hydra.yaml", ".hydra/overrides.yaml"}


def exit_with_error(message: str) -> NoReturn:
    """The one line and exit status 2; under torchrun every rank meets the same error, and only
    rank 0 says it (torchrun then prints its own ChildFailedError report, which is not ours)."""
    if os.environ.get("RANK", "0") == "0":
        print(f"flowstudy: error: {message}", file=sys.stderr)
    _drop_untouched_output_dir()
    sys.exit(2)


def _drop_untouched_output_dir() -> None:
    """A refused command leaves no ``outputs/<date>/<time>-<pid>/``: a single run's output
    directory that holds only what Hydra wrote as it started (its .hydra files, an empty
    ``<job>.log``) is removed, and so are the directories above it that are then empty, up to
    the working directory. One the command logged anything to is kept. (A refused sweep writes
    no sweep directory: its grid is checked first.)"""
    if not HydraConfig.initialized():
        return
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode == RunMode.MULTIRUN:
        return
    out = Path(hydra_cfg.runtime.output_dir)
    log_file = out / f"{hydra_cfg.job.name}.log"  # without one, what was logged is unknown
    if not log_file.is_file() or log_file.stat().st_size:
        return
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if not p.is_dir()}
    if not files <= {*HYDRA_FILES, log_file.name}:
        return
    for name in files:
        (out / name).unlink()
    cwd = Path.cwd()
    for d in (out / ".hydra", out, *(p for p in out.parents if p.is_relative_to(cwd) and p != cwd)):
        try:
            d.rmdir()
        except FileNotFoundError:
            continue
        except OSError:  # not empty: another command's, or the user's
            break


def task_started() -> None:
    """Hydra has made the output directory and called the task: an OSError from here on is the
    task's, not Hydra's (see ``_output_dir_error``)."""
    global _task_started
    _task_started = True
    _drop_failing_log_files()


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def _hydra_main(cfg: DictConfig) -> float | None:
    task_started()
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        try:
            config = load_config(cfg)
            return _run(config, Path(hydra_cfg.runtime.output_dir),
                        commands=Commands(tuple(hydra_cfg.overrides.task))).best_val_loss
        except Interrupted as e:
            e.command = _resume_command(hydra_cfg.overrides.task, e)
            raise
        except Exception as e:
            exit_if_user_error(e)
            raise
    return _sweep_job(cfg, hydra_cfg)


def exit_if_user_error(e: Exception) -> None:
    """Inside the task, a user error ends here in its one line: raised on, it would reach Hydra,
    which prints "Error executing job with overrides: [...]" before it. With HYDRA_FULL_ERROR=1
    only flowstudy's own errors stay one line."""
    message = describe(e)
    if message is not None and (isinstance(e, UserError) or not _full_error):
        exit_with_error(message)


def _run(config: Config, output_dir: Path, **sweep_job: Any) -> RunResult:
    """Start the run. The training stack (torch, wandb, the models) is imported here, the one
    place a run starts, and not with this module: composing, validating, ``--help`` and shell
    completion need none of it, and its imports alone take seconds."""
    from flowstudy.run import run

    return run(config, output_dir, **sweep_job)


def _drop_failing_log_files() -> None:
    """A log file that cannot be written (its disk is full) is dropped with one warning, instead
    of logging printing a traceback for every later line; the console keeps the log."""
    root = logging.getLogger()
    for handler in root.handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handleError = partial(_drop_log_file, handler)  # type: ignore[method-assign]


def _drop_log_file(handler: logging.FileHandler, record: logging.LogRecord) -> None:
    # Made inert rather than removed: tqdm's logging redirect restores the handler list.
    handler.emit = lambda record: None  # type: ignore[method-assign]
    print(f"flowstudy: warning: could not write the log file {handler.baseFilename} "
          f"({sys.exc_info()[1]}); logging to the console only", file=sys.stderr)


def _resume_command(overrides: list[str], e: Interrupted) -> str:
    """The command that continues the run: from the checkpoint the loop saved; else the same
    command again (without an explicit resume= once training had finished: it evaluates)."""
    kept = [o for o in overrides if not (e.trained and o.startswith("resume=")
                                         and o != "resume=auto")]
    if e.checkpoint is None:
        return shlex.join(["python", "-m", "flowstudy.train", *kept])
    kept = [o for o in overrides if not o.startswith("resume=")]
    return shlex.join(["python", "-m", "flowstudy.train", *kept, f"resume={e.checkpoint}"])


def _sweep_job(cfg: DictConfig, hydra_cfg: DictConfig) -> float | None:
    """One job of a sweep: its failure is recorded and logged, never fatal to the sweep; an
    interruption stops the sweep."""
    job_dir = Path(hydra_cfg.runtime.output_dir)
    record: dict[str, Any] = {"job": hydra_cfg.job.num,
                              "name": " ".join(hydra_cfg.overrides.task), "status": "failed"}
    try:
        swept = swept_values(cfg, hydra_cfg)
        config = load_config(cfg)
        record["name"] = config.name
        result = _run(config, job_dir, swept=swept, job_num=hydra_cfg.job.num,
                      parallel=parallel_jobs(hydra_cfg),
                      commands=Commands(tuple(hydra_cfg.overrides.task),
                                        sweep.resume_command(hydra_cfg)))
        record.update(name=result.name, status="skipped" if result.skipped else result.status,
                      best_val_loss=result.best_val_loss,
                      metric={k: v for k, v in result.metrics.items() if k in HEADLINE})
        return sweep.objective(result, config.objective)
    except Interrupted as e:
        e.command = sweep.resume_command(hydra_cfg)
        record["status"] = "interrupted"
        raise
    except Exception as e:
        message = describe(e)
        if message is None:
            log.exception("job %d failed", hydra_cfg.job.num)
        else:
            log.error("job %d %s: %s", hydra_cfg.job.num, status_for(e), message)
        record.update(status=status_for(e), error=message or f"{type(e).__name__}: {e}")
        return None
    finally:
        write_job_record(job_dir, record)


_hydra_get_help = Hydra.get_help


def _get_help(hydra_app: Hydra, help_cfg: DictConfig, cfg: DictConfig, args_parser: Any,
              resolve: bool) -> str:
    """Hydra's help text, listing the config groups only where the template shows them.

    Hydra lists every group for ``$APP_CONFIG_GROUPS`` and ``$HYDRA_CONFIG_GROUPS`` whether or
    not the template uses them: about a hundred deep copies of the ConfigStore, two thirds of
    what ``--help`` costs. Our templates list the options themselves (``${flowstudy_groups:}``);
    ``--hydra-help``, whose template shows Hydra's groups, keeps Hydra's own code."""
    if "CONFIG_GROUPS" in help_cfg.template:
        return _hydra_get_help(hydra_app, help_cfg, cfg, args_parser, resolve)
    return string.Template(help_cfg.template).substitute(
        FLAGS_HELP=hydra_app.format_args_help(args_parser),
        CONFIG=OmegaConf.to_yaml(cfg, resolve=resolve))


def _named_parser(prog: str) -> argparse.ArgumentParser:
    parser = _hydra_args_parser()
    parser.prog = prog  # argparse would name the file it runs from: train.py
    return parser


def run_cli(task: Callable[[], Any], module: str) -> None:
    """Run a Hydra entry point, ``python -m <module>``: user errors become one line on stderr
    and exit status 2."""
    global _full_error
    Hydra.get_help = _get_help  # type: ignore[method-assign]
    sys.modules["hydra.main"].get_args_parser = partial(_named_parser, f"python -m {module}")
    # argparse takes flags only before the overrides; -m anywhere means the same sweep
    flags = [a for a in sys.argv[1:] if a in ("-m", "--multirun")]
    sys.argv[1:] = [*flags, *(a for a in sys.argv[1:] if a not in flags)]
    keep_traceback = _full_error = os.environ.get("HYDRA_FULL_ERROR") == "1"
    # Let exceptions reach this frame instead of Hydra's multi-line report.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        task()
        _leave_process_group()
        if sweep.last_sweep is not None and sweep.last_sweep[1]:
            jobs, bad, _ = sweep.last_sweep
            print(f"flowstudy: {bad} of {jobs} runs did not complete (see the summary above)",
                  file=sys.stderr)
            sys.exit(1)
        if sweep.last_sweep is not None and sweep.last_sweep[2]:
            print(f"flowstudy: {sweep.last_sweep[2]} runs are being trained by another process; "
                  f"rerun this sweep once it has finished", file=sys.stderr)
            sys.exit(EXIT_BUSY)
    except Interrupted as e:
        if e.during == "starting":  # nothing of the run was written: nothing to continue
            print(f"flowstudy: {e}", file=sys.stderr)
        else:
            print(f"flowstudy: {e}\n{'resume' if e.checkpoint else 'continue'} with:\n"
                  f"  {e.command}", file=sys.stderr)
        sys.exit(128 + e.signum)
    except KeyboardInterrupt:
        print("flowstudy: aborted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:  # output piped into a reader that closed early (--help | head)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)
    except Refused as e:
        exit_with_error(str(e))
    except Exception as e:
        if (search := sweep.end_of_failed_search(e)) is not None:
            print(f"flowstudy: {search}", file=sys.stderr)
            sys.exit(1)
        message = None if keep_traceback else describe(e) or _output_dir_error(e)
        if message is None:
            raise
        exit_with_error(message)


def _leave_process_group() -> None:
    """Leave torchrun's process group, which only a run joins (through flowstudy.distributed):
    where no run started there is none, and no reason to import torch to say so."""
    distributed = sys.modules.get("flowstudy.distributed")
    if distributed is not None:
        distributed.shutdown()


def _output_dir_error(e: Exception) -> str | None:
    """Before the task starts, an OSError naming a file can only be Hydra creating its output
    directory (a file there, no permission, a full disk)."""
    if _task_started or not isinstance(e, OSError) or not e.filename:
        return None
    return output_dir_line(e)


def main() -> None:
    """``python -m flowstudy.train``."""
    args = sys.argv[1:]
    if {"-m", "--multirun"} & set(args) and (named := [a for a in args if a.startswith("name=")]):
        exit_with_error(f"{named[0]}: a sweep names each of its runs by its config "
                        f"(<arch>-<flow>-<dataset>-<aug>-<overrides>); drop name=, or label the "
                        f"sweep with group= or wandb.tags=")
    register_configs()
    run_cli(_hydra_main, "flowstudy.train")
