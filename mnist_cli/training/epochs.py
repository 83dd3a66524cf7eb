"""The events an engine reports (`engines.contract.EpochEvents`), passed on to the objects
that own each piece of per-epoch state, in a fixed order: (at an epoch's start, the
learning-rate schedule sets the rate;) the history row, the schedule's update, the progress
line, early stopping, the TensorBoard log (when there is one; before the checkpoint, so that
a resume's `purge_step` drops the events of an epoch whose checkpoint never landed), then
the checkpoint (which asks each of them for its state), the epoch's snapshot (with
train.snapshots), then the observers a caller passed
in (a sweep's pruning), then the Ctrl-C check. Nothing here keeps state of its own but which
observer, if any, asked to stop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from mnist_cli.training import interrupt
from mnist_cli.training.checkpoints import (
    Checkpointer,
    ModelVariables,
    OptimizerVariables,
    Stateful,
    TrainingClock,
)
from mnist_cli.training.early_stopping import EarlyStopping
from mnist_cli.training.history import History, epoch_row
from mnist_cli.training.progress import Progress
from mnist_cli.training.schedules import LearningRateSchedule
from mnist_cli.training.snapshots import EpochProgress, Snapshots
from mnist_cli.training.tensorboard import TensorBoardLog

EARLY_STOPPING = "early_stopping"  # metrics.json's stopped_by when early stopping ended it


class EpochObserver(Protocol):
    """Something outside training that watches each finished epoch and may end the run
    there (a sweep's pruner). It is told after the checkpoint is saved, so stopping loses
    nothing; the run then finishes as an early-stopped one, its `metrics.json` saying
    `stopped_by: <stop_reason>`."""

    stop_reason: str

    def epoch_ended(self, row: Mapping[str, Any]) -> bool:
        """Epoch `row["epoch"]` (1-based) is saved with its history row; True: stop now."""


@dataclass
class TrainingState:
    """Everything training changes as it goes; `registry()` is the one list of what the
    checkpoint carries, in the order a resume gives it back."""

    model: Any
    history: History
    progress: Progress
    early_stopping: EarlyStopping
    schedule: LearningRateSchedule
    clock: TrainingClock

    def registry(self) -> list[Stateful]:
        return [ModelVariables(self.model), OptimizerVariables(self.model), self.history,
                self.early_stopping, self.schedule, self.progress, self.clock]


class EpochEvents:
    def __init__(self, state: TrainingState, checkpointer: Checkpointer,
                 tensorboard: TensorBoardLog | None = None,
                 observers: Sequence[EpochObserver] = (),
                 snapshots: Snapshots | None = None,
                 epoch_progress: EpochProgress | None = None) -> None:
        self.state = state
        self.checkpointer = checkpointer
        self.tensorboard = tensorboard
        self.snapshots = snapshots
        self.epoch_progress = epoch_progress
        self.observers = list(observers)
        self.observer_stop: str | None = None  # the stop_reason of the observer that stopped it

    def epoch_started(self, epoch: int) -> None:
        self.state.schedule.epoch_started(epoch)
        self.state.progress.epoch_started(epoch)

    def epoch_ended(self, epoch: int, logs: Mapping[str, Any]) -> bool:
        state = self.state
        row = epoch_row(epoch, logs, state.model.optimizer.learning_rate,
                        state.progress.seconds_in_epoch())
        state.history.append(row)
        state.schedule.update(row)
        state.progress.epoch_ended(row)
        stop = state.early_stopping.update(row)
        if self.tensorboard is not None:
            self.tensorboard.epoch_ended(row)
        self.checkpointer.save_epoch(epoch)
        if self.snapshots is not None:
            self.snapshots.epoch_ended(epoch)
        for observer in self.observers:
            if observer.epoch_ended(row) and self.observer_stop is None:
                self.observer_stop = observer.stop_reason
        return stop or self.observer_stop is not None or interrupt.stop_requested()

    def batch_ended(self, epoch: int, batches_done: int, batches: int) -> None:
        self.state.progress.batch_ended(epoch, batches_done, batches)
        if self.epoch_progress is not None:
            self.epoch_progress.batch_ended(epoch, batches_done, batches)

    def epoch_interrupted(self, epoch: int, batches_done: int) -> None:
        self.state.progress.stopped_in_epoch()
        self.checkpointer.save_partial(epoch, batches_done)

    def stopped_by(self) -> str | None:
        """What ended training before its last epoch: early stopping, an observer, or None."""
        if self.state.early_stopping.stopped_early:
            return EARLY_STOPPING
        return self.observer_stop

    def training_done(self, epochs: int) -> bool:
        """No epoch is left to train: all of them ran, or something stopped it for good."""
        return len(self.state.history) >= epochs or self.stopped_by() is not None
