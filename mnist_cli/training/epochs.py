"""The events an engine reports (`engines.contract.EpochEvents`), passed on to the objects
that own each piece of per-epoch state, in a fixed order: (at an epoch's start, the
learning-rate schedule sets the rate;) the history row, the schedule's update, the progress
line, early stopping, the TensorBoard log (when there is one; before the checkpoint, so that
a resume's `purge_step` drops the events of an epoch whose checkpoint never landed), then
the checkpoint (which asks each of them for its state), then the observers a caller passed
in (a sweep's pruning), then the Ctrl-C check. Nothing here keeps state of its own but which
observer, if any, asked to stop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from mnist_cli.training import interrupt
from mnist_cli.training.checkpoints import Checkpointer
from mnist_cli.training.early_stopping import EarlyStopping
from mnist_cli.training.history import History, epoch_row
from mnist_cli.training.progress import Progress
from mnist_cli.training.schedules import LearningRateSchedule
from mnist_cli.training.tensorboard import TensorBoardLog


class EpochObserver(Protocol):
    """Something outside training that watches each finished epoch and may end the run
    there (a sweep's pruner). It is told after the checkpoint is saved, so stopping loses
    nothing; the run then finishes as an early-stopped one, its `metrics.json` saying
    `stopped_by: <stop_reason>`."""

    stop_reason: str

    def epoch_ended(self, row: Mapping[str, Any]) -> bool:
        """Epoch `row["epoch"]` (1-based) is saved with its history row; True: stop now."""


class EpochEvents:
    def __init__(self, model: Any, history: History, progress: Progress,
                 early_stopping: EarlyStopping, checkpointer: Checkpointer,
                 tensorboard: TensorBoardLog | None = None,
                 observers: Sequence[EpochObserver] = (),
                 schedule: LearningRateSchedule | None = None) -> None:
        self.model = model
        self.schedule = schedule
        self.history = history
        self.progress = progress
        self.early_stopping = early_stopping
        self.checkpointer = checkpointer
        self.tensorboard = tensorboard
        self.observers = list(observers)
        self.stopped_by: str | None = None  # the stop_reason of the observer that stopped it

    def epoch_started(self, epoch: int) -> None:
        if self.schedule is not None:
            self.schedule.epoch_started(epoch)
        self.progress.epoch_started(epoch)

    def epoch_ended(self, epoch: int, logs: Mapping[str, Any]) -> bool:
        row = epoch_row(epoch, logs, self.model.optimizer.learning_rate,
                        self.progress.seconds_in_epoch())
        self.history.append(row)
        if self.schedule is not None:
            self.schedule.update(row)
        self.progress.epoch_ended(row)
        stop = self.early_stopping.update(row)
        if self.tensorboard is not None:
            self.tensorboard.epoch_ended(row)
        self.checkpointer.save_epoch(epoch)
        for observer in self.observers:
            if observer.epoch_ended(row) and self.stopped_by is None:
                self.stopped_by = observer.stop_reason
        return stop or self.stopped_by is not None or interrupt.stop_requested()

    def batch_ended(self, epoch: int, batches_done: int, batches: int) -> None:
        self.progress.batch_ended(epoch, batches_done, batches)

    def epoch_interrupted(self, epoch: int, batches_done: int) -> None:
        self.progress.stopped_in_epoch()
        self.checkpointer.save_partial(epoch, batches_done)
