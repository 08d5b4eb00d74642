"""Loop overhead: flowstudy's training loop against a bare loop and PyTorch Lightning.

Same model (flowstudy's residual MLP), same in-memory data, same batch, same number of steps, one
torch thread, in one process; the three loops alternate for ``--repeats`` rounds and the table
gives medians.

(a) bare: random batch indices, AdamW (torch's default implementation), MSE on the ``ot`` path,
    nothing else (the practical limit); (a') the same with AdamW's fused kernel, which flowstudy
    uses, so that b/a' isolates what the loop itself costs.
(b) flowstudy: ``trainer.fit`` with its defaults on: EMA with warmup, clipping, warmup + cosine,
    validation every epoch, logging every 10 steps to metrics.jsonl and W&B (offline), best
    checkpoints; no progress bar (not a terminal).
(c) Lightning: ``lightning.Trainer`` doing the same work (EMA callback, clipping, the same
    schedule, validation every epoch, early stopping and checkpoint callbacks, W&B offline
    logger every 10 steps) from an iterable of in-memory batches. Needs the ``bench`` extra.

    python -m benchmarks.loop_overhead [--repeats 3] [--epochs 20 4] [--smoke] [--save [DIR]]
"""

from __future__ import annotations

import importlib.util
import os
import statistics
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.common import config, publish, seconds
from benchmarks.common import parser as benchmark_parser
from flowstudy.build import build
from flowstudy.config import Config
from flowstudy.data.fingerprint import data_fingerprint
from flowstudy.ema import EMA
from flowstudy.lineage import segment
from flowstudy.rng import seed_everything
from flowstudy.schedule import WarmupCosine
from flowstudy.tracking import Tracker
from flowstudy.trainer import Checkpoints, fit

CASES = {
    "2d-mlp256": ["dataset=moons", "arch.width=256"],
    "1024d-mlp1024": ["dataset=sphere", "arch.width=1024"],
}


STEPS_PER_EPOCH = 20_000 // 256  # the datasets' default train split at batch 256


def case_config(overrides: list[str], steps: int, study: Path) -> Config:
    """Whole epochs of the default data (validation and best checkpoints every 78 steps);
    ``steps`` must be a multiple of 78."""
    return config([*overrides, "train.batch_size=256", f"train.epochs={steps // STEPS_PER_EPOCH}",
                   f"study_dir={study}", "wandb.mode=offline", "train.threads=1"])


def bare_loop(cfg: Config, steps: int, fused: bool = False) -> float:
    seed_everything(0)
    built = build(cfg, torch.device("cpu"))
    model, x = built.state.model, built.batches.train
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, fused=fused or None)
    g = torch.Generator().manual_seed(0)

    def loop() -> None:
        for _ in range(steps):
            x1 = x[torch.randint(0, x.shape[0], (256,), generator=g)]
            x0 = torch.randn(x1.shape, generator=g)
            t = torch.rand(256, generator=g)[:, None]
            loss = F.mse_loss(model((1 - t) * x0 + t * x1, t[:, 0]), x1 - x0)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    return seconds(loop)


def flowstudy_loop(cfg: Config, steps: int, workdir: Path) -> float:
    seed_everything(0)
    built = build(cfg, torch.device("cpu"))
    lineage = [segment(cfg, data_fingerprint(cfg.dataset, workdir), None)]
    with Tracker(cfg, workdir, workdir / "metrics.jsonl", lineage) as tracker:
        return seconds(lambda: fit(built.cfg.train, built.state, built.batches, built.val, tracker,
                                   Checkpoints(workdir), engine=built.engine))


