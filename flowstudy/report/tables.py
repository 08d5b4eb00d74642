"""The report's statistics and tables: every metric cell with its interval over seeds, the
paired comparisons, the verdicts, as Markdown (CSV rows and the JSON document of the same
``Summary``: ``report.exports``; sampling cost against quality: ``report.evaluations``).
Torch-free.

Metrics and their directions and yardsticks come from the registry (``flowstudy.metrics``), so
a metric added there gets a column, an interval, comparisons and verdicts here by itself. Where
``flowstudy.metrics.collapse`` finds a configuration's samples collapsed or over-spread on a
seed, the metrics that situation flatters are flagged wherever the report would call them good.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

from flowstudy import stats
from flowstudy.labels import short_labels
from flowstudy.metrics import METRICS, QUALITY
from flowstudy.metrics import label as metric_label
from flowstudy.metrics.collapse import Kind, collapse_flags, flattered
from flowstudy.report.rows import Row

# Ranked columns, then those shown for context only (never used to pick a best row).
RANKED = tuple(q for q in QUALITY if METRICS[q].direction is not None)
CONTEXT = tuple(q for q in QUALITY if METRICS[q].direction is None)
# Every metric a row gets statistics for: the validation loss, then the sample metrics.
STATISTICS = ("best_val_loss", *RANKED, *CONTEXT)
COSTS = (("epochs", "epochs"), ("steps", "steps"), ("params", "params"), ("flops", "FLOPs"),
         ("wall_time_s", "wall s"))
ALL_PAIRS = 8  # up to this many ranked configurations every pair is compared; beyond, each
# against the leader
# The yardstick words (flowstudy.stats.against_yardstick) that call a metric good.
WINS = ("beats gauss", "better than floor", "≈ floor")


def decimals(iv: stats.Interval | None) -> int:
    """Decimals that show the interval's half-width to two significant digits (0.120 [0.081,
    0.159]); 4 without an interval."""
    if iv is None or not iv.known or iv.high == iv.low:
        return 4
    half = (iv.high - iv.low) / 2  # type: ignore[operator]
    return min(6, max(0, 1 - math.floor(math.log10(half))))


def number(x: float, places: int = 4) -> str:
    if x != 0 and not 1e-4 <= abs(x) < 1e6 and places >= 4:
        return f"{x:.3g}"
    return f"{x:.{places}f}"


def interval_text(iv: stats.Interval | None, places: int | None = None) -> str:
    """``0.120 [0.081, 0.159]``; the mean alone for one seed; ``-`` for none."""
    if iv is None:
        return "-"
    places = decimals(iv) if places is None else places
    if not iv.known:
        return number(iv.mean, places)
    return (f"{number(iv.mean, places)} [{number(iv.low, places)}, "  # type: ignore[arg-type]
            f"{number(iv.high, places)}]")  # type: ignore[arg-type]


@dataclass
class Cell:
    """One metric of one configuration: its value per seed, the interval of their mean, its
    yardsticks (each measured beside each run) and the plain verdicts against them."""

    key: str
    seeds: dict[int, float]
    interval: stats.Interval | None
    floor: stats.Interval | None = None
    baseline: stats.Interval | None = None
    vs_floor: str | None = None
    vs_gauss: str | None = None

    def text(self) -> str:
        """``0.120 [0.081, 0.159] (floor 0.089, gauss 0.500)``."""
        value = interval_text(self.interval)
        if self.interval is None:
            return value
        places = decimals(self.interval)
        marks = [f"{name} {number(iv.mean, places)}"
                 for name, iv in (("floor", self.floor), ("gauss", self.baseline)) if iv]
        return value if not marks else f"{value} ({', '.join(marks)})"

    def to_dict(self) -> dict[str, Any]:
        iv = self.interval
        out: dict[str, Any] = {
            "mean": iv and iv.mean, "ci": iv and [iv.low, iv.high], "n": iv.n if iv else 0,
            "sd": iv and iv.sd, "seeds": list(self.seeds), "values": list(self.seeds.values())}
        for name, yard in (("floor", self.floor), ("baseline", self.baseline)):
            if yard is not None:
                out[name] = {"mean": yard.mean, "ci": [yard.low, yard.high], "n": yard.n}
        out["vs_floor"], out["vs_gauss"] = self.vs_floor, self.vs_gauss
        return out


def cell(row: Row, key: str, method: stats.Method = "t") -> Cell:
    seeds = row.by_seed(key)
    c = Cell(key, seeds, stats.interval(list(seeds.values()), method))
    metric = METRICS.get(key)
    if metric is None or c.interval is None:
        return c
    for kind, wanted in (("floor", metric.floor), ("baseline", metric.baseline)):
        yard = row.by_seed(f"{key}_{kind}") if wanted else {}
        if not yard:
            continue
        setattr(c, kind, stats.interval(list(yard.values()), method))
        if metric.direction is not None:
            word, _ = stats.against_yardstick(seeds, yard, metric.direction, kind, method)
            setattr(c, "vs_floor" if kind == "floor" else "vs_gauss", word)
    return c


@dataclass
class Shape:
    """One kind of collapse flag (flowstudy.metrics.collapse) over a configuration's runs."""

    kind: Kind
    seeds: list[int | None]  # those of the runs it fired on
    runs: int  # the configuration's
    evidence: list[str]  # the numbers of each rule of this kind, on the first run it fired on

    @property
    def note(self) -> str:
        """``over-spread``, or ``over-spread on 1/3 seeds`` where the seeds disagree."""
        return self.kind if len(self.seeds) == self.runs else \
            f"{self.kind} on {len(self.seeds)}/{self.runs} seeds"

    def text(self) -> str:
        seeds = ["?" if seed is None else str(seed) for seed in self.seeds]  # a seedless run
        return (f"{self.kind} on {len(seeds)}/{self.runs} seeds ({', '.join(seeds)}); seed "
                f"{seeds[0]}: " + "; ".join(self.evidence))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "seeds": self.seeds, "runs": self.runs,
                "evidence": self.evidence}


