"""When samples collapse or over-spread, the distance metrics at the floor are not a win.

Samples pulled inward towards the data's bulk score FD, W2, precision and coverage at, or better
than, the real-data floor: on the bundled 384-d embeddings, real points scaled by 0.9 have FD
0.086 (floor 0.086), W2 0.93 (floor 0.97), precision 0.99 (floor 0.90) and coverage 1.00 (floor
0.96). Their density (2.9, floor 1.0), recall (0.61, floor 0.88) and norms (0.90, data 1.00)
give them away. This rule reads those, from a run's metrics alone (no tensors: torch-free, so a
report can apply it to any result.json), and says so.

The rules, each against the same metric of real points (``<key>_floor``):

- **collapse (k-NN)**: density more than ``DENSITY_MARGIN`` (0.3) above its floor while recall
  is more than ``RECALL_MARGIN`` (0.1) below its floor: samples crowd the dense parts of the
  data and miss the rest. The margins are issue 18's bar for a sample set that matches the
  data (density within 0.3 of its floor, recall within 0.1).
- **over-spread (k-NN)**: density more than 0.3 *below* its floor while recall is *not* more
  than 0.1 below its floor: samples lie between and beyond the real points, yet their large
  k-NN balls still swallow the real points (the flattery of recall that
  ``neighbours.precision_recall`` warns of). A set that is merely poor (density and recall both
  low) is not flagged: no metric calls it good.
- **norms**: the 1-d W1 between sample and test norms exceeds its floor by more than
  ``NORM_MARGIN`` (5%) of the data's mean norm (the floor's ``norm_mean``). It is *collapse* when
  the mean norm is below the data's by at least half that excess, *over-spread* when above by
  at least half, and otherwise *norms off* (the norms' spread differs, the mean is right). On
  unit-norm data a plain Gaussian fit has norms 1.00 ± 0.075 and W1 0.06: it trips this rule,
  as it should, since it is not on the sphere; x0.95 (W1 0.05) is at its edge.

What each kind flatters (``FLATTERED``), the metrics that read good *because* of it:
*collapse*, the metrics of ``NOT_A_WIN`` (FD, W2, precision, coverage), which a set pulled inward
scores at the floor, and density (crowded samples raise it above its floor, and the registry
ranks it higher-is-better); *over-spread*, recall alone (the samples' large balls swallow the
real points; spreading raises FD and W2 and lowers precision, density and coverage, so those
are not flattered); *norms off*, ``NOT_A_WIN`` (FD compares means and covariances only, so a set
with the data's mean norm but the wrong spread of norms can score it at the floor: a Gaussian
fit does). When a rule fires, every metric its kind flatters that sits at or better than its
floor is named "flagged, not a win": a lower-is-better metric within ``FLOOR_TOLERANCE`` (10%)
of its floor or below it; a higher-is-better one (precision, recall, density, coverage) within
``FRACTION_TOLERANCE`` (0.05) of its floor or above it. Missing or NaN metrics (an old
result.json, a diverged model) fire no rule.

The end-of-run log and ``flowstudy.report`` both apply these rules; the report flags, for a
configuration that a rule fired on (on any of its seeds), the "better than floor", "≈ floor" and
"beats gauss" of each metric its kind flatters, and a "best by" verdict it wins by such a metric.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

DENSITY_MARGIN = 0.3
RECALL_MARGIN = 0.1
NORM_MARGIN = 0.05  # of the data's mean norm
FLOOR_TOLERANCE = 0.10  # relative, for lower-is-better distances
FRACTION_TOLERANCE = 0.05  # absolute, for higher-is-better fractions
# The metrics a collapsed set can score at the floor: lower is better, then higher is better.
NOT_A_WIN: tuple[tuple[str, bool], ...] = (("fd", True), ("w2", True), ("precision", False),
                                           ("coverage", False))

Kind = Literal["collapse", "over-spread", "norms off"]
# What a set that a rule of each kind fired on can score at or better than the floor, no win.
FLATTERED: dict[Kind, tuple[tuple[str, bool], ...]] = {
    "collapse": (*NOT_A_WIN, ("density", False)),
    "over-spread": (("recall", False),),
    "norms off": NOT_A_WIN,
}


def flattered(kinds: Iterable[Kind]) -> dict[str, bool]:
    """The metrics (each with whether lower is better) that flags of ``kinds`` flatter."""
    return {key: lower for kind in kinds for key, lower in FLATTERED[kind]}


@dataclass(frozen=True)
class Flag:
    kind: Kind
    evidence: str  # the numbers that fired it

    def __str__(self) -> str:
        return f"{self.kind}: {self.evidence}"


def _get(metrics: Mapping[str, float], key: str) -> float:
    try:
        return float(metrics[key])
    except (KeyError, TypeError, ValueError):
        return math.nan


def collapse_flags(metrics: Mapping[str, float], which: str = "") -> list[Flag]:
    """The rules that fire for one set: the model's (``which=""``) or a yardstick's
    (``which="_baseline"``), each against the floor (``<key>_floor``)."""
    def pair(key: str) -> tuple[float, float]:
        return _get(metrics, key + which), _get(metrics, key + "_floor")

    flags = []
    (density, density_floor), (recall, recall_floor) = pair("density"), pair("recall")
    if density > density_floor + DENSITY_MARGIN and recall < recall_floor - RECALL_MARGIN:
        flags.append(Flag("collapse", f"density {density:.3g} is {density - density_floor:.2g} "
                          f"above its floor {density_floor:.3g} (limit {DENSITY_MARGIN:g}) and "
                          f"recall {recall:.3g} is {recall_floor - recall:.2g} below its floor "
                          f"{recall_floor:.3g} (limit {RECALL_MARGIN:g})"))
    elif density < density_floor - DENSITY_MARGIN and recall >= recall_floor - RECALL_MARGIN:
        flags.append(Flag("over-spread", f"density {density:.3g} is "
                          f"{density_floor - density:.2g} below its floor {density_floor:.3g} "
                          f"(limit {DENSITY_MARGIN:g}) while recall {recall:.3g} is not below "
                          f"its floor {recall_floor:.3g} by more than {RECALL_MARGIN:g}"))

    (w1, w1_floor), (mean, scale) = pair("norm_w1"), pair("norm_mean")
    std, std_floor = pair("norm_std")
    if scale > 0:  # and not NaN
        excess, shift = (w1 - w1_floor) / scale, (mean - scale) / scale
        if excess > NORM_MARGIN:
            kind: Kind = ("collapse" if shift <= -excess / 2 else
                          "over-spread" if shift >= excess / 2 else "norms off")
            flags.append(Flag(kind, f"sample norms {mean:.3g} ± {std:.2g}, real {scale:.3g} ± "
                                    f"{std_floor:.2g}: norm W1 {w1:.3g} is above its floor by "
                                    f"{excess:.1%} of the data's mean norm (limit "
                                    f"{NORM_MARGIN:.0%})"))
    return flags


def not_a_win(metrics: Mapping[str, float], kinds: Iterable[Kind], which: str = "") -> list[str]:
    """The metrics that flags of ``kinds`` flatter at or better than their floors, as "fd 0.086
    (floor 0.086)"."""
    named = []
    for key, lower_is_better in flattered(kinds).items():
        value, floor = _get(metrics, key + which), _get(metrics, key + "_floor")
        at_floor = (value <= floor + FLOOR_TOLERANCE * abs(floor) if lower_is_better
                    else value >= floor - FRACTION_TOLERANCE)
        if at_floor:  # False for NaN
            named.append(f"{key} {value:.4g} (floor {floor:.4g})")
    return named


def collapse_warnings(metrics: Mapping[str, float], which: str = "") -> list[str]:
    """One line per rule that fires, then, if any fired, one naming the metrics at or better
    than their floors as "flagged, not a win". Empty when the samples look neither collapsed
    nor over-spread."""
    flags = collapse_flags(metrics, which)
    lines = [str(flag) for flag in flags]
    named = not_a_win(metrics, [f.kind for f in flags], which) if flags else []
    if named:
        lines.append(f"{', '.join(named)} at or better than the floor: flagged, not a win")
    return lines
