"""The run's history: one row per completed epoch, kept in `history.csv` as training goes.

`History` owns the rows; every new row rewrites `history.csv` atomically, so the file
always holds exactly the completed epochs. Its state (the rows) goes into the checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mnist_cli.atomic_files import write_text_atomic
from mnist_cli.runs import history_csv_text


def metric_value(value: Any) -> float | None:
    """A metric as a plain float, written with the digits its float32 value really has."""
    if value is None:
        return None
    return float(str(np.float32(np.asarray(value))))


def epoch_row(epoch: int, logs: Mapping[str, Any], learning_rate: Any,
              seconds: float) -> dict[str, Any]:
    """The history row of epoch `epoch` (0-based) from its Keras-style logs."""
    return {
        "epoch": epoch + 1,
        "loss": metric_value(logs.get("loss")),
        "accuracy": metric_value(logs.get("accuracy")),
        "val_loss": metric_value(logs.get("val_loss")),
        "val_accuracy": metric_value(logs.get("val_accuracy")),
        "learning_rate": metric_value(learning_rate),
        "seconds": round(seconds, 4),
    }


class History:
    """The rows of the completed epochs, mirrored in `path` (history.csv)."""

    key = "history"  # checkpoints.HISTORY_KEY

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: list[dict[str, Any]] = []

    def append(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self.write()

    def write(self) -> None:
        write_text_atomic(self.path, history_csv_text(self.rows))

    def __len__(self) -> int:
        return len(self.rows)

    def state(self) -> dict[str, Any]:
        return {"rows": [dict(row) for row in self.rows]}

    def load_state(self, state: dict[str, Any]) -> None:
        """Take the checkpoint's rows and rewrite history.csv with them: this drops the row
        of an epoch whose checkpoint never landed."""
        self.rows = [dict(row) for row in state["rows"]]
        self.write()
