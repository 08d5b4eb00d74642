"""What a run does, given what an earlier run of its name left on disk: a pure decision.

``plan_run`` reads no file and starts nothing; ``flowstudy.run`` gathers what is on disk into a
``Disk``, asks for a plan and carries it out. Every rule of docs/provenance-and-resume.md
("Nothing is overwritten", "Provenance") is one branch here, and one unit test of it:

- ``Skip``: the run completed with this lineage; its result is returned, not retrained.
- ``EvaluateOnly``: training finished (status ``trained``) but evaluation did not; evaluate best.pt.
- ``Continue``: the same run from its checkpoint (``resume=auto``'s last.pt, or ``resume=PATH``
  of the run's own lineage).
- ``Branch``: a new run from a checkpoint with other settings (or another ``name=``).
- ``Fresh``: train from scratch, removing a stale ``last.pt`` (``force=true``).

Everything else is refused with one line saying how to proceed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowstudy.data.fingerprint import short
from flowstudy.errors import UserError
from flowstudy.lineage import Start, changed_data, lineage_differences
from flowstudy.results import RunResult, stale_running


@dataclass(frozen=True)
class Request:
    """What the command asks for."""

    name: str  # the run's name, after naming by lineage
    lineage: list[dict[str, Any]]  # this run's lineage (a branch's includes its parent)
    resume: str | None  # None | "auto" | a checkpoint path
    force: bool = False
    branch: bool = False  # resume=PATH starts a new run off the checkpoint
    dataset_path: str | None = None  # for the message when only the data's content changed


@dataclass(frozen=True)
class Disk:
    """What an earlier run of the name left: ``result.json`` (read), whether ``best.pt`` and
    ``last.pt`` exist, and the lineage recorded in ``last.pt`` (read only for resume=auto)."""

    where: Path  # the run's result directory, for messages
    checkpoint_dir: Path
    result: RunResult | None = None
    has_best: bool = False
    has_last: bool = False
    last_lineage: list[dict[str, Any]] | None = None
    stale: bool = False  # result.json says running, but its process is gone (killed)

    @property
    def status(self) -> str | None:
        """The earlier run's status as the messages say it (a killed run's is stale)."""
        if self.result is None:
            return None
        return stale_running(self.result.pid) if self.stale else self.result.status


@dataclass(frozen=True)
class Skip:
    result: RunResult


@dataclass(frozen=True)
class EvaluateOnly:
    result: RunResult
    checkpoint: Path  # best.pt


@dataclass(frozen=True)
class Continue:
    checkpoint: Path
    start: Start
    prior: RunResult | None = None  # the unfinished run's record, if any


@dataclass(frozen=True)
class Branch:
    checkpoint: Path
    start: Start


@dataclass(frozen=True)
class Fresh:
    start: Start
    note: str | None = None  # said in the log: why this is a fresh start


Plan = Skip | EvaluateOnly | Continue | Branch | Fresh


def plan_run(req: Request, disk: Disk) -> Plan:
    """The plan for ``req`` given ``disk``, or a ``UserError`` saying why it is refused."""
    start = Start(req.name, req.lineage, branch=req.branch)
    note = None
    if disk.result is not None and _never_trained(disk):
        # A run stopped before its first step (a rejected file, a signal while building) holds
        # no weights trained on anything: it neither claims its data nor blocks its name.
        note = (f"run '{req.name}' in {disk.where} was {disk.status} before training "
                f"started; training it afresh")
        disk = dataclasses.replace(disk, result=None)
    explicit = req.resume not in (None, "auto")
    auto = req.resume == "auto" and not req.force and disk.has_last
    continuing = auto or (explicit and not req.branch)
    prior = None if req.force else _prior(req, disk, continuing)
    if prior is not None and prior.status == "completed":
        return Skip(prior)
    if prior is not None and prior.status == "trained" and disk.has_best:
        return EvaluateOnly(prior, disk.checkpoint_dir / "best.pt")
    if auto:
        last = disk.checkpoint_dir / "last.pt"
        diffs = lineage_differences(disk.last_lineage or [], req.lineage) \
            if disk.last_lineage is not None else ["lineage=unknown"]
        if diffs:
            raise UserError(f"resume=auto: {last} belongs to another run "
                            f"({'; '.join(diffs[:3])}); resume it with resume={last} and its own "
                            f"settings, or start over with force=true")
        return Continue(last, Start(req.name, disk.last_lineage or req.lineage), prior)
    if explicit:
        return Branch(Path(req.resume), start) if req.branch else \
            Continue(Path(req.resume), start, prior)
    if req.resume == "auto" and note is None:
        return Fresh(start, f"resume=auto: {req.name} left no unfinished run "
                            f"({disk.checkpoint_dir / 'last.pt'}); training from scratch")
    return Fresh(start, note)


def _never_trained(disk: Disk) -> bool:
    """The earlier run of the name failed, was stopped or was killed before its first training step
    and left no checkpoint."""
    r = disk.result
    return (r is not None and (r.status in ("failed", "interrupted") or disk.stale) and not r.steps
            and not r.epochs and not disk.has_best and not disk.has_last)


def _prior(req: Request, disk: Disk, continuing: bool) -> RunResult | None:
    """The earlier result of this name, after checking it is this run.

    Another lineage under the same name is refused rather than overwritten (``force=true``
    replaces it); so is a checkpoint without a result, and an unfinished run's ``last.pt``
    that a fresh start would leave behind.
    """
    where = f"run '{req.name}' in {disk.where}"
    prior = disk.result
    if prior is None:
        if disk.has_best and not continuing:
            raise UserError(f"run '{req.name}' has a checkpoint "
                            f"({disk.checkpoint_dir / 'best.pt'}) but no result: continue it "
                            f"with resume=, give this run another name=, or replace it with "
                            f"force=true")
        return None
    saved = prior.full_lineage()
    data = changed_data(saved, req.lineage)
    if data is not None:
        raise UserError(f"dataset.path={req.dataset_path}: its content changed since {where} "
                        f"was trained on it (sha256 {short(data[0])} -> {short(data[1])}): "
                        f"retrain on the new content with force=true, or restore the file")
    diffs = lineage_differences(saved, req.lineage)
    if diffs:
        raise UserError(f"{where} was trained with a different config "
                        f"({'; '.join(diffs[:3])}{'; ...' if len(diffs) > 3 else ''}): "
                        f"replace it with force=true, or give this run another name= (single runs)")
    if prior.status == "completed" and continuing and req.resume != "auto":
        raise UserError(f"{where} already completed with this config ({prior.stop_reason} after "
                        f"{prior.epochs} epochs): resuming it unchanged would replay the same "
                        f"epochs to the same end; extend it with more train.epochs or "
                        f"train.patience (a new run {req.name}+epochs<N>), or retrain it with "
                        f"force=true")
    if prior.status not in ("completed", "trained") and not continuing and disk.has_last:
        state = f"was {disk.status}" if disk.stale else f"is {prior.status}"
        raise UserError(f"{where} {state} at epoch {prior.epochs} and left "
                        f"{disk.checkpoint_dir / 'last.pt'}: continue it with resume=auto, or "
                        f"start it over with force=true")
    return prior
