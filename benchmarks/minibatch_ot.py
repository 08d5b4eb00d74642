"""Cost of a minibatch-OT training step relative to an independent-pairs (``ot``) step.

flowstudy's real loop (``trainer.fit``) on the default MLP and moons, one torch thread for the
training step, batches 256 and 512. ``minibatch_ot`` runs with its background pairing
(``flow.prefetch``, default) and inline (``flow.prefetch=0``). Runs alternate, medians of
``--repeats``.

    python -m benchmarks.minibatch_ot [--steps 150] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

from benchmarks.common import config, seconds, table, write_results
from flowstudy.train import build
from flowstudy.trainer import fit


class NullSink:
    def log(self, metrics: dict[str, float], step: int) -> None:
        pass


def step_seconds(batch: int, steps: int, flow_overrides: list[str]) -> float:
    cfg = config([*flow_overrides, f"train.batch_size={batch}",
                  f"dataset.size={batch * steps + 512}", "dataset.n_val=256", "dataset.n_test=256",
                  "train.epochs=1",
                  "wandb.mode=disabled"])
    built = build(cfg, torch.device("cpu"))
    elapsed = seconds(lambda: fit(cfg.train, built.state, built.batches, built.val, NullSink(),
                                  Path("."), save=lambda path, state: None))
    return elapsed / steps


VARIANTS = {
    "ot": ["flow=ot"],
    "minibatch_ot": ["flow=minibatch_ot"],
    "minibatch_ot_inline": ["flow=minibatch_ot", "flow.prefetch=0"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batches", type=int, nargs="+", default=[256, 512])
    args = parser.parse_args()
    torch.set_num_threads(1)

    rows = []
    for batch in args.batches:
        times: dict[str, list[float]] = {name: [] for name in VARIANTS}
        step_seconds(batch, 10, VARIANTS["ot"])  # warm-up: imports, allocator
        for _ in range(args.repeats):
            for name, overrides in VARIANTS.items():
                times[name].append(step_seconds(batch, args.steps, overrides))
        ot = statistics.median(times["ot"])
        for name, values in times.items():
            rows.append({"batch": batch, "variant": name,
                         "ms_per_step": 1e3 * statistics.median(values),
                         "ratio_to_ot": statistics.median(values) / ot})
    print(table(rows, ["batch", "variant", "ratio_to_ot", "ms_per_step"]))
    path = write_results("minibatch_ot", {"steps": args.steps, "repeats": args.repeats,
                                          "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