def shapes(row: Row) -> list[Shape]:
    """The kinds of collapse flag that fire on any of the row's runs, in the order they fire."""
    seeded = [(seed if isinstance(seed := r.config.get("seed"), int) else None, r)
              for r in row.runs]
    fired = [(seed, collapse_flags(r.metrics)) for seed, r in
             sorted(seeded, key=lambda sr: (sr[0] is None, sr[0] or 0))]
    out = []
    for kind in dict.fromkeys(f.kind for _, flags in fired for f in flags):
        on = [(seed, [f.evidence for f in flags if f.kind == kind]) for seed, flags in fired
              if any(f.kind == kind for f in flags)]
        out.append(Shape(kind, [seed for seed, _ in on], len(row.runs), on[0][1]))
    return out


@dataclass
class Summary:
    """Everything the report says about a group, computed once: a Cell per row and metric, the
    labels that tell the rows apart, each metric's comparisons and verdict, the best row."""

    rows: list[Row]
    metric: str
    method: str
    labels: list[str]
    cells: list[dict[str, Cell]]
    comparisons: dict[str, list[stats.Comparison]] = field(default_factory=dict)
    verdicts: dict[str, stats.Verdict] = field(default_factory=dict)
    best: int | None = None  # the winner by ``metric``, when there is one
    shapes: list[list[Shape]] = field(default_factory=list)  # per row: its collapse flags

    @property
    def verdict(self) -> stats.Verdict | None:
        return self.verdicts.get(self.metric)

    def flags(self, i: int, key: str) -> str | None:
        """``over-spread`` (or ``collapse on 1/3 seeds``, ...) where row ``i``'s samples are in
        a situation that flatters ``key`` (flowstudy.metrics.collapse.FLATTERED); else None."""
        notes = [sh.note for sh in self.shapes[i] if key in flattered([sh.kind])]
        return ", ".join(notes) or None

    def flagged(self, i: int, key: str) -> str | None:
        """``flagged: over-spread``, or None."""
        notes = self.flags(i, key)
        return notes and f"flagged: {notes}"

    def verdict_flag(self, key: str) -> str | None:
        """The flags of the winner by ``key``, when its samples flatter ``key``."""
        v = self.verdicts.get(key)
        return None if v is None or v.winner is None else \
            self.flags(self.labels.index(v.winner), key)

    @property
    def celebrated(self) -> int | None:
        """The row shown bold: the winner by the metric, unless its win is flagged."""
        return None if self.verdict_flag(self.metric) else self.best

    def verdict_text(self, key: str) -> str:
        """The verdict's sentence, then, for a flagged winner, that it is no win."""
        text, flag = self.verdicts[key].text, self.verdict_flag(key)
        return text if flag is None else (f"{text}; flagged, not a win: its samples show "
                                          f"{flag}, which flatters {metric_label(key)}")

    def yardstick_words(self, i: int, key: str) -> list[str]:
        """Row ``i``'s words against gauss and the floor, each win that is flagged marked so."""
        c, flag = self.cells[i][key], self.flagged(i, key)
        return [f"{w} ({flag})" if flag and w in WINS else w
                for w in (c.vs_gauss, c.vs_floor) if w]


