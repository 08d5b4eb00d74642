"""Early stopping on a monitored value (lower is better): a val loss every epoch, or a sample
metric every ``train.monitor_every`` epochs (flowstudy.monitor); patience counts those updates."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass
class EarlyStopping:
    patience: int
    min_delta: float = 0.0
    best: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0  # updates without improvement (epochs, or a sample monitor's measurements)
    # result.json's best_val_loss: ``best`` itself where the monitor is a val loss (ema, raw),
    # the EMA val loss at the best measurement for a sample monitor.
    best_val_loss: float = math.inf

    def update(self, value: float, epoch: int, counting: bool = True,
               val_loss: float | None = None) -> bool:
        """Record one update's value; True if it is a new best.

        Updates with ``counting=False`` (the LR warmup) can set a new best but never use up
        patience.
        """
        if value < self.best - self.min_delta:
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
            self.best_val_loss = value if val_loss is None else val_loss
            return True
        if counting:
            self.bad_epochs += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.bad_epochs >= self.patience

    @property
    def on_plateau(self) -> bool:
        """Half the patience is used up (train.schedule=plateau starts its decay here)."""
        return self.bad_epochs >= max(1, self.patience // 2)

    def reset(self) -> None:
        """Forget the best: a branch that monitors something else cannot compare with it."""
        self.best, self.best_epoch, self.bad_epochs, self.best_val_loss = math.inf, 0, 0, math.inf

    def state_dict(self) -> dict[str, float | int]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, float | int]) -> None:
        self.best = float(state["best"])
        self.best_epoch = int(state["best_epoch"])
        self.bad_epochs = int(state["bad_epochs"])
        # Checkpoints from before sample monitors monitored a val loss: their best is one.
        self.best_val_loss = float(state.get("best_val_loss", state["best"]))
