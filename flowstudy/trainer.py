"""The training loop: epochs of flow-matching steps, validation, early stopping, checkpoints.

Order of events per step: take the next (x0, x1, t, eps) batch, build x_t and the target from the
flow's path, MSE, backward, clip, optimizer step (at the scheduled lr), EMA update. Per epoch:
validate raw and EMA weights on fixed noise, measure a sample monitor's metric where one is due
(flowstudy.monitor), update early stopping (and a plateau schedule), write ``best.pt`` on
improvement (and ``last.pt`` if asked).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from flowstudy.alerts import LoopAlerts, StallWatch, skipping, stalled, streak_to_alert
from flowstudy.batches import BatchSource
from flowstudy.budget import Budget
from flowstudy.checkpoint import Checkpoint, RunHeader
from flowstudy.config import TrainConfig
from flowstudy.distributed import Dist
from flowstudy.errors import Diverged
from flowstudy.flows.paths import ProbabilityPath
from flowstudy.graph_step import training_steps
from flowstudy.interrupt import Interrupted, StopRequest
from flowstudy.metrics import MONITOR_SECONDS, MONITORS
from flowstudy.monitor import Measurement, SampleMonitor
from flowstudy.precision import Precision
from flowstudy.schedule import WarmupCosine
from flowstudy.state import Engine, FitResult, TrainState, ValidationSet, generator_states
from flowstudy.step import StepConfig, attach_lr

log = logging.getLogger(__name__)


class MetricsSink(Protocol):
    def log(self, metrics: dict[str, float], step: int) -> None: ...


@dataclass
class Checkpoints:
    """Where a run's checkpoints go and what each carries beside the training state; ``save``
    is the one place a training checkpoint is written (tests override it to keep copies)."""

    dir: Path
    header: RunHeader = field(default_factory=RunHeader)
    save_last: bool = False  # also write last.pt at the end of every epoch
    # The W&B run id, asked for when a checkpoint is written (W&B starts in the background).
    run_id: Callable[[], str | None] = lambda: None

    def save(self, name: str, checkpoint: Checkpoint) -> None:
        checkpoint.save(self.dir / name)


@torch.no_grad()
def gradient_stats(model: nn.Module) -> dict[str, float]:
    """L2 norm, max |g| and fraction of exact zeros of each parameter tensor's gradient."""
    stats = {}
    for name, p in model.named_parameters():
        if p.grad is not None:
            g = p.grad.detach()
            stats[f"grad/{name}/l2"] = g.norm().item()
            stats[f"grad/{name}/max_abs"] = g.abs().max().item()
            stats[f"grad/{name}/zero_frac"] = (g == 0).float().mean().item()
    return stats


