"""Steps per second on a GPU: flowstudy's step against a bare loop and its CUDA-graph limit.

Table 1, the launch-bound case (2-d moons, residual MLP width 256 depth 3, batch 256):
  bare_eager      index-gather, draws, MSE on the ot path, fused AdamW; nothing else
  bare_graph      the same step captured once in a CUDA graph and replayed (the limit; CUDA only)
  lightning       lightning.Trainer with clipping, fused AdamW, logging every 10 (if installed)
  flowstudy_*     ``trainer.fit`` (validation, EMA, clip, schedule, logging every 10, best
                  checkpoints) eager or with ``train.cuda_graph=true``, W&B offline or disabled,
                  and eager with ``train.compile=true`` (compile time reported apart)
Targets (issue 11): flowstudy eager >= 0.9x bare_eager; cuda_graph >= 0.5x bare_graph.

Table 2, the FLOP-bound case (1024-d sphere, DiT dim 512 depth 8, 64 tokens, batch 1024): a bare
step and ``trainer.fit`` in fp32 (TF32 on), bf16, and bf16 + compile, with achieved TFLOP/s from
the FLOPs counted for one step (``flowstudy.cost.step_flops``). Target: flowstudy >= 0.95x bare.

    python -m benchmarks.gpu_step [--save] [--steps 2000] [--smoke]

``--smoke`` runs tiny sizes for a few steps on whatever device there is (seconds on a CPU);
results are written to benchmarks/results/gpu_step.json only with ``--save``.

On a GPU machine without network access, bring wheels for what torch does not pull in and
install them next to the machine's torch (never another torch):
    pip download -d wheels hydra-core omegaconf wandb POT hydra-joblib-launcher \
        hydra-submitit-launcher hydra-optuna-sweeper tqdm scipy torchdiffeq matplotlib lightning
    pip wheel -w wheels antlr4-python3-runtime==4.9.3   # sdist only: build its wheel here
    # on the GPU machine:
    pip install --no-index --find-links wheels --no-deps wheels/*.whl && pip install -e . --no-deps
    python -m benchmarks.gpu_step --save && python -m pytest tests/test_gpu_step.py
(``pip download`` resolves wandb's dependencies: protobuf, pydantic, sentry-sdk, click, ...).
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.common import config, publish, table
from benchmarks.common import parser as benchmark_parser
from flowstudy.build import build
from flowstudy.config import Config
from flowstudy.cost import step_flops
from flowstudy.data.fingerprint import data_fingerprint
from flowstudy.devices import use_tf32
from flowstudy.lineage import segment
from flowstudy.precision import Precision
from flowstudy.rng import seed_everything
from flowstudy.tracking import Tracker
from flowstudy.trainer import Checkpoints, fit

MLP = ["dataset=moons", "arch=mlp", "arch.width=256", "arch.depth=3", "train.batch_size=256"]
DIT = ["dataset=sphere", "arch=dit", "arch.dim=512", "arch.depth=8", "arch.patch=16",
       "train.batch_size=1024"]
SMOKE_MLP = ["dataset=moons", "dataset.size=2600", "arch.width=32", "arch.depth=1",
             "train.batch_size=64"]
SMOKE_DIT = ["dataset=sphere", "dataset.dim=64", "dataset.size=2600", "arch=dit", "arch.dim=32",
             "arch.depth=1", "arch.patch=8", "train.batch_size=64"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rate(step: Callable[[], None], steps: int, device: torch.device) -> float:
    for _ in range(3):  # warm-up: lazy state, autotuning
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return steps / (time.perf_counter() - start)


def _case(overrides: list[str], epochs: int, study: Path, *extra: str) -> Config:
    return config([*overrides, f"train.epochs={epochs}", f"study_dir={study}",
                   "train.warmup_steps=10", *extra])


def bare(cfg: Config, device: torch.device, steps: int, graph: bool = False) -> float:
    """A minimal step on the built model; with ``graph`` captured once and replayed."""
    seed_everything(0)
    built = build(cfg, device)
    model, x, b = built.state.model, built.batches.train, built.cfg.train.batch_size
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, fused=True,
                                  capturable=graph)
    precision = Precision.create(cfg.train.precision, device)
    g = torch.Generator(device).manual_seed(0)
    forward = torch.compile(model, dynamic=False) if cfg.train.compile else model

    def step() -> None:
        x1 = x[torch.randint(0, x.shape[0], (b,), generator=g, device=device)]
        x0 = torch.randn(x1.shape, generator=g, device=device)
        t = torch.rand(b, generator=g, device=device)
        with precision.autocast():
            out = forward((1 - t[:, None]) * x0 + t[:, None] * x1, t)
        loss = F.mse_loss(out.float(), x1 - x0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    if not graph:
        return _rate(step, steps, device)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(side)
    captured = torch.cuda.CUDAGraph()
    captured.register_generator_state(g)
    optimizer.zero_grad(set_to_none=True)
    with torch.cuda.graph(captured):
        step()
    return _rate(captured.replay, steps, device)


def flowstudy(cfg: Config, device: torch.device, work: Path) -> tuple[float, float | None, str]:
    """(steps/s of ``fit``, compile seconds, step mode)."""
    seed_everything(0)
    built = build(cfg, device)
    lineage = [segment(cfg, data_fingerprint(cfg.dataset, work), None)]
    with Tracker(cfg, work, work / "metrics.jsonl", lineage) as tracker:
        _sync(device)
        fitted = fit(built.cfg.train, built.state, built.batches, built.val, tracker,
                     Checkpoints(work), engine=built.engine)
        _sync(device)
    return fitted.steps_done / fitted.seconds, built.compile_s, fitted.step_mode


def lightning(cfg: Config, device: torch.device, steps: int, work: Path) -> float:
    import lightning as L

    seed_everything(0)
    built = build(cfg, device)
    x, b = built.batches.train, built.cfg.train.batch_size

    class Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = built.state.model

        def training_step(self, x1: torch.Tensor, _: int) -> torch.Tensor:
            x0, t = torch.randn_like(x1), torch.rand(x1.shape[0], device=x1.device)
            loss = F.mse_loss(self.model((1 - t[:, None]) * x0 + t[:, None] * x1, t), x1 - x0)
            self.log("train/loss", loss)
            return loss

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.AdamW(self.parameters(), lr=cfg.train.lr, fused=True)

    class Batches:
        def __len__(self) -> int:
            return steps

        def __iter__(self):
            return (x[torch.randint(0, x.shape[0], (b,), device=x.device)] for _ in range(steps))

    trainer = L.Trainer(max_steps=steps, accelerator="gpu" if device.type == "cuda" else "cpu",
                        devices=1, gradient_clip_val=cfg.train.grad_clip, log_every_n_steps=10,
                        enable_progress_bar=False, enable_model_summary=False, logger=False,
                        enable_checkpointing=False, default_root_dir=str(work))
    start = time.perf_counter()
    trainer.fit(Module(), train_dataloaders=Batches())
    _sync(device)
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--steps", type=int, default=2000, help="timed steps of the bare loops")
    parser.add_argument("--epochs", type=int, nargs=2, default=[20, 4],
                        help="epochs of flowstudy's fit for the MLP and the DiT case")
    args = parser.parse_args()
    os.environ.setdefault("WANDB_SILENT", "true")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tf32 = use_tf32(device, True)
    steps, (mlp_epochs, dit_epochs) = (20, (1, 1)) if args.smoke else (args.steps, args.epochs)
    mlp, dit = (SMOKE_MLP, SMOKE_DIT) if args.smoke else (MLP, DIT)
    cuda = device.type == "cuda"
    if not cuda:
        print("no CUDA device: bare_graph and the cuda_graph rows run eagerly (a smoke run)")

    with tempfile.TemporaryDirectory() as tmp:
        def work(name: str) -> Path:
            path = Path(tmp) / name
            path.mkdir()
            return path

        def case(overrides: list[str], epochs: int, name: str, *extra: str) -> Config:
            return _case(overrides, epochs, work(name) / "study", *extra)

        base = case(mlp, mlp_epochs, "bare")
        rates = {"bare_eager": bare(base, device, steps)}
        if cuda:
            rates["bare_graph"] = bare(base, device, steps, graph=True)
        if importlib.util.find_spec("lightning") is not None:
            rates["lightning"] = lightning(base, device, steps, work("lightning"))
        else:
            print("lightning is not installed (pip install -e '.[bench]'): no lightning row")
        compile_s = None
        variants = [("flowstudy_eager", ["wandb.mode=offline"]),
                            ("flowstudy_eager_nowandb", ["wandb.mode=disabled"]),
                            ("flowstudy_graph", ["wandb.mode=offline", "train.cuda_graph=true"]),
                            ("flowstudy_graph_nowandb",
                             ["wandb.mode=disabled", "train.cuda_graph=true"]),
                            ("flowstudy_compile", ["wandb.mode=disabled", "train.compile=true"])]
        # A smoke run skips compiling (a minute of inductor on a CPU).
        for name, extra in variants[:-1] if args.smoke else variants:
            rate, seconds, mode = flowstudy(case(mlp, mlp_epochs, name, *extra), device,
                                            work(name + "-run"))
            rates[name] = rate
            compile_s = seconds if seconds is not None else compile_s
            print(f"{name}: {mode} steps")
        mlp_rows = [{"loop": name, "steps_per_s": rate, "vs_bare_eager": rate / rates["bare_eager"],
                     "vs_bare_graph": rate / rates["bare_graph"] if "bare_graph" in rates
                     else float("nan")} for name, rate in rates.items()]

        dit_rows = []
        precisions = [("fp32", []), ("bf16", ["train.precision=bf16"]),
                      ("bf16+compile", ["train.precision=bf16", "train.compile=true"])]
        for precision, extra in precisions[:-1] if args.smoke else precisions:
            cfg = case(dit, dit_epochs, f"dit-{precision}", *extra, "wandb.mode=disabled")
            built = build(cfg, device)
            flops = step_flops(built.state.model, built.batches.flow.path,
                               built.cfg.train.batch_size, built.data.dim, device)
            bare_rate = bare(case(dit, dit_epochs, f"dit-bare-{precision}", *extra), device,
                             max(3, steps // 20))
            fs_rate, seconds, _ = flowstudy(cfg, device, work(f"dit-{precision}-run"))
            dit_rows.append({"precision": precision + (" (tf32)" if tf32 and
                                                       precision == "fp32" else ""),
                             "bare_tflops": bare_rate * flops / 1e12,
                             "flowstudy_tflops": fs_rate * flops / 1e12,
                             "flowstudy/bare": fs_rate / bare_rate,
                             "compile_s": seconds if seconds is not None else float("nan")})

    name = "gpu_step" if cuda else "gpu_step_cpu"
    publish(name, mlp_rows, ["loop", "steps_per_s", "vs_bare_eager", "vs_bare_graph"],
            args.save, device=str(device), tf32=tf32,
            mlp_compile_s=compile_s, dit=dit_rows)
    print(table(dit_rows, ["precision", "bare_tflops", "flowstudy_tflops", "flowstudy/bare",
                           "compile_s"]))


if __name__ == "__main__":
    main()