def summarise(rows: list[Row], metric: str, method: stats.Method = "t") -> Summary:
    labels = short_labels([(row.name, row.runs) for row in rows])
    if len(set(labels)) < len(labels):  # settings that print alike: the names tell them apart
        labels = [row.name for row in rows]
    s = Summary(rows, metric, method, labels,
                [{key: cell(row, key, method) for key in STATISTICS} for row in rows],
                shapes=[shapes(row) for row in rows])
    ranked = [i for i, row in enumerate(rows) if row.completed]
    for key in (metric, *(k for k in ("best_val_loss", *RANKED) if k != metric)):
        direction = METRICS[key].direction
        arms = {i: s.cells[i][key].seeds for i in ranked if s.cells[i][key].seeds}
        if len(arms) < 2 and key != metric:
            continue
        v = stats.verdict({labels[i]: arms[i] for i in arms}, key, direction,  # type: ignore
                          metric_label(key), method)  # type: ignore[arg-type]
        s.verdicts[key] = v
        by_label = {labels[i]: i for i in arms}
        if key == metric and v.winner is not None:
            s.best = by_label[v.winner]
        if len(arms) < 2:
            continue
        order = sorted(arms, key=lambda i: (1 if direction == "minimize" else -1)
                       * s.cells[i][key].interval.mean)  # type: ignore[union-attr]
        pairs = (list(combinations(order, 2)) if len(order) <= ALL_PAIRS
                 else [(order[0], j) for j in order[1:]])
        s.comparisons[key] = [stats.compare(arms[a], arms[b], key, direction,  # type: ignore
                                            (labels[a], labels[b]), method)
                              for a, b in pairs]
    return s


def _cost(row: Row, key: str, digits: int = 4) -> str:
    """``mean ± std`` over the row's runs; counts as integers, equal values without a spread."""
    values = row.values(key)
    if not values:
        return "-"
    mean, std = statistics.fmean(values), row.std(key)
    if key in ("epochs", "steps", "params", "flops"):
        text = f"{mean:,.0f}" if key != "flops" else f"{mean:.3g}"
        return text if len(set(values)) == 1 else f"{text} ± {std:.{digits}g}"
    digits = 2 if key == "wall_time_s" else digits
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")


def swept_text(row: Row) -> str:
    keys = sorted({k for r in row.runs for k in r.swept if k != "seed" or len(row.runs) == 1})
    return ", ".join(f"{k}={row.runs[0].swept[k]}" for k in keys if k in row.runs[0].swept)


def header() -> list[str]:
    return ["name", "swept", "seeds", "status", "epochs", "steps", "stop", "sample shape",
            "best val loss",
            *(f"{q} (floor, gauss)" for q in (*RANKED, *CONTEXT)), "params", "FLOPs", "wall s"]


def table_cells(s: Summary) -> list[list[str]]:
    out = []
    for row, cells, found in zip(s.rows, s.cells, s.shapes, strict=True):
        out.append([row.name, swept_text(row), str(len(row.runs)),
                    "/".join(sorted({r.shown_status for r in row.runs})),
                    _cost(row, "epochs"), _cost(row, "steps"),
                    "/".join(sorted({r.stop_reason or "-" for r in row.runs})),
                    ", ".join(f"{sh.kind} {len(sh.seeds)}/{sh.runs}" for sh in found) or "-",
                    *(cells[k].text() for k in STATISTICS),
                    _cost(row, "params"), _cost(row, "flops"), _cost(row, "wall_time_s")])
    return out


def table(rows: list[Row], metric: str, method: stats.Method = "t",
          summary: Summary | None = None) -> tuple[list[str], list[list[str]], int | None]:
    """Header, cells and the index of the row that wins by ``metric`` outside the noise (None
    when no row does, or when its samples flatter that metric)."""
    s = summary or summarise(rows, metric, method)
    return header(), table_cells(s), s.celebrated


def markdown(head: list[str], cells: list[list[str]], best: int | None) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, line in enumerate(cells):
        shown = [f"**{c}**" if i == best and c not in ("-", "") else c for c in line]
        lines.append("| " + " | ".join(shown) + " |")
    return "\n".join(lines)


def _better(key: str) -> str:
    return "lower is better" if METRICS[key].lower_is_better else "higher is better"


