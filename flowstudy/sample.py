"""Evaluate a checkpoint without retraining, e.g.
``python -m flowstudy.sample resume=study/checkpoints/<run>/best.pt sample.steps=4``.

Loads the checkpoint's EMA model and the run's data splits, samples, measures exactly as the end
of training does, and writes the metrics (JSON) and the samples (.pt) to ``<checkpoint dir>/eval/``
under a name made of the settings. The run's result.json is never touched. Under ``-m`` it sweeps
sampling settings, e.g. ``sample.steps=1,2,4,8,16,32,100`` for an NFE-vs-quality table.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from flowstudy.cli import exit_if_user_error, run_cli, task_started
from flowstudy.config import (
    CONF_DIR,
    EvalConfig,
    SampleConfig,
    check_keys,
    format_value,
    register_configs,
    validate,
    validate_eval,
)
from flowstudy.fileio import atomic_path, ensure_writable_dir, write_json

if TYPE_CHECKING:
    from flowstudy.loading import TrainedRun

log = logging.getLogger("flowstudy")


def eval_name(trained: TrainedRun, s: SampleConfig, n: int, seed: int) -> str:
    """``best-e35-rk4-4-n1000-seed0``: the checkpoint (and its epoch, so a later best.pt gets
    files of its own) and every setting that changes the numbers."""
    solver = (f"dopri5-atol{format_value(s.atol)}-rtol{format_value(s.rtol)}"
              if s.solver == "dopri5" else f"{s.solver}-{s.steps}")
    projected = "-project_norm" if s.project_norm else ""  # more metrics: never the raw record
    return f"{trained.path.stem}-e{trained.epoch}-{solver}-n{n}-seed{seed}{projected}"


def sample_settings(run_sample: SampleConfig, given: SampleConfig,
                    overrides: list[str]) -> SampleConfig:
    """The run's own sample settings, with the keys given on the command line replaced."""
    keys = {o.key_or_group.removeprefix("sample.")
            for o in OverridesParser.create().parse_overrides(overrides)
            if o.key_or_group.startswith("sample.")}
    return dataclasses.replace(run_sample, **{k: getattr(given, k) for k in keys})


def evaluate_checkpoint(cfg: EvalConfig, overrides: list[str]) -> dict[str, Any]:
    """Sample ``cfg.resume`` with the run's settings changed by ``overrides``; write and
    return the record."""
    # The sampling stack (torch, the data, the model) is imported here, where sampling starts,
    # and not with this module: --help and a bad override need none of it.
    import torch

    from flowstudy.data import build_data
    from flowstudy.evaluate import evaluate
    from flowstudy.flows.solvers import solver_steps
    from flowstudy.loading import load

    started = time.perf_counter()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    trained = load(cfg.resume, device)
    eval_dir = Path(cfg.resume).parent / "eval"
    ensure_writable_dir(eval_dir, f"resume={cfg.resume}")  # the record is written beside it
    run_cfg = trained.config
    run_cfg.sample = sample_settings(run_cfg.sample, cfg.sample, overrides)
    validate(run_cfg)
    seed = run_cfg.seed if cfg.seed is None else cfg.seed
    data = build_data(run_cfg.dataset, run_cfg.study_dir)
    data.normalizer = trained.normalizer  # the statistics the model was trained with
    s = run_cfg.sample
    log.info("%s epoch %d: sampling %d points with %s, then measuring them%s", run_cfg.name,
             trained.epoch, s.n if s.n is not None else data.test.shape[0],
             f"dopri5 (atol {s.atol:g}, rtol {s.rtol:g}, at most {s.max_steps} steps)"
             if s.solver == "dopri5" else f"{s.solver}, {s.steps} steps",
             " and the test likelihood" if s.likelihood else "")
    evaluation = evaluate(trained.model, data, run_cfg.sample, seed, run_cfg.dataset.seed)
    n = evaluation.samples.shape[0]
    out = eval_dir / eval_name(trained, run_cfg.sample, n, seed)
    record = {
        "run": run_cfg.name, "checkpoint": str(cfg.resume),
        "checkpoint_sha256": trained.sha256, "epoch": trained.epoch,
        "step": trained.step, "seed": seed, "sample": dataclasses.asdict(run_cfg.sample),
        "n": n, "nfe": evaluation.nfe,
        "solver_steps": solver_steps(s.solver, s.steps, evaluation.nfe),
        "metrics": evaluation.metrics,
        "samples": str(out.with_suffix(".pt")) if cfg.save_samples else None,
        "wall_time_s": round(time.perf_counter() - started, 3),
    }
    if cfg.save_samples:
        with atomic_path(out.with_suffix(".pt")) as tmp:
            torch.save(evaluation.samples, tmp)
    write_json(out.with_suffix(".json"), record)
    m = evaluation.metrics
    headline = "w2" if trained.dim == 2 else "fd"
    log.info("%s epoch %d, %s: NFE %d, %s %.4f (floor %.4f) -> %s", run_cfg.name,
             trained.epoch, out.name, evaluation.nfe, headline.upper(), m[headline],
             m[f"{headline}_floor"], out.with_suffix(".json"))
    return record


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="sample")
def _hydra_main(cfg: DictConfig) -> None:
    task_started()
    try:
        check_keys(cfg)
        config: EvalConfig = OmegaConf.to_object(cfg)  # type: ignore[assignment]
        validate_eval(config)
        evaluate_checkpoint(config, list(HydraConfig.get().overrides.task))
    except Exception as e:
        exit_if_user_error(e)
        raise


def main() -> None:
    register_configs()
    run_cli(_hydra_main, "flowstudy.sample")


if __name__ == "__main__":
    main()
