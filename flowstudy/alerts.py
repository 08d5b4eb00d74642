"""Alerts: when a run needs you (it diverged, it is skipping steps, it stalled, its sweep job
failed), one ``Alert`` that names the run and the command to run next.

The texts are pure functions of what the run knows; ``Tracker.alert`` (flowstudy.tracking) logs
the alert as one warning line and sends it with ``wandb.alert``: online W&B notifies you (e-mail,
Slack), an offline run keeps it in its ``.wandb`` file with the rest of the run. ``StallWatch`` is
the thread that notices a loop that takes no step.
"""

from __future__ import annotations

import math
import os
import shlex
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

from flowstudy.errors import Busy, Diverged
from flowstudy.interrupt import Interrupted

TITLE_CHARS = 63  # W&B: "must be less than 64 characters"


@dataclass(frozen=True)
class Alert:
    title: str
    text: str
    level: str  # W&B's INFO, WARN or ERROR


@dataclass(frozen=True)
class Commands:
    """What started the run, for the commands alerts give: its command-line overrides and, for a
    sweep job, the command that reruns the whole sweep (``flowstudy.sweep.resume_command``)."""

    overrides: tuple[str, ...] = ()
    sweep: str | None = None

    def train(self, *extra: str) -> str:
        """``python -m flowstudy.train`` with the run's overrides, those of ``extra``'s keys
        replaced by ``extra``."""
        keys = {e.split("=", 1)[0] for e in extra}
        kept = [o for o in self.overrides if o.lstrip("+").split("=", 1)[0] not in keys]
        return shlex.join(["python", "-m", "flowstudy.train", *kept, *extra])

    def lower_lr(self, lr: float) -> str:
        return self.train(f"train.lr={lr / 10:g}")

    def resume(self) -> str:
        """Continue the run (a sweep job: its whole sweep) from its ``last.pt``."""
        return self.sweep or self.train("resume=auto")


NO_COMMANDS = Commands()  # a run started other than from the command line (tests, scripts)


def _title(what: str, name: str) -> str:
    title = f"{what}: {name}"
    return title if len(title) <= TITLE_CHARS else title[:TITLE_CHARS - 3] + "..."


def streak_to_alert(nan_patience: int) -> int:
    """Skipped steps in a row that raise the streak alert: half the patience, so the alert comes
    well before the run stops (a patience of 1 stops at once, with no streak to warn of)."""
    return math.ceil(nan_patience / 2)


def skipping(name: str, streak: int, step: int, nan_patience: int, lr: float,
             commands: Commands) -> Alert:
    return Alert(_title("skipping steps", name),
                 f"Run {name}: {streak} steps in a row were skipped for a non-finite gradient "
                 f"norm (at step {step}); at train.nan_patience={nan_patience} it stops as "
                 f"diverged. If it does, rerun it with a lower learning rate: "
                 f"{commands.lower_lr(lr)}", "WARN")


def stalled(name: str, seconds: float, taken: int, epoch: int, commands: Commands,
            pid: int | None = None, host: str | None = None) -> Alert:
    pid = os.getpid() if pid is None else pid
    host = socket.gethostname() if host is None else host
    return Alert(_title("stalled", name),
                 f"Run {name} has taken no training step for {seconds / 60:.1f} min (after "
                 f"{taken} steps, in epoch {epoch + 1}; pid {pid} on {host}). Stop it with "
                 f"kill -INT {pid} (it saves last.pt after its current step; a second signal "
                 f"aborts at once), then continue it: {commands.resume()}", "WARN")


def for_error(error: BaseException | None, name: str, lr: float, commands: Commands,
              in_sweep: bool) -> Alert | None:
    """The alert for a run that ended with ``error``: a divergence (any run), a failure (a sweep
    job; a run of your own fails in front of you). None for a completed, interrupted or busy
    run."""
    if isinstance(error, Diverged):
        return Alert(_title("diverged", name),
                     f"Run {name} {error}. Rerun it with a lower learning rate: "
                     f"{commands.lower_lr(lr)}", "ERROR")
    if error is None or not in_sweep or isinstance(error, (Interrupted, KeyboardInterrupt, Busy)):
        return None
    rerun = (f"once the cause is fixed, rerun the sweep (completed jobs are skipped): "
             f"{commands.sweep}" if commands.sweep else
             f"reproduce it alone with HYDRA_FULL_ERROR=1 {commands.train()}")
    return Alert(_title("sweep job failed", name),
                 f"Sweep job {name} failed ({type(error).__name__}: {error}); the sweep goes on "
                 f"with its other jobs. Next: {rerun}", "ERROR")


@dataclass(frozen=True)
class LoopAlerts:
    """What the training loop needs to raise its alerts (flowstudy.trainer)."""

    send: Callable[[Alert], None]
    name: str
    commands: Commands = NO_COMMANDS
    stall_seconds: float | None = None


class StallWatch:
    """While active, a thread that calls ``on_stall(seconds)`` once ``progress()`` has not changed
    for ``seconds``; once per stall (it re-arms when progress resumes)."""

    def __init__(self, seconds: float, progress: Callable[[], int],
                 on_stall: Callable[[float], None]) -> None:
        self.seconds, self.progress, self.on_stall = seconds, progress, on_stall
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="flowstudy-stall-watch",
                                        daemon=True)

    def _watch(self) -> None:
        # A quarter of the threshold (at most 30 s): a stall is seen within 25% of its length.
        poll = min(self.seconds / 4, 30.0)
        seen, since, alerted = self.progress(), time.monotonic(), False
        while not self._stop.wait(poll):
            now = self.progress()
            if now != seen:
                seen, since, alerted = now, time.monotonic(), False
            elif not alerted and time.monotonic() - since >= self.seconds:
                alerted = True
                self.on_stall(time.monotonic() - since)

    def __enter__(self) -> StallWatch:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
