"""Quality per second against the reference: the 2-d protocol of the OT-CFM paper (Tong et al.).

N(0, I) -> moons and 8gaussians -> moons; 10k/1k/1k splits; batch 512; AdamW, lr 1e-3; sigma 0.1
(``ot``: 0); up to 1000 epochs with early stopping on the validation loss (patience 20); Euler,
100 steps; exact W2 on the 1000 test points; seeds 42-44 (data and run). Each method runs in
flowstudy (``run()``, its defaults otherwise: residual MLP of width 64 and depth 3, EMA, warmup
and cosine) and as torchcfm's matcher in a plain loop with torchcfm's 3x64 SELU MLP, on the same
data, source and validation problem. Reported: W2 mean +/- std over seeds with the real-vs-real
floor, and the wall time of a run (training and sampling), side by side. Needs torchcfm (see
``benchmarks.minibatch_ot``).

    python -m benchmarks.quality [--seeds 42 43 44] [--smoke] [--save [DIR]]
"""

from __future__ import annotations

import copy
import importlib.util
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.common import config, publish
from benchmarks.common import parser as benchmark_parser
from flowstudy.config import Config
from flowstudy.data import build_data
from flowstudy.flows.solvers import solve
from flowstudy.metrics.distances import wasserstein2
from flowstudy.run import run

SOURCES = {"gaussian->moons": "gaussian", "8gaussians->moons": "8gaussians"}
SIGMA = {"ot": 0.0, "cfm": 0.1, "minibatch_ot": 0.1}


def protocol(method: str, source: str, seed: int, study: Path, epochs: int,
             held_out: int = 1000) -> Config:
    sigma = [] if method == "ot" else [f"flow.sigma={SIGMA[method]}"]
    return config([f"flow={method}", *sigma, "dataset=moons", f"dataset.source={source}",
                   "dataset.size=12000", f"dataset.n_val={held_out}",
                   f"dataset.n_test={held_out}",
                   f"dataset.seed={seed}", f"seed={seed}", "train.batch_size=512",
                   "train.lr=1e-3", "arch.width=64", "arch.depth=3", f"train.epochs={epochs}",
                   "sample.steps=100", "wandb.mode=disabled", f"study_dir={study}"])


def flowstudy_run(cfg: Config, work: Path) -> tuple[float, float, float]:
    start = time.perf_counter()
    result = run(cfg, work)
    return result.metrics["w2"], result.metrics["w2_floor"], time.perf_counter() - start


def torchcfm_run(cfg: Config, method: str, patience: int = 20) -> tuple[float, float]:
    from torchcfm.conditional_flow_matching import (
        ConditionalFlowMatcher,
        ExactOptimalTransportConditionalFlowMatcher,
    )
    from torchcfm.models import MLP

    start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    data = build_data(cfg.dataset)
    train, val = data.normalizer.encode(data.train), data.normalizer.encode(data.val)
    matcher = (ExactOptimalTransportConditionalFlowMatcher if method == "minibatch_ot"
               else ConditionalFlowMatcher)(sigma=SIGMA[method])
    model = MLP(dim=2, w=64, time_varying=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(cfg.seed)

    def loss_of(x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        t, xt, ut = matcher.sample_location_and_conditional_flow(x0, x1)
        return F.mse_loss(model(torch.cat([xt, t[:, None]], dim=1)), ut)

    best, best_state, bad = float("inf"), None, 0
    for _ in range(cfg.train.epochs):
        order = torch.randperm(train.shape[0], generator=g)
        for i in range(0, train.shape[0] - 511, 512):
            x1 = train[order[i:i + 512]]
            loss = loss_of(data.source.sample(512, 2, g), x1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        with torch.no_grad(), torch.random.fork_rng():  # the same validation problem each epoch
            torch.manual_seed(0)
            vg = torch.Generator().manual_seed(0)
            value = loss_of(data.source.sample(val.shape[0], 2, vg), val).item()
        if value < best:
            best, best_state, bad = value, copy.deepcopy(model.state_dict()), 0
        else:
            bad += 1
            if bad >= patience:
                break
    model.load_state_dict(best_state)
    x0 = data.source.sample(cfg.sample.n, 2, torch.Generator().manual_seed(cfg.seed))
    z, _ = solve(lambda x, t: model(torch.cat([x, t[:, None]], dim=1)), x0, "euler", 100)
    w2 = wasserstein2(data.normalizer.decode(z), data.test)
    return w2, time.perf_counter() - start


def _spread(values: list[float]) -> str:
    mean = statistics.fmean(values)
    return f"{mean:.4f} ± {statistics.stdev(values):.4f}" if len(values) > 1 else f"{mean:.4f}"


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    args = parser.parse_args()
    torch.set_num_threads(1)
    epochs = 2 if args.smoke else 1000
    seeds = args.seeds[:1] if args.smoke else args.seeds
    tasks = dict(list(SOURCES.items())[:1]) if args.smoke else SOURCES
    reference = importlib.util.find_spec("torchcfm") is not None
    if not reference:
        print("torchcfm is not installed: flowstudy alone")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for task, source in tasks.items():
            for method in SIGMA:
                ours, theirs, floors, our_s, their_s = [], [], [], [], []
                for seed in seeds:
                    work = Path(tmp) / f"{source}-{method}-{seed}"
                    # The smoke test checks the machinery, not the numbers: small held-out sets.
                    cfg = protocol(method, source, seed, work / "study", epochs,
                                   held_out=128 if args.smoke else 1000)
                    w2, floor, seconds = flowstudy_run(cfg, work)
                    ours.append(w2)
                    floors.append(floor)
                    our_s.append(seconds)
                    if reference:
                        w2, seconds = torchcfm_run(cfg, method)
                        theirs.append(w2)
                        their_s.append(seconds)
                row = {"task": task, "method": method, "flowstudy_w2": _spread(ours),
                       "floor": _spread(floors), "flowstudy_s": statistics.fmean(our_s)}
                if reference:
                    row.update(torchcfm_w2=_spread(theirs), torchcfm_s=statistics.fmean(their_s),
                               w2_ratio=statistics.fmean(ours) / statistics.fmean(theirs),
                               time_ratio=statistics.fmean(our_s) / statistics.fmean(their_s))
                rows.append(row)
    columns = ["task", "method", "flowstudy_w2", *(["torchcfm_w2"] if reference else []),
               "floor", "flowstudy_s", *(["torchcfm_s", "w2_ratio", "time_ratio"]
                                         if reference else [])]
    publish("quality", rows, columns, args.save, seeds=seeds)


if __name__ == "__main__":
    main()
