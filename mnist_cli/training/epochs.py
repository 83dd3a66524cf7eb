"""The events an engine reports (`engines.contract.EpochEvents`), passed on to the objects
that own each piece of per-epoch state, in a fixed order: the history row, the progress
line, early stopping, the TensorBoard log (when there is one; before the checkpoint, so that
a resume's `purge_step` drops the events of an epoch whose checkpoint never landed), then
the checkpoint (which asks each of them for its state), then the Ctrl-C check. Nothing here
keeps state of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mnist_cli.training import interrupt
from mnist_cli.training.checkpoints import Checkpointer
from mnist_cli.training.early_stopping import EarlyStopping
from mnist_cli.training.history import History, epoch_row
from mnist_cli.training.progress import Progress
from mnist_cli.training.tensorboard import TensorBoardLog


class EpochEvents:
    def __init__(self, model: Any, history: History, progress: Progress,
                 early_stopping: EarlyStopping, checkpointer: Checkpointer,
                 tensorboard: TensorBoardLog | None = None) -> None:
        self.model = model
        self.history = history
        self.progress = progress
        self.early_stopping = early_stopping
        self.checkpointer = checkpointer
        self.tensorboard = tensorboard

    def epoch_started(self, epoch: int) -> None:
        self.progress.epoch_started(epoch)

    def epoch_ended(self, epoch: int, logs: Mapping[str, Any]) -> bool:
        row = epoch_row(epoch, logs, self.model.optimizer.learning_rate,
                        self.progress.seconds_in_epoch())
        self.history.append(row)
        self.progress.epoch_ended(row)
        stop = self.early_stopping.update(row)
        if self.tensorboard is not None:
            self.tensorboard.epoch_ended(row)
        self.checkpointer.save_epoch(epoch)
        return stop or interrupt.stop_requested()

    def batch_ended(self, epoch: int, batches_done: int, batches: int) -> None:
        self.progress.batch_ended(epoch, batches_done, batches)

    def epoch_interrupted(self, epoch: int, batches_done: int) -> None:
        self.progress.stopped_in_epoch()
        self.checkpointer.save_partial(epoch, batches_done)
