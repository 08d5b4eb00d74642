"""A run's lineage, its identity: the segments that trained it, each with its config (the part
that decides results), the hashes of its data and the checkpoint it started from.

A fresh run has one segment without a parent. Resuming with the config a checkpoint was trained
with continues that run (same name, same lineage); resuming with any other setting, or under
another ``name=``, starts a branch: a new run whose lineage is the checkpoint's plus a segment
naming the checkpoint (path, sha256 of its content, epoch, step, W&B run id), named
``<parent>+<changed keys>`` (``mlp-ot-moons-none+epochs200``).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowstudy.checkpoint import Checkpoint
from flowstudy.config import (
    GROUP_SCHEMAS,
    Config,
    differences,
    identity,
    leaves,
    name_suffix,
    short_name,
    to_dict,
)
from flowstudy.data.fingerprint import short
from flowstudy.errors import UserError

log = logging.getLogger("flowstudy")


def segment(cfg: Config, data: dict[str, Any], parent: dict[str, Any] | None) -> dict[str, Any]:
    return {"config": identity(to_dict(cfg)), "data": data, "parent": parent}


def lineage_of(lineage: list[dict[str, Any]] | None,
               config: dict[str, Any]) -> list[dict[str, Any]]:
    """The lineage a checkpoint or result.json records; files from before lineages were
    recorded count as one segment of their config, data unknown."""
    return lineage or [{"config": identity(config), "data": None, "parent": None}]


@dataclass
class Start:
    """Who this run is: its name, its lineage, and whether it branches off its checkpoint."""

    name: str
    lineage: list[dict[str, Any]]
    branch: bool = False  # True: a new run from the checkpoint (a W&B fork), not a continuation


def _changes(current: dict[str, Any], parent: dict[str, Any]) -> dict[str, Any]:
    """Leaves of an identity config that differ from the parent's, a group option by its group;
    keys the parent lacks were added to flowstudy after it was saved, and are no change."""
    before = leaves(parent)
    return {(k.removesuffix(".name") if k.removesuffix(".name") in GROUP_SCHEMAS else k): v
            for k, v in leaves(current).items() if k in before and before[k] != v}


def resumed_start(cfg: Config, data: dict[str, Any], ckpt: Checkpoint,
                  path: str | os.PathLike[str]) -> Start:
    """The run that ``resume=path`` makes: the checkpoint's own run continued, or a branch."""
    saved = ckpt.config
    parent_name, parent = saved["name"], lineage_of(ckpt.lineage, saved)
    if cfg.seed != saved["seed"]:
        raise UserError(f"seed={cfg.seed}: a resumed run continues the random state of "
                        f"{path} (trained with seed={saved['seed']}), so it cannot take another "
                        f"seed; drop seed= to resume, or train a fresh run (no resume=) for "
                        f"seed {cfg.seed}")
    before = parent[-1]["data"]
    if before is not None and differences(before, data):
        what = (f"dataset.path={cfg.dataset.path}: its content changed since {path} was trained "
                f"on it (sha256 {short(before['sha256'])} -> {short(data['sha256'])})"
                if "sha256" in before and "sha256" in data else
                f"resume={path}: trained on other data ({'; '.join(differences(before, data))})")
        raise UserError(f"{what}; resume needs the data it was trained on")
    current = identity(to_dict(cfg))
    changes = _changes(current, parent[-1]["config"])
    if not changes and cfg.name in (None, parent_name):
        return Start(parent_name, parent)
    name = cfg.name or short_name(parent_name + "+" + name_suffix(changes, leaves(current))[1:])
    ancestor = {"name": parent_name, "checkpoint": str(path), "sha256": ckpt.sha256,
                "epoch": ckpt.epoch, "step": ckpt.step, "wandb_run_id": ckpt.wandb_run_id}
    log.info("resume=%s with %s: a new run %s branching off %s at epoch %d", path,
             ", ".join(f"{k}={v}" for k, v in changes.items()) or "another name", name,
             parent_name, ancestor["epoch"])
    return Start(name, [*parent, segment(cfg, data, ancestor)], branch=True)


def describe(lineage: list[dict[str, Any]]) -> str:
    """``trained from scratch`` or ``branched off foo at step 24 (path, sha256 ab12...)``."""
    parent = lineage[-1]["parent"]
    if parent is None:
        return "trained from scratch"
    return (f"branched off {parent['name']} at step {parent['step']} ({parent['checkpoint']}, "
            f"sha256 {short(parent['sha256'])})")


def lineage_differences(saved: list[dict[str, Any]], current: list[dict[str, Any]]) -> list[str]:
    """What differs between two lineages, as ``key=saved (now: current)`` lines; data known on
    one side only (a result from before fingerprints) is not a difference."""
    def origin(seg: dict[str, Any]) -> Any:
        p = seg["parent"]
        return None if p is None else (p["name"], p["sha256"], p["step"])

    if [origin(s) for s in saved] != [origin(s) for s in current]:
        return [f"lineage={describe(saved)} (now: {describe(current)})"]
    out = []
    for before, now in zip(saved, current, strict=True):
        out += differences(before["config"], now["config"])
        if None not in (before["data"], now["data"]):
            out += differences(before["data"], now["data"], "data")
    return out


def changed_data(saved: list[dict[str, Any]],
                 current: list[dict[str, Any]]) -> tuple[str, str] | None:
    """(old, new) sha256 when two lineages differ only in their data file's content."""
    a, b = saved[-1]["data"], current[-1]["data"]
    if (a and b and "sha256" in a and "sha256" in b and a["sha256"] != b["sha256"]
            and len(saved) == len(current)
            and [s["config"] for s in saved] == [s["config"] for s in current]):
        return a["sha256"], b["sha256"]
    return None


def parent_metrics(study_dir: str | os.PathLike[str], lineage: list[dict[str, Any]]) -> Path:
    return Path(study_dir) / "runs" / lineage[-1]["parent"]["name"] / "metrics.jsonl"
