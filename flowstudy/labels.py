"""What tells configurations apart: short labels from the settings in which their configs
differ (``arch=dit``, ``lr=0.0005, steps=16``). Torch-free: the report's tables and its figures
both name configurations this way."""

from __future__ import annotations

import json
from typing import Any

from flowstudy.config import identity
from flowstudy.results import RunResult

Configs = list[tuple[str, list[RunResult]]]


def flat(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def differing(flats: list[dict[str, Any]]) -> list[str]:
    """The keys whose values are not the same in all of ``flats``."""
    keys = sorted({k for f in flats for k in f})
    return [k for k in keys if len({json.dumps(f.get(k), default=str) for f in flats}) > 1]


def difference_labels(configs: list[dict[str, Any]]) -> list[str]:
    """``arch=dit``, ``n_train=500``, ``lr=0.0005, steps=16``: the settings in which each config
    differs from the others (a group option by its name alone; a sampled 0.0012520653814999472
    as 0.001252); empty strings when they do not differ."""
    flats = [flat(c) for c in configs]
    keys = differing(flats)
    options = {k.rsplit(".", 1)[0] for k in keys if k.endswith(".name")}
    shown = [k for k in keys if k.endswith(".name") or k.rsplit(".", 1)[0] not in options]
    short = [k.rsplit(".", 1)[0] if k.endswith(".name") else k.rsplit(".", 1)[-1] for k in shown]
    names = [s if short.count(s) == 1 else k for k, s in zip(shown, short, strict=True)]

    def text(value: Any) -> str:
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    return [", ".join(f"{n}={text(f.get(k))}" for n, k in zip(names, shown, strict=True))
            for f in flats]


def seedless(run: RunResult, ignore: tuple[str, ...] = ()) -> dict[str, Any]:
    """The run's identity less its seed and ``ignore`` (``section`` or ``section.leaf``)."""
    out = {k: v for k, v in identity(run.config).items() if k != "seed" and k not in ignore}
    for key in ignore:
        section, _, leaf = key.partition(".")
        if leaf and isinstance(out.get(section), dict):
            out[section] = {k: v for k, v in out[section].items() if k != leaf}
    return out


def short_labels(configs: Configs) -> list[str]:
    """What tells the configurations apart (their names when nothing in their configs does)."""
    labels = difference_labels([seedless(runs[0]) for _, runs in configs])
    return [label or name for label, (name, _) in zip(labels, configs, strict=True)]
