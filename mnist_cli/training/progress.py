"""Progress: the epoch clock, the line printed after each epoch, and on a terminal a bar
with the time left inside the epoch, for the engines that report their batches.

The clock's state is the time already spent in an epoch that a previous process stopped in
its middle (Ctrl-C with the fit engine), so that epoch's row reports its whole time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from mnist_cli.terminal import ProgressBar


class Progress:
    """Times each epoch and, when `echo` is given, prints one line per completed epoch."""

    key = "progress"

    def __init__(self, epochs: int, echo: Callable[[str], None] | None = None,
                 bar: ProgressBar | None = None) -> None:
        self.epochs = epochs
        self.echo = echo
        self.bar = bar
        self._started = time.perf_counter()
        self._carried = 0.0  # seconds of the next epoch spent in an earlier process
        self._in_epoch = False

    def epoch_started(self, epoch: int) -> None:
        self._started = time.perf_counter() - self._carried
        self._carried = 0.0
        self._in_epoch = True
        if self.bar is not None:
            self.bar.start()

    def batch_ended(self, epoch: int, batches_done: int, batches: int) -> None:
        if self.bar is not None:
            self.bar.update(f"epoch {epoch + 1}/{self.epochs}", batches_done, batches,
                            " batches")

    def stopped_in_epoch(self) -> None:
        """The epoch stops before its end (Ctrl-C): end the bar's line where it is."""
        if self.bar is not None:
            self.bar.output.write("\n")

    def seconds_in_epoch(self) -> float:
        return time.perf_counter() - self._started

    def epoch_ended(self, row: dict[str, Any]) -> None:
        self._in_epoch = False
        if self.bar is not None:
            self.bar.clear()
        if self.echo is None:
            return
        parts = [f"epoch {row['epoch']}/{self.epochs}"]
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            if row[key] is not None:
                parts.append(f"{key} {row[key]:.4f}")
        parts.append(f"{row['seconds']:.2f}s")
        self.echo(" - ".join(parts))

    def state(self) -> dict[str, Any]:
        """Seconds spent so far in an epoch that has not ended (0 between epochs)."""
        return {"seconds_in_epoch": round(self.seconds_in_epoch(), 4) if self._in_epoch
                else 0.0}

    def load_state(self, state: dict[str, Any]) -> None:
        """The next epoch to start continues one that already ran for that long."""
        self._carried = float(state["seconds_in_epoch"])
