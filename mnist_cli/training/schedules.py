"""Learning-rate schedules (`train.schedule`): the rate of every epoch, set on the optimizer's
learning-rate variable when the epoch starts, so every engine trains with it (fit reads the
variable, the fast engines take it into their state at each epoch's start) and history.csv's
`learning_rate` column is the rate each epoch used.

Every schedule but `plateau` is a function of the epoch alone. `plateau` keeps state (its
current rate, the best value seen, the epochs since), which goes into the checkpoint
(`state()` / `load_state()`) like early stopping's, so a resumed run continues it exactly.
"""

from __future__ import annotations

import math
from typing import Any

from mnist_cli.config import Schedule


def scheduled_rate(settings: Schedule, base_rate: float, epoch: int, epochs: int) -> float:
    """The rate of epoch `epoch` (0-based) of `epochs` for every schedule but `plateau`
    (whose rate after warm-up is `base_rate` until the first reduction)."""
    warmup = settings.warmup_epochs
    if epoch < warmup:
        return base_rate * (epoch + 1) / warmup
    after = epoch - warmup
    if settings.name == "step":
        return base_rate * settings.factor ** (after // settings.step_epochs)
    if settings.name == "exponential":
        return base_rate * settings.factor**after
    if settings.name == "cosine":
        return _half_cosine(base_rate, settings.min_learning_rate, after, max(1, epochs - warmup))
    if settings.name == "cosine_restarts":
        span = settings.cycle_epochs
        while after >= span:
            after -= span
            span *= settings.cycle_mult
        return _half_cosine(base_rate, settings.min_learning_rate, after, span)
    return base_rate


def _half_cosine(high: float, low: float, step: int, span: int) -> float:
    """From `high` at step 0 towards `low` at step `span`."""
    return low + (high - low) * 0.5 * (1 + math.cos(math.pi * step / span))


class LearningRateSchedule:
    """Sets the optimizer's rate at every epoch start; `update` takes each completed epoch's
    history row (for `plateau`)."""

    key = "schedule"

    def __init__(self, settings: Schedule, base_rate: float, epochs: int, optimizer: Any) -> None:
        self.settings = settings
        self.base_rate = base_rate
        self.epochs = epochs
        self.optimizer = optimizer
        self.plateau_rate = base_rate
        self.best_value: float | None = None
        self.epochs_without_improvement = 0

    def rate(self, epoch: int) -> float:
        if self.settings.name == "plateau" and epoch >= self.settings.warmup_epochs:
            return self.plateau_rate
        return scheduled_rate(self.settings, self.base_rate, epoch, self.epochs)

    def epoch_started(self, epoch: int) -> None:
        self.optimizer.learning_rate.assign(self.rate(epoch))

    def update(self, row: dict[str, Any]) -> None:
        """After epoch `row["epoch"]` (1-based): a plateau reduces the rate for the next."""
        settings = self.settings
        value = row.get(settings.monitor)
        if settings.name != "plateau" or value is None or row["epoch"] <= settings.warmup_epochs:
            return
        sign = 1.0 if "loss" in settings.monitor else -1.0
        if self.best_value is None or sign * (value - self.best_value) < -settings.min_delta:
            self.best_value = value
            self.epochs_without_improvement = 0
            return
        self.epochs_without_improvement += 1
        if self.epochs_without_improvement >= settings.patience:
            self.plateau_rate = max(self.plateau_rate * settings.factor,
                                    settings.min_learning_rate)
            self.epochs_without_improvement = 0

    def state(self) -> dict[str, Any]:
        return {"plateau_rate": self.plateau_rate, "best_value": self.best_value,
                "epochs_without_improvement": self.epochs_without_improvement}

    def load_state(self, state: dict[str, Any]) -> None:
        self.plateau_rate = float(state.get("plateau_rate", self.base_rate))
        self.best_value = state.get("best_value")
        self.epochs_without_improvement = int(state.get("epochs_without_improvement", 0))