@torch.no_grad()
def validation_loss(model: nn.Module, path: ProbabilityPath, val: ValidationSet,
                    ranks: Dist | None = None, chunk: int = 4096) -> float:
    """Mean squared error over the whole validation set; with several ranks each scores its
    share and the sums are all-reduced, so every rank gets the same number."""
    ranks = ranks or Dist()
    n = val.x1.shape[0]
    mine = range(ranks.rank * n // ranks.world, (ranks.rank + 1) * n // ranks.world)
    was_training = model.training
    model.eval()
    total = torch.zeros((), device=val.x1.device, dtype=torch.float64)
    for i in range(mine.start, mine.stop, chunk):
        part = slice(i, min(i + chunk, mine.stop))
        xt, target = path.sample(val.x0[part], val.x1[part], val.t[part], val.eps[part])
        total += F.mse_loss(model(xt, val.t[part]), target, reduction="sum").double()
    model.train(was_training)
    return (ranks.sum_(total) / val.x1.numel()).item()


def fit(cfg: TrainConfig, state: TrainState, batches: BatchSource, val: ValidationSet,
        sink: MetricsSink, checkpoints: Checkpoints, stop: StopRequest | None = None,
        engine: Engine | None = None, budget: Budget | None = None,
        alerts: LoopAlerts | None = None, monitor: SampleMonitor | None = None) -> FitResult:
    """Train until ``cfg.epochs``, early stopping or ``budget`` (whichever comes first),
    writing ``best.pt`` (and ``last.pt``) to ``checkpoints`` on rank 0 while the other ranks
    wait. ``monitor`` is the sample monitor ``cfg.monitor`` names, if it names one: it measures
    on rank 0 every ``cfg.monitor_every`` epochs and at the last (train.epochs, or a budget
    spent by its step), and every rank gets its value.

    A flops or steps ``budget`` stops the run right after its planned step (counted on the host:
    no device read per step) and a seconds budget at the first log point or epoch end past its
    time; the epoch it stops in is validated like a full one, so its last weights can be the
    best. The cosine schedule ends at the budget's planned step (flowstudy.budget).

    Raises ``Interrupted`` after saving ``last.pt`` when ``stop`` has seen a signal (on any
    rank), and ``Diverged`` after saving ``anomaly.pt`` when ``cfg.nan_patience`` steps in a row
    had a non-finite gradient norm (those steps change no weights, EMA or optimizer state). The
    steps decide that on the device; the host looks at every log point (every ``cfg.log_every``
    batches) and at the end of each epoch.
    """
    started = time.perf_counter()
    loop = _Loop(cfg, state, batches, val, sink, checkpoints, stop,
                 engine or Engine(state.model, Precision.create("fp32", state.tally.steps.device)),
                 budget, started, alerts, monitor)
    first_step = state.step
    bar = tqdm(total=loop.schedule.total_steps if budget is not None and budget.by_steps
               else cfg.epochs * batches.steps_per_epoch, initial=state.step, unit="step",
               disable=None if loop.ranks.main else True, dynamic_ncols=True, leave=False)
    # A signal in the loop stops it after the current step, with last.pt saved.
    deferring = stop.deferring() if stop is not None else contextlib.nullcontext()
    with logging_redirect_tqdm(), bar, deferring, loop.stall_watch():
        while state.epoch < cfg.epochs and not state.stopper.should_stop and not loop.spent:
            state.model.train()
            for _ in loop.steps.epoch(state.epoch, skip=state.batch):
                state.batch += 1
                loop.taken += 1
                taken = state.epoch * batches.steps_per_epoch + state.batch  # applied or not
                if cfg.grad_stats_every and (taken - 1) % cfg.grad_stats_every == 0:
                    loop.log_gradients()
                if taken % cfg.log_every == 0:
                    loop.log_point(bar)
                loop.stop_if_requested()
                if loop.budget_spent_at_step():
                    break
            loop.end_of_epoch()
            loop.stop_if_requested()
    stopped = state.stopper.should_stop
    seconds = time.perf_counter() - started
    if loop.spent and loop.ranks.main:
        log.info("budget spent after %d steps (%s%s); %d epoch(s), the last validated where it "
                 "stopped", loop.taken, budget.describe(),
                 f", {loop.taken * budget.flops_per_step:.4g} FLOPs" if budget.by_steps else
                 f", {seconds:.1f} s", state.epoch)
    elif stopped and loop.ranks.main:
        log.info("early stopping after epoch %d: no improvement of %s for %d %s (best %.4g at "
                 "epoch %d)", state.epoch, loop.monitored, cfg.patience, loop.updates,
                 state.stopper.best, state.stopper.best_epoch)
    reason = "budget" if loop.spent else "early_stopping" if stopped else "max_epochs"
    return FitResult(stop_reason=reason, epochs=state.epoch, steps=state.step, seconds=seconds,
                     steps_done=state.step - first_step, step_mode=loop.steps.reason,
                     schedule_steps=loop.schedule.total_steps, taken=loop.taken,
                     budget=None if budget is None else budget.record(loop.taken, seconds),
                     monitor_s=loop.monitor_s)


class _Loop:
    """The events of ``fit`` between steps: log points, the end of an epoch, checkpoints and
    the checks for signals and divergence. Holds what they share; ``fit`` owns their order."""

    def __init__(self, cfg: TrainConfig, state: TrainState, batches: BatchSource,
                 val: ValidationSet, sink: MetricsSink, checkpoints: Checkpoints,
                 stop: StopRequest | None, engine: Engine, budget: Budget | None = None,
                 started: float = 0.0, alerts: LoopAlerts | None = None,
                 monitor: SampleMonitor | None = None) -> None:
        self.cfg, self.state, self.batches, self.val = cfg, state, batches, val
        self.alerts = alerts
        self.streak_alerted = False  # the current streak of skipped steps has had its alert
        self.sink, self.checkpoints, self.stop = sink, checkpoints, stop
        self.ranks, self.budget, self.started = engine.dist, budget, started
        if (MONITORS[cfg.monitor].metric is None) != (monitor is None):
            raise ValueError(f"train.monitor={cfg.monitor} needs "
                             f"{'a' if monitor is None else 'no'} SampleMonitor")
        self.monitor = monitor
        # Epochs between early-stopping updates, and how the log names them.
        self.every = cfg.monitor_every if monitor is not None else 1
        self.monitored = cfg.monitor if monitor is not None else f"{cfg.monitor} val loss"
        self.updates = "measurements" if monitor is not None else "epochs"
        self.monitor_s: list[float] = []  # each measurement's seconds, in this process
        if cfg.schedule != "plateau":  # a branch off a plateau run that asks for the plain cosine
            state.plateau = None
        epochs_steps = cfg.epochs * batches.steps_per_epoch
        self.schedule = WarmupCosine(
            cfg.lr, cfg.warmup_steps,
            budget.schedule_steps(epochs_steps) if budget is not None else epochs_steps,
            cfg.min_lr_ratio, state.plateau)
        attach_lr(state.optimizer, state.tally)
        self.steps = training_steps(cfg, state, engine, batches, StepConfig(
            self.schedule, cfg.grad_clip, cfg.accum_steps, cfg.nan_patience))
        counts = state.read_tally()
        self.skipped_seen = counts["skipped"]
        # Steps taken over the whole run, applied or skipped (each cost a forward and
        # backward), read once here and counted on the host after that.
        self.taken = int(counts["steps"] + counts["skipped"])
        self.spent = budget is not None and budget.spent_at_step(self.taken)

    def budget_spent_at_step(self) -> bool:
        """After each step: a flops or steps budget is spent at its planned step (host count)."""
        if self.budget is not None and self.budget.spent_at_step(self.taken):
            self.spent = True
        return self.spent

    def check_clock(self) -> None:
        """At a log point or epoch end (the host has just synced): a seconds budget's estimate
        of the schedule's length, once, and whether its time is up."""
        if self.budget is None or self.budget.by_steps:
            return
        elapsed = time.perf_counter() - self.started
        if self.ranks.active:  # rank 0's clock decides, so every rank plans and stops alike
            clock = torch.tensor([elapsed if self.ranks.main else 0.0], dtype=torch.float64,
                                 device=self.state.tally.steps.device)
            elapsed = float(self.ranks.sum_(clock).item())
        length = self.budget.observe(self.taken, elapsed)
        if length is not None:
            self.schedule = dataclasses.replace(self.schedule, total_steps=length)
            self.steps.set_schedule(self.schedule)
            if self.ranks.main:
                log.info("budget %g s: %d steps in %.1f s; the cosine schedule now ends at step "
                         "%d (estimated from the measured rate)", self.budget.value, self.taken,
                         elapsed, length)
        if self.budget.spent_at_clock(elapsed):
            self.spent = True

    def save(self, name: str) -> None:
        if self.ranks.main:
            self.checkpoints.save(name, Checkpoint.capture(self.state, self.checkpoints.header,
                                                           self.checkpoints.run_id()))
        self.ranks.barrier()  # no rank races ahead of a checkpoint

    def stop_if_requested(self) -> None:
        if self.stop is not None and self.ranks.any(self.stop.signum is not None,
                                                    self.state.tally.steps.device):
            self.save("last.pt")
            raise Interrupted(self.stop.signum or signal.SIGTERM,
                              str(self.checkpoints.dir / "last.pt"))

    def check_divergence(self, counts: dict[str, float]) -> None:
        if counts["skipped"] > self.skipped_seen:
            log.warning("step %d: %d step(s) skipped for a non-finite gradient norm since the "
                        "last check (%d in a row now)", counts["steps"],
                        counts["skipped"] - self.skipped_seen, counts["streak"])
            self.skipped_seen = counts["skipped"]
        streak = int(counts["streak"])
        if streak < streak_to_alert(self.cfg.nan_patience):
            self.streak_alerted = False
        elif (streak < self.cfg.nan_patience and not self.streak_alerted
              and self.alerts is not None):
            self.streak_alerted = True
            self.alerts.send(skipping(self.alerts.name, streak, int(counts["steps"]),
                                      self.cfg.nan_patience, self.cfg.lr,
                                      self.alerts.commands))
        if streak >= self.cfg.nan_patience:
            self.save("anomaly.pt")
            raise Diverged(
                f"diverged: {int(counts['streak'])} steps in a row had a non-finite gradient "
                f"norm (after step {self.state.step}, epoch {self.state.epoch + 1}); the state "
                f"before divergence is in {self.checkpoints.dir / 'anomaly.pt'}; try a lower "
                f"train.lr")

    def stall_watch(self) -> contextlib.AbstractContextManager[object]:
        """Watches the host's count of steps taken (read, never synced with the device)."""
        alerts = self.alerts
        if alerts is None or alerts.stall_seconds is None:
            return contextlib.nullcontext()
        return StallWatch(alerts.stall_seconds, lambda: self.taken, lambda seconds: alerts.send(
            stalled(alerts.name, seconds, self.taken, self.state.epoch, alerts.commands)))

    def log_gradients(self) -> None:
        # This step's (clipped) gradients, at the count of steps before it.
        applied = self.state.read_tally()["streak"] == 0
        self.sink.log(gradient_stats(self.state.model), self.state.step - applied)

    def log_point(self, bar: tqdm) -> None:
        """Read the device's counts (the loop's one host sync between epochs), check them for
        divergence, log the loss window and start a new one."""
        state, tally = self.state, self.state.tally
        counts = state.read_tally()
        self.check_divergence(counts)
        window = self.ranks.sum_(tally.window_loss / tally.window_steps) / self.ranks.world
        train_loss = window.item()
        self.sink.log({"train/loss": train_loss, "train/grad_norm": counts["grad_norm"],
                       "train/lr": counts["lr"], "train/skipped_steps": int(counts["skipped"]),
                       "epoch": state.epoch}, state.step)
        bar.update(state.step - bar.n)
        bar.set_postfix(epoch=state.epoch + 1, loss=f"{train_loss:.4f}",
                        lr=f"{counts['lr']:.2e}", refresh=False)
        tally.window_loss.zero_()
        tally.window_steps.zero_()
        self.check_clock()

    def measure(self) -> Measurement:
        """The sample monitor's metric of the EMA weights, measured on rank 0, on every rank."""
        m = (self.monitor.measure(self.state.ema.module) if self.ranks.main
             else Measurement(0.0, 0.0))
        if self.ranks.active:
            shared = self.ranks.sum_(torch.tensor([m.value, m.seconds], dtype=torch.float64,
                                                  device=self.state.tally.steps.device))
            m = Measurement(*shared.tolist())
        self.monitor_s.append(m.seconds)
        return m

    def plan_plateau(self) -> None:
        """train.schedule=plateau: once half the patience is used up, the lr decays to its
        minimum at the step where early stopping would stop if nothing improves."""
        stopper, state = self.state.stopper, self.state
        if self.cfg.schedule != "plateau" or state.plateau is not None or not stopper.on_plateau:
            return
        left = (stopper.patience - stopper.bad_epochs) * self.every * self.batches.steps_per_epoch
        state.plateau = (state.step, state.step + left)
        self.schedule = dataclasses.replace(self.schedule, plateau=state.plateau)
        self.steps.set_schedule(self.schedule)
        if self.ranks.main:
            log.info("schedule=plateau: no improvement of %s for %d %s; the lr decays from %.3g "
                     "at step %d to %.3g at step %d, where early stopping would stop",
                     self.monitored, stopper.bad_epochs, self.updates, self.schedule(state.step),
                     state.step, self.schedule(state.plateau[1]), state.plateau[1])

    def end_of_epoch(self) -> None:
        """Validate raw and EMA weights, measure a sample monitor where one is due, update early
        stopping (and a plateau schedule), checkpoint on improvement."""
        state, cfg = self.state, self.cfg
        state.epoch += 1
        state.batch = 0
        state.epoch_start = generator_states(state.shuffle_gen, state.noise_gen)
        self.check_divergence(state.read_tally())
        path = self.batches.flow.path
        raw = validation_loss(state.model, path, self.val, self.ranks)
        ema_loss = validation_loss(state.ema.module, path, self.val, self.ranks)
        logged = {"val/raw_loss": raw, "val/ema_loss": ema_loss}
        value, measured = None, ""  # None: no update of early stopping this epoch
        if self.monitor is None:
            value = ema_loss if cfg.monitor == "ema" else raw
        elif state.epoch % self.every == 0 or state.epoch >= cfg.epochs or self.spent:
            m = self.measure()
            value = m.value
            logged |= {MONITORS[cfg.monitor].log_key: m.value, MONITOR_SECONDS: m.seconds}
            measured = f"  {self.monitor.metric} {m.value:.4g} ({m.seconds:.2f} s)"
        improved = value is not None and state.stopper.update(
            value, state.epoch, counting=state.step >= cfg.warmup_steps,
            val_loss=None if self.monitor is None else ema_loss)
        self.sink.log({**logged, "val/best": state.stopper.best, "epoch": state.epoch},
                      state.step)
        if self.ranks.main:
            log.info("epoch %d/%d  step %d  val %.4f  ema %.4f%s%s", state.epoch, cfg.epochs,
                     state.step, raw, ema_loss, measured, "  *best*" if improved else "")
        if value is not None:
            self.plan_plateau()  # before the checkpoints, which hold it
        if improved:
            self.save("best.pt")
        if self.checkpoints.save_last:
            self.save("last.pt")
        self.check_clock()
