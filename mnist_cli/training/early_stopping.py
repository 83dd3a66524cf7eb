"""Early stopping (`train.early_stopping`), with the rules of `keras.callbacks.EarlyStopping`:
stop after `patience` epochs without an improvement of the monitored metric by more than
`min_delta`, and optionally give the model back the weights of its best epoch at the end.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mnist_cli.config import EarlyStopping as EarlyStoppingSettings


class EarlyStopping:
    """Watches each epoch's row; `update` says when to stop. With no settings it never does."""

    key = "early_stopping"

    def __init__(self, settings: EarlyStoppingSettings | None, model: Any) -> None:
        self.settings = settings
        self.model = model
        self.best_value: float | None = None
        self.best_epoch: int | None = None
        self.best_weights: list[np.ndarray] | None = None
        self.epochs_without_improvement = 0
        self.stopped_early = False

    def update(self, row: dict[str, Any]) -> bool:
        """Take a completed epoch's history row; True when training must stop."""
        settings = self.settings
        if settings is None:
            return False
        value = row.get(settings.monitor)
        if value is None:
            return False
        sign = 1.0 if "loss" in settings.monitor else -1.0
        improved = self.best_value is None or sign * (value - self.best_value) < -settings.min_delta
        if improved:
            self.best_value = value
            self.best_epoch = row["epoch"]
            self.epochs_without_improvement = 0
            if settings.restore_best_weights:
                self.best_weights = self.model.get_weights()
            return False
        self.epochs_without_improvement += 1
        if self.epochs_without_improvement >= settings.patience:
            self.stopped_early = True
            return True
        return False

    def finish(self) -> None:
        """Restore the best weights when the settings ask for it."""
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)

    def state(self) -> dict[str, Any]:
        """The counters and the best weights (arrays, or None)."""
        return {
            "best_value": self.best_value,
            "best_epoch": self.best_epoch,
            "epochs_without_improvement": self.epochs_without_improvement,
            "stopped_early": self.stopped_early,
            "best_weights": None if self.best_weights is None else [
                np.array(weight) for weight in self.best_weights],
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.best_value = state.get("best_value")
        self.best_epoch = state.get("best_epoch")
        self.epochs_without_improvement = int(state.get("epochs_without_improvement", 0))
        self.stopped_early = bool(state.get("stopped_early", False))
        self.best_weights = state.get("best_weights")

    def summary(self, epochs_run: int, epochs: int) -> str:
        """One line for a run that stopped early: why, where, and which weights it keeps."""
        settings = self.settings
        kept = ("the best epoch's weights restored" if settings.restore_best_weights
                else "the last epoch's weights kept")
        return (f"Early stopping: {settings.monitor} did not improve by more than "
                f"{settings.min_delta:g} for {settings.patience} epochs; stopped after epoch "
                f"{epochs_run} of {epochs} (best: epoch {self.best_epoch}, {settings.monitor} "
                f"{self.best_value:.4f}); {kept}")
