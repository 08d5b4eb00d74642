"""Errors a user can fix, and their one-line descriptions.

The CLI prints one line for these instead of a traceback (``HYDRA_FULL_ERROR=1`` restores it);
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from hydra.errors import (
    ConfigCompositionException,
    MissingConfigException,
    OverrideParseException,
)
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    MissingMandatoryValue,
    OmegaConfBaseException,
)


class UserError(Exception):
    """A mistake in the input (config, files, paths) rather than in flowstudy."""


class ConfigError(UserError, ValueError):
    """A config value that is well-typed but not allowed; names the key, the value and the rule."""

    def __init__(self, key: str, value: Any, allowed: str) -> None:
        super().__init__(f"{key}={value!r} is not allowed: {allowed}")
        self.key, self.value, self.allowed = key, value, allowed


class Busy(UserError):
    """The run is being trained by another process right now (its lock is held)."""


class Refused(BaseException):
    """A user error, described in one line, raised where Hydra would swallow an Exception (its
    callbacks) so that it still stops the command."""


class Diverged(UserError):
    """Training produced non-finite gradients ``train.nan_patience`` steps in a row."""


# Hydra plugins that flowstudy's optional extras install.
PLUGIN_EXTRAS = {"hydra/sweeper=optuna": "optuna", "hydra/launcher=submitit_slurm": "slurm",
                 "hydra/launcher=submitit_local": "slurm"}


def output_dir_line(e: OSError) -> str:
    """Hydra's output directory (or the sweep's) could not be made or written."""
    return (f"{e.filename}: {e.strerror}; hydra.run.dir (hydra.sweep.dir with -m) must be a "
            f"directory that can be created and written")


def _first_line(text: object) -> str:
    return str(text).strip().splitlines()[0] if str(text).strip() else ""


def _omegaconf_line(err: OmegaConfBaseException) -> str:
    key = err.full_key or err.key
    if isinstance(err, MissingMandatoryValue) and key:
        return f"{key} has no default and must be set: add {key}=..."
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
    if isinstance(ex, OverrideParseException):
        hint = "quote a value holding spaces, brackets or commas, e.g. 'name=\"a b\"'"
        if "=" not in ex.override and not ex.override.startswith(("~", "+")):
            return f"{ex.override!r} is not an override (key=value); {hint}"
        # "Error parsing override 'x=(1'\nextraneous input '(' expecting {<EOF>, ...}"
        lines = str(ex).strip().splitlines()
        detail = (lines[1].split(" expecting ")[0] if lines[0].startswith("Error parsing")
                  and len(lines) > 1 else "syntax error")
        return f"{ex.override!r} is not a valid override ({detail}); {hint}"
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
        if str(ex).startswith("Ambiguous value for argument"):
            override = _first_line(ex).removeprefix("Ambiguous value for argument ").strip("'")
            return (f"{override}: a comma means a sweep; add -m to run one job per value, "
                    f"or write a list as key=[a,b]")
        return _first_line(ex)
    if isinstance(ex, OmegaConfBaseException):
        return _omegaconf_line(ex)
    return None
