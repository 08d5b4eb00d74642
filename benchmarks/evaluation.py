"""Cost of the end-of-run evaluation on one CPU thread.

(1) The test likelihood alone: 1,000 test points through the default MLP (``arch=mlp``'s
defaults) at 2, 64 and 1024 dims, rk4 with ``sample.likelihood_steps`` steps, each divergence
``sample.divergence=auto`` picks, and the exact divergence at 64-d to show why it is not picked.
(2) The classifier two-sample test and the norm metric alone, at 2, 64, 384 and 1024 dims: one
call (1,000 samples against 1,000 test points, points on the unit sphere), as ``sample_metrics``
makes three times (samples, floor, baseline); the C2ST is 5 folds of logistic regression and of
the small MLP (flowstudy/metrics/c2st.py), on one BLAS thread whatever the machine.
(3) The whole ``evaluate()`` of a 1024-d run: 1,000 samples (100 Euler steps), 1,000 test points,
10^5 train rows (memorisation scans all of them, three times: samples, floor, baseline).
Both wall and CPU seconds are given: on a machine shared with other jobs the CPU seconds are what
one idle thread would take.

    python -m benchmarks.evaluation [--smoke]
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import torch

from benchmarks.common import config, publish
from benchmarks.common import parser as benchmark_parser
from flowstudy.config import SampleConfig
from flowstudy.data import DataSplits, Source
from flowstudy.data.normalize import Normalizer
from flowstudy.evaluate import evaluate
from flowstudy.flows.likelihood import EXACT_MAX_DIM, choose_divergence, nll_per_dim
from flowstudy.metrics.c2st import c2st
from flowstudy.metrics.norms import norm_metrics
from flowstudy.models import build_model
from flowstudy.resolve import arch_sizes


def timed(fn: Callable[[], Any]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def sphere(n: int, dim: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, dim, generator=g), dim=1)


def main() -> None:
    args = benchmark_parser(__doc__).parse_args()
    torch.set_num_threads(1)
    requested, sample = config(["wandb.mode=disabled"]).arch, SampleConfig()
    points, train_rows = (50, 2_000) if args.smoke else (1_000, 100_000)
    cases = [(2, "auto"), (64, "auto"), (1024, "auto")]
    if not args.smoke:
        cases.insert(2, (64, "exact"))
    rows = []
    for dim, divergence in cases:
        arch = arch_sizes(requested, dim)
        model = build_model(arch, dim).eval().requires_grad_(False)
        x = sphere(points, dim, 1)
        g = torch.Generator().manual_seed(0)
        div = choose_divergence(divergence, points, dim, sample.hutchinson_probes, g)
        kind = "exact" if divergence == "exact" or dim <= EXACT_MAX_DIM else "hutchinson"
        wall, cpu = timed(lambda m=model, x=x, d=div: nll_per_dim(
            m, x, Normalizer.fit(x), d, sample.likelihood_steps))
        rows.append({"what": f"test_nll {dim}-d {kind}", "points": points, "wall_s": wall,
                     "cpu_s": cpu})
    for dim in (2, 64, 384, 1024):
        x, y = sphere(points, dim, 1), sphere(points, dim, 2)
        for what, fn in (("c2st", lambda x=x, y=y: c2st(x, y, seed=0)),
                         ("norm metrics", lambda x=x, y=y: norm_metrics(x, y))):
            wall, cpu = timed(fn)
            rows.append({"what": f"{what} {dim}-d, {points} vs {points}", "points": points,
                         "wall_s": wall, "cpu_s": cpu})
    dim = 64 if args.smoke else 1024
    train = sphere(train_rows, dim, 0)
    data = DataSplits("sphere", train, sphere(points, dim, 1), sphere(points, dim, 2),
                      Normalizer.fit(train), Source())
    arch = arch_sizes(requested, dim)
    model = build_model(arch, dim).eval().requires_grad_(False)
    for likelihood in (False, True):
        cfg = SampleConfig(n=points, likelihood=likelihood)
        wall, cpu = timed(lambda c=cfg: evaluate(model, data, c, seed=0, data_seed=0))
        rows.append({"what": f"evaluate() {dim}-d, {train_rows} train rows, likelihood "
                             f"{'on' if likelihood else 'off'}", "points": points,
                     "wall_s": wall, "cpu_s": cpu})
    publish("evaluation", rows, ["what", "points", "wall_s", "cpu_s"], args.save,
            likelihood_steps=sample.likelihood_steps, hutchinson_probes=sample.hutchinson_probes,
            arch=dataclasses.asdict(requested))


if __name__ == "__main__":
    main()
