"""The rule language of the config: what a field allows, declared beside the field and said once
for the one-line error, ``--help`` and docs/configuration.md."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any


@dataclass(frozen=True)
class Rule:
    text: str  # as the error and --help say it: "a float > 0"
    ok: Callable[[Any], bool]

    def or_null(self, meaning: str) -> Rule:
        return Rule(f"{self.text}, or null {meaning}", lambda v: v is None or self.ok(v))

    def explained(self, effect: str) -> Rule:
        """The same rule, its text followed by what the value does (for --help)."""
        return Rule(f"{self.text}; {effect}", self.ok)


def checked(default: Any, rule: Rule) -> Any:
    """A dataclass field with its rule (a list field: ``field(..., metadata={"rule": rule})``)."""
    return field(default=default, metadata={"rule": rule})


def ints(low: int, high: int | None = None, why: str = "") -> Rule:
    text = f"an integer >= {low}" if high is None else f"an integer from {low} to {high}"
    return Rule(text + (f" ({why})" if why else ""),
                lambda v: v >= low and (high is None or v <= high))


# Every float rule also requires a finite value: inf passes "> 0" but trains nothing sensible.
def floats(low: float, high: float | None = None, *, open_low: bool = False,
           open_high: bool = False) -> Rule:
    if high is None:
        text = f"a float {'>' if open_low else '>='} {low:g}"
    else:
        text = f"a float in {'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"

    def ok(v: float) -> bool:
        return (math.isfinite(v) and (v > low if open_low else v >= low)
                and (high is None or (v < high if open_high else v <= high)))

    return Rule(text, ok)


def one_of(*choices: str) -> Rule:
    return Rule(f"one of {', '.join(choices)}", lambda v: v in choices)


POSITIVE = ints(1)
POSITIVE_FLOAT = floats(0, open_low=True)
FINITE_FLOAT = Rule("a finite float", math.isfinite)
NON_NEGATIVE_FLOAT = floats(0)
# What the EMA's decay is at step k, said where --help shows it (flowstudy.ema.warmup_decay).
EMA_DECAY = Rule("a float in (0, 1), the decay once the warmup (train.ema_power) reaches it",
                 floats(0, 1, open_low=True, open_high=True).ok)
EMA_POWER = POSITIVE_FLOAT.or_null("for no warmup").explained(
    "the decay at step k is min(ema_decay, 1 - (1 + k) ** -ema_power): at 2/3, ema_decay=0.999 "
    "takes effect from step 31,622 and 0.9999 from 999,999, both decaying alike before")
# numpy seeds are 32-bit; a run also seeds a generator with seed + 1.
SEED = ints(0, 2**32 - 2, "numpy's seed range")
# Evaluation sizes: W2 solves an exact n x n assignment and the Frechet distance eigendecomposes
# D x D matrices, both in float64; beyond these they take tens of GB or hours.
MAX_EVAL_POINTS = 10_000
MAX_EVAL_DIM = 8_192
# k-NN precision/recall needs k + 1 = 4 points in each set it scores.
MIN_EVAL_POINTS = 4
# A sample monitor's C2ST needs 2 points of each set in each of its 5 folds.
MIN_MONITOR_POINTS = 10
# A path component on every filesystem, and never "." or "..".
_NAME_CHARS = "letters, digits and . _ - + = , starting with a letter or digit"
_NAME = r"[A-Za-z0-9][A-Za-z0-9._+=,-]"
RUN_NAME = Rule(f"a run name of {_NAME_CHARS} (at most 128 characters)",
                lambda v: re.fullmatch(_NAME + "{0,127}", v) is not None)
# A derived run name holds the data file's stem, so the stem keeps the run name's characters.
NAMED_FILE = Rule(f"a file whose name, less its suffix, is {_NAME_CHARS} (the derived run name "
                  f"holds it); rename the file, or set name=",
                  lambda v: re.fullmatch(_NAME + "*", PurePath(v).stem) is not None)
# Split sizes: auto (null) or explicit.
N_VAL = POSITIVE.or_null("for a tenth of the rows (100 to 2,000)")
N_TEST = ints(MIN_EVAL_POINTS, why="k-NN precision/recall").or_null(
    "for a tenth of the rows (100 to 2,000)")
# W&B refuses these after training has started; say so before.
WANDB_PROJECT = Rule("at most 128 characters, none of / \\ # ? % :",
                     lambda v: 0 < len(v) <= 128 and not set(v) & set("/\\#?%:"))
WANDB_TAGS = Rule("a list of tags of 1 to 64 characters each",
                  lambda v: all(0 < len(t) <= 64 for t in v))

TIME_SAMPLINGS = ("uniform", "logit_normal", "beta")  # = flowstudy.flows.times (a test checks)
SOLVERS = ("euler", "midpoint", "rk4", "dopri5")  # = flowstudy.flows.solvers (a test checks)
SOURCES_2D = ("8gaussians", "checkerboard", "circles", "moons", "scurve", "swissroll")