def lightning_loop(cfg: Config, steps: int, workdir: Path) -> float:
    import lightning as L
    from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
    from lightning.pytorch.loggers import WandbLogger

    seed_everything(0)
    built = build(cfg, torch.device("cpu"))
    x, val = built.batches.train, built.val
    t_cfg = cfg.train
    per_epoch = x.shape[0] // 256

    class Flow(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = built.state.model

        def training_step(self, x1: torch.Tensor, _: int) -> torch.Tensor:
            x0, t = torch.randn_like(x1), torch.rand(x1.shape[0])
            xt = (1 - t[:, None]) * x0 + t[:, None] * x1
            loss = F.mse_loss(self.model(xt, t), x1 - x0)
            self.log("train/loss", loss)
            return loss

        def validation_step(self, batch: torch.Tensor, _: int) -> None:
            # As flowstudy: the raw and the EMA weights on the same fixed problem.
            x1, x0, t = val.x1, val.x0, val.t
            xt = (1 - t[:, None]) * x0 + t[:, None] * x1
            self.log("val/loss", F.mse_loss(self.model(xt, t), x1 - x0), batch_size=len(x1))
            ema_loss = F.mse_loss(ema_callback.ema.module(xt, t), x1 - x0)
            self.log("val/ema_loss", ema_loss, batch_size=len(x1))

        def configure_optimizers(self) -> dict:
            opt = torch.optim.AdamW(self.parameters(), lr=t_cfg.lr, fused=True)  # as flowstudy
            schedule = WarmupCosine(1.0, t_cfg.warmup_steps, steps, t_cfg.min_lr_ratio)
            sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    class EMACallback(Callback):
        def on_fit_start(self, trainer: L.Trainer, module: Flow) -> None:
            self.ema = EMA(module.model, t_cfg.ema_decay, t_cfg.ema_power)

        def on_train_batch_end(self, *args: object) -> None:
            self.ema.update()

        def state_dict(self) -> dict:  # checkpointed with the model, as flowstudy's EMA is
            return self.ema.state_dict()

    ema_callback = EMACallback()

    class Batches:  # an iterable batch source: shuffled in-memory batches, one epoch per pass
        g = torch.Generator().manual_seed(0)

        def __len__(self) -> int:
            return per_epoch

        def __iter__(self):
            order = torch.randperm(x.shape[0], generator=self.g)
            return (x[order[i * 256:(i + 1) * 256]] for i in range(per_epoch))

    trainer = L.Trainer(
        max_steps=steps, accelerator="cpu", devices=1, gradient_clip_val=t_cfg.grad_clip,
        log_every_n_steps=10, enable_progress_bar=False, enable_model_summary=False,
        logger=WandbLogger(project="bench", save_dir=str(workdir), offline=True),
        callbacks=[ema_callback, EarlyStopping("val/ema_loss", patience=t_cfg.patience),
                   ModelCheckpoint(dirpath=workdir, monitor="val/ema_loss", save_top_k=1)],
        num_sanity_val_steps=0, limit_val_batches=1, check_val_every_n_epoch=1)
    module = Flow()
    elapsed = seconds(lambda: trainer.fit(module, train_dataloaders=Batches(),
                                          val_dataloaders=[0]))
    import wandb

    wandb.finish()
    return elapsed


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, nargs=2, default=[20, 4],
                        help="epochs (of 78 steps) for the 2-d and the 1024-d case")
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ["WANDB_MODE"] = "offline"  # Lightning's WandbLogger(offline=True) still logs in
    cases = dict(list(CASES.items())[:1]) if args.smoke else CASES  # smoke: the 2-d case
    epochs = [1] if args.smoke else args.epochs
    steps_for = {case: e * STEPS_PER_EPOCH for case, e in zip(cases, epochs, strict=True)}
    loops = ["bare", "bare_fused", "flowstudy", "lightning"]
    if importlib.util.find_spec("lightning") is None:
        print("lightning is not installed (pip install -e '.[bench]'): skipping (c)")
        loops = loops[:3]

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for case, overrides in cases.items():
            steps = steps_for[case]
            times: dict[str, list[float]] = {name: [] for name in loops}
            for r in range(args.repeats):
                for name in loops:
                    work = Path(tmp) / f"{case}-{name}-{r}"
                    work.mkdir()
                    cfg = case_config(overrides, steps, work / "study")
                    if name.startswith("bare"):
                        times[name].append(bare_loop(cfg, steps, fused=name == "bare_fused"))
                    elif name == "flowstudy":
                        times[name].append(flowstudy_loop(cfg, steps, work))
                    else:
                        times[name].append(lightning_loop(cfg, steps, work))
            rate = {name: steps / statistics.median(v) for name, v in times.items()}
            row = {"case": case, "steps": steps,
                   **{f"{n}_steps_per_s": rate[n] for n in loops},
                   "b/a": rate["flowstudy"] / rate["bare"],
                   "b/a'": rate["flowstudy"] / rate["bare_fused"]}
            if "lightning" in rate:
                row["b/c"] = rate["flowstudy"] / rate["lightning"]
            row.update({f"{n}_ms_per_step": 1e3 / rate[n] for n in loops})
            rows.append(row)
    columns = ["case", "b/a", "b/a'", *(["b/c"] if "lightning" in loops else []),
               *(f"{n}_ms_per_step" for n in loops)]
    publish("loop_overhead", rows, columns, args.save, repeats=args.repeats)


if __name__ == "__main__":
    main()
