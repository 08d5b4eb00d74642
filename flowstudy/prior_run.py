"""What an earlier run of the same name left, and whether this run may replace, skip or continue
it. Runs are compared by lineage (``flowstudy.lineage``): config, data content and the
checkpoints they started from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flowstudy.config import Config
from flowstudy.data.fingerprint import short
from flowstudy.errors import UserError
from flowstudy.lineage import changed_data, lineage_differences, lineage_of
from flowstudy.results import RunResult


def prior_run(cfg: Config, lineage: list[dict[str, Any]], result_path: Path,
              checkpoint_dir: Path, continuing: bool = False) -> RunResult | None:
    """The earlier result of this name, after checking it is this run.

    Another lineage under the same name is refused rather than overwritten (``force=true``
    replaces it); so is a checkpoint without a result, and an unfinished run's ``last.pt``
    that a fresh start would leave behind. ``continuing``: this run resumes its own checkpoint
    (``resume=PATH`` of the same lineage, or ``resume=auto``).
    """
    if cfg.force:
        return None
    where = f"run '{cfg.name}' in {result_path.parent}"
    if not result_path.exists():
        if (checkpoint_dir / "best.pt").exists() and not continuing:
            raise UserError(f"run '{cfg.name}' has a checkpoint ({checkpoint_dir / 'best.pt'}) "
                            f"but no result: continue it with resume=, give this run another "
                            f"name=, or replace it with force=true")
        return None
    prior = RunResult.load(result_path)
    saved = lineage_of({"lineage": prior.lineage, "config": prior.config})
    data = changed_data(saved, lineage)
    if data is not None:
        raise UserError(f"dataset.path={cfg.dataset.path}: its content changed since {where} "
                        f"was trained on it (sha256 {short(data[0])} -> {short(data[1])}): "
                        f"retrain on the new content with force=true, or restore the file")
    diffs = lineage_differences(saved, lineage)
    if diffs:
        raise UserError(f"{where} was trained with a different config "
                        f"({'; '.join(diffs[:3])}{'; ...' if len(diffs) > 3 else ''}): "
                        f"replace it with force=true, or give this run another name= (single runs)")
    if prior.status == "completed" and continuing and cfg.resume != "auto":
        raise UserError(f"{where} already completed with this config ({prior.stop_reason} after "
                        f"{prior.epochs} epochs): resuming it unchanged would replay the same "
                        f"epochs to the same end; extend it with more train.epochs or "
                        f"train.patience (a new run {cfg.name}+epochs<N>), or retrain it with "
                        f"force=true")
    last = checkpoint_dir / "last.pt"
    if prior.status not in ("completed", "trained") and not continuing and last.exists():
        raise UserError(f"{where} is {prior.status} at epoch {prior.epochs} and left {last}: "
                        f"continue it with resume=auto, or start it over with force=true")
    return prior
