"""The config groups and their options as they lie in ``conf/``: one YAML file per option."""

from __future__ import annotations

import dataclasses
from importlib.resources import files
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from flowstudy.config.schemas import GROUP_SCHEMAS


def _conf_dir() -> Path:
    """``conf/`` of the checkout (source tree or editable install), else the copy a wheel carries
    inside the package (pyproject.toml maps ``conf/`` to ``flowstudy/conf``)."""
    checkout = Path(__file__).resolve().parents[2] / "conf"
    return checkout if checkout.is_dir() else Path(str(files("flowstudy") / "conf"))


CONF_DIR = _conf_dir()


def group_names() -> list[str]:
    return sorted(d.name for d in CONF_DIR.iterdir() if d.is_dir())


def group_options(group: str) -> tuple[str, ...]:
    """The options of a config group: its YAML files, which name themselves in ``name``."""
    return tuple(sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml")))


def group_options_text() -> str:
    return "\n".join(f"{g}: {', '.join(group_options(g))}" for g in group_names())


def option_yaml(group: str, option: str) -> tuple[str, dict[str, Any]]:
    """A group option's schema name (``- /<schema>@_here_`` in its defaults) and its values."""
    yaml = OmegaConf.to_container(OmegaConf.load(CONF_DIR / group / f"{option}.yaml"))
    return yaml.pop("defaults")[0].strip("/").removesuffix("@_here_"), yaml


def option_defaults(group: str, option: str) -> dict[str, Any]:
    """A group option as its YAML composes it: its schema's defaults, then the YAML's values."""
    schema, values = option_yaml(group, option)
    return {**dataclasses.asdict(GROUP_SCHEMAS[group][schema]()), **values}
