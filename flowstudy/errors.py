"""Errors a user can fix, and their one-line descriptions.

The CLI prints one line for these instead of a traceback (``HYDRA_FULL_ERROR=1`` restores it);
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException


class UserError(Exception):
    """A mistake in the input (config, files, paths) rather than in flowstudy."""


class ConfigError(UserError, ValueError):
    """A config value that is well-typed but not allowed; names the key, the value and the rule."""

    def __init__(self, key: str, value: Any, allowed: str) -> None:
        super().__init__(f"{key}={value!r} is not allowed: {allowed}")
        self.key, self.value, self.allowed = key, value, allowed


class Diverged(UserError):
    """Training produced non-finite gradients ``train.nan_patience`` steps in a row."""


# Hydra plugins that flowstudy's optional extras install.
PLUGIN_EXTRAS = {"hydra/sweeper=optuna": "optuna", "hydra/launcher=submitit_slurm": "slurm",
                 "hydra/launcher=submitit_local": "slurm"}


def _first_line(text: object) -> str:
    return str(text).strip().splitlines()[0] if str(text).strip() else ""


def _omegaconf_line(err: OmegaConfBaseException) -> str:
    key = err.full_key or err.key
    if isinstance(err, (ConfigAttributeError, ConfigKeyError)) and dataclasses.is_dataclass(
        err.object_type
    ):
        allowed = ", ".join(f.name for f in dataclasses.fields(err.object_type))
        return f"{key} is not a known key; allowed here: {allowed}"
    return f"{key}: {_first_line(err.msg or err)}" if key else _first_line(err.msg or err)


def describe(ex: BaseException) -> str | None:
    """One line for a user error, or None for an exception that should keep its traceback."""
    if isinstance(ex, UserError):
        return str(ex)
    if isinstance(ex, OmegaConfBaseException) and isinstance(ex.__context__, UserError):
        return str(ex.__context__)  # raised in one of flowstudy's resolvers
    if isinstance(ex, MissingConfigException) and ex.missing_cfg_file and ex.options is not None:
        group, _, option = ex.missing_cfg_file.rpartition("/")
        extra = PLUGIN_EXTRAS.get(f"{group}={option}")
        hint = f' (it comes with the {extra} extra: pip install -e ".[{extra}]")' if extra else ""
        return f"{group}={option} is not an option; available: {', '.join(ex.options)}{hint}"
    if isinstance(ex, ConfigCompositionException):
        if isinstance(ex.__cause__, OmegaConfBaseException):
            return _omegaconf_line(ex.__cause__)
        return _first_line(ex)
    if isinstance(ex, OmegaConfBaseException):
        return _omegaconf_line(ex)
    return None
