"""Progress: the epoch clock and the line printed after each epoch.

The clock's state is the time already spent in an epoch that a previous process stopped in
its middle (Ctrl-C with the fit engine), so that epoch's row reports its whole time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


class Progress:
    """Times each epoch and, when `echo` is given, prints one line per completed epoch."""

    def __init__(self, epochs: int, echo: Callable[[str], None] | None = None) -> None:
        self.epochs = epochs
        self.echo = echo
        self._started = time.perf_counter()
        self._carried = 0.0  # seconds of the next epoch spent in an earlier process

    def epoch_started(self, epoch: int) -> None:
        self._started = time.perf_counter() - self._carried
        self._carried = 0.0

    def seconds_in_epoch(self) -> float:
        return time.perf_counter() - self._started

    def epoch_ended(self, row: dict[str, Any]) -> None:
        if self.echo is None:
            return
        parts = [f"epoch {row['epoch']}/{self.epochs}"]
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            if row[key] is not None:
                parts.append(f"{key} {row[key]:.4f}")
        parts.append(f"{row['seconds']:.2f}s")
        self.echo(" - ".join(parts))

    def state(self) -> float:
        """Seconds spent so far in the current epoch."""
        return self.seconds_in_epoch()

    def load_state(self, seconds: float) -> None:
        """The next epoch to start continues one that already ran for `seconds`."""
        self._carried = seconds