def comparisons_markdown(s: Summary, key: str) -> str:
    """One line per pair of configurations with an interval: A - B with it, P(A better), paired
    wins, and what it means."""
    known = [c for c in s.comparisons.get(key, []) if c.difference and c.difference.known]
    if not known:
        return ("No pair has an interval: a configuration needs two seeds (e.g. `seed=0,1,2`) "
                "to be compared.")
    lines = ["| A | B | seeds | A − B [95% interval] | P(A better) | A wins | reading |",
             "|---|---|---|---|---|---|---|"]
    for c in known:
        d = c.difference
        seeds = f"{c.shared} paired" if c.paired else "unpaired"
        wins = f"{c.wins}/{c.shared}" if c.wins is not None else "-"
        p = "-" if c.p_improvement is None else f"{c.p_improvement:.2f}"
        if c.a_better or c.b_better:
            reading = f"{c.a if c.a_better else c.b} better"
        elif (n := c.seeds_to_settle) is not None:
            reading = f"no clear difference; ~{n} seeds would settle it"
        else:
            reading = "no clear difference"
        lines.append(f"| {c.a} | {c.b} | {seeds} | {interval_text(d)} | {p} | {wins} | "
                     f"{reading} |")
    return "\n".join(lines)


def yardsticks_markdown(s: Summary) -> str | None:
    """Per configuration and metric: beats the Gaussian baseline or not, at the floor or not."""
    keys = [k for k in RANKED if METRICS[k].floor or METRICS[k].baseline
            if any(c[k].vs_floor or c[k].vs_gauss for c in s.cells)]
    if not keys:
        return None
    lines = ["| configuration | " + " | ".join(metric_label(k) for k in keys) + " |",
             "|" + "---|" * (len(keys) + 1)]
    for i, label in enumerate(s.labels):
        words = [", ".join(s.yardstick_words(i, k)) or "-" for k in keys]
        lines.append(f"| {label} | " + " | ".join(words) + " |")
    return "\n".join(lines)


def shape_lines(s: Summary) -> list[str]:
    """Per flagged configuration: each kind of flag, its seeds and numbers, and the metrics it
    flatters that the report would otherwise call good."""
    lines = []
    for i, (label, found) in enumerate(zip(s.labels, s.shapes, strict=True)):
        if not found:
            continue
        named = [metric_label(k) for k in RANKED if s.flagged(i, k)
                 and any(w in WINS for w in (s.cells[i][k].vs_gauss, s.cells[i][k].vs_floor))]
        lines.append(f"{label}: " + "; ".join(sh.text() for sh in found)
                     + (f". Flagged, not a win: {', '.join(named)}" if named else ""))
    return lines


def shape_markdown(s: Summary) -> str | None:
    lines = shape_lines(s)
    if not lines:
        return None
    return ("## Collapse and over-spread\n\nThe samples of these configurations look collapsed "
            "(crowding the data's dense parts: density above its floor, recall below) or "
            "over-spread (between and beyond the real points: density below its floor, recall "
            "flattered), by the rule of `flowstudy/metrics/collapse.py` on each run's metrics. "
            "What the situation flatters is flagged wherever this report would call it good: "
            "under collapse FD, W2, precision, coverage and density, under over-spread recall "
            "(`FLATTERED` there).\n\n"
            + "\n".join(f"- {line}" for line in lines))


def summary_markdown(s: Summary) -> str:
    """The verdict under the table, the collapse flags, the comparisons by the report's metric,
    every metric's verdict, and the yardstick verdicts."""
    parts = []
    if s.verdict is not None:
        text = s.verdict_text(s.metric)
        parts.append(f"**{text}**" if s.celebrated is not None else text)
    shape = shape_markdown(s)
    if shape:
        parts.append(shape)
    key = s.metric
    if s.comparisons.get(key):
        parts.append(
            f"## Comparisons by {metric_label(key)} ({_better(key)})\n\n"
            "A − B is paired by seed where the two share seeds (the per-seed differences' "
            "t interval), else Welch's; P(A better) is rliable's probability of improvement "
            "(over every pair of a run of A and a run of B, ties half); A wins: the shared seeds "
            "on which A is better.\n\n" + comparisons_markdown(s, key))
    others = [s.verdict_text(k) for k in s.verdicts if k != s.metric]
    if others:
        parts.append("## Verdicts by the other metrics\n\nEach on its own at 95%: across ten "
                     "metrics, one spurious \"best\" in a report is no surprise.\n\n"
                     + "\n".join(f"- {t}" for t in others))
    yard = yardsticks_markdown(s)
    if yard:
        parts.append("## Against the yardsticks\n\nFrom the paired interval of the metric minus "
                     "its yardstick over seeds: beats gauss / ≈ gauss / worse than gauss (the "
                     "Gaussian fitted to train), ≈ floor / worse than floor (real vs real "
                     "data); \"(flagged: ...)\" marks a win that collapsed or over-spread "
                     "samples flatter (above).\n\n" + yard)
    return "\n\n".join(parts)
