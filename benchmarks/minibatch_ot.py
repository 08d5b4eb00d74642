"""Cost of a minibatch-OT training step relative to an independent-pairs (``ot``) step.

flowstudy's real loop (``trainer.fit``) on the default MLP and moons, one torch thread for the
training step, batches 256 and 512. ``minibatch_ot`` runs with its background pairing
(``flow.prefetch``, default) and inline (``flow.prefetch=0``). Beside them, when installed (the
``bench`` extra, then ``pip install --no-deps torchcfm==1.0.7``), the reference people use:
torchcfm's ``ExactOptimalTransportConditionalFlowMatcher`` against its ``ConditionalFlowMatcher``
in a plain loop on the same model and batch. Runs alternate, medians of ``--repeats``.

    python -m benchmarks.minibatch_ot [--steps 150] [--repeats 3] [--smoke] [--save [DIR]]
"""

from __future__ import annotations

import importlib.util
import statistics
from pathlib import Path

import torch

from benchmarks.common import config, publish, seconds
from benchmarks.common import parser as benchmark_parser
from flowstudy.build import build
from flowstudy.checkpoint import Checkpoint
from flowstudy.trainer import Checkpoints, fit


class NullSink:
    def log(self, metrics: dict[str, float], step: int) -> None:
        pass


class Unsaved(Checkpoints):
    """Checkpoints that are not written: the step is timed, not the disk."""

    def save(self, name: str, checkpoint: Checkpoint) -> None:
        pass


def step_seconds(batch: int, steps: int, flow_overrides: list[str]) -> float:
    cfg = config([*flow_overrides, f"train.batch_size={batch}",
                  f"dataset.size={batch * steps + 512}", "dataset.n_val=256", "dataset.n_test=256",
                  "train.epochs=1",
                  "wandb.mode=disabled"])
    built = build(cfg, torch.device("cpu"))
    elapsed = seconds(lambda: fit(built.cfg.train, built.state, built.batches, built.val,
                                  NullSink(), Unsaved(Path("."))))
    return elapsed / steps


def torchcfm_step_seconds(batch: int, steps: int, exact_ot: bool) -> float:
    from torchcfm.conditional_flow_matching import (
        ConditionalFlowMatcher,
        ExactOptimalTransportConditionalFlowMatcher,
    )

    cfg = config(["train.batch_size=256", "wandb.mode=disabled"])
    built = build(cfg, torch.device("cpu"))
    model, x = built.state.model, built.batches.train
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    matcher = (ExactOptimalTransportConditionalFlowMatcher if exact_ot
               else ConditionalFlowMatcher)(sigma=0.1)
    g = torch.Generator().manual_seed(0)

    def loop() -> None:
        for _ in range(steps):
            x1 = x[torch.randint(0, x.shape[0], (batch,), generator=g)]
            t, xt, ut = matcher.sample_location_and_conditional_flow(torch.randn_like(x1), x1)
            loss = torch.nn.functional.mse_loss(model(xt, t), ut)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    return seconds(loop) / steps


VARIANTS = {
    "ot": ["flow=ot"],
    "minibatch_ot": ["flow=minibatch_ot"],
    "minibatch_ot_inline": ["flow=minibatch_ot", "flow.prefetch=0"],
}


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batches", type=int, nargs="+", default=[256, 512])
    args = parser.parse_args()
    if args.smoke:
        args.steps, args.repeats, args.batches = 4, 1, [64]
    torch.set_num_threads(1)
    reference = importlib.util.find_spec("torchcfm") is not None

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
        if reference:  # torchcfm's OT-CFM relative to its own independent-pairs CFM
            cfm = [torchcfm_step_seconds(batch, args.steps, False) for _ in range(args.repeats)]
            exact = [torchcfm_step_seconds(batch, args.steps, True) for _ in range(args.repeats)]
            rows.append({"batch": batch, "variant": "torchcfm_cfm",
                         "ms_per_step": 1e3 * statistics.median(cfm), "ratio_to_ot": 1.0})
            rows.append({"batch": batch, "variant": "torchcfm_exact_ot",
                         "ms_per_step": 1e3 * statistics.median(exact),
                         "ratio_to_ot": statistics.median(exact) / statistics.median(cfm)})
    publish("minibatch_ot", rows, ["batch", "variant", "ratio_to_ot", "ms_per_step"], args.save,
            steps=args.steps, repeats=args.repeats)


if __name__ == "__main__":
    main()
