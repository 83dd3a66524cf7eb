"""What a run shows of itself while it trains, for `mnist serve` to follow: per-epoch
snapshots (`train.snapshots: true`), the weights after every epoch, so that the page can
replay what the network answered at any epoch; and `progress.json`, how far the epoch under
way is, for the engines that report their batches.

A snapshot is the model's weights (`model.get_weights()`: kernels, biases, batch
normalisation's statistics) in float16, written atomically as `snapshots/epoch-NNNN.npz`
after the epoch's checkpoint. Only nets of up to `MAX_SNAPSHOT_WEIGHTS` weights keep them
(the config refuses more), so a snapshot is at most 2 MB. Reading one needs only NumPy.
"""

from __future__ import annotations

import time
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from mnist_cli.atomic_files import json_text, save_with, write_text_atomic
from mnist_cli.errors import RunDirError, describe_error
from mnist_cli.runs import RunDir


class Snapshots:
    """Writes epoch `e`'s snapshot when told the epoch ended."""

    def __init__(self, run: RunDir, model: Any) -> None:
        self.run = run
        self.model = model

    def epoch_ended(self, epoch: int) -> None:
        """Epoch `epoch` (0-based) ended: keep its weights."""
        weights = {f"w{index:03d}": np.asarray(value, dtype=np.float16)
                   for index, value in enumerate(self.model.get_weights())}
        self.run.snapshots.mkdir(exist_ok=True)

        def write(temporary: Path) -> None:
            with open(temporary, "wb") as handle:
                np.savez(handle, **weights)

        save_with(self.run.snapshot(epoch + 1), write)


def read_snapshot(path: str | Path) -> list[np.ndarray]:
    """The weights a snapshot holds, as float32 arrays in `model.get_weights()` order."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            names = sorted(archive.files)
            return [archive[name].astype(np.float32) for name in names]
    except FileNotFoundError:
        raise RunDirError(f"{path}: no such snapshot") from None
    except (OSError, ValueError, zipfile.BadZipFile, zlib.error) as error:
        raise RunDirError(f"{path}: an unreadable snapshot ({describe_error(error, 120)}); "
                          "delete it") from None


PROGRESS_EVERY_SECONDS = 0.5


class EpochProgress:
    """Writes `progress.json` ({epoch, batches_done, batches}) at most every
    `PROGRESS_EVERY_SECONDS` inside an epoch: a long epoch shows its pieces on the page."""

    def __init__(self, run: RunDir) -> None:
        self.run = run
        self._written = 0.0

    def batch_ended(self, epoch: int, batches_done: int, batches: int) -> None:
        now = time.monotonic()
        if now - self._written < PROGRESS_EVERY_SECONDS and batches_done < batches:
            return
        self._written = now
        write_text_atomic(self.run.progress, json_text(
            {"epoch": epoch + 1, "batches_done": batches_done, "batches": batches}))
