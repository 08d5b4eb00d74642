"""What an earlier run of the same name left, and whether this run may replace or skip it."""

from __future__ import annotations

from pathlib import Path

from flowstudy.config import Config, differences, identity, to_dict
from flowstudy.errors import UserError
from flowstudy.results import RunResult


def prior_run(cfg: Config, result_path: Path, checkpoint_dir: Path) -> RunResult | None:
    """The earlier result of this name, after checking it is this run.

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
