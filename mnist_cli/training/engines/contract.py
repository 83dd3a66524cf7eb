"""The contract between the training loop and its engines, and the shuffling rule.

An engine trains `job.model` from `job.initial_epoch` to `config.train.epochs`. For every
epoch it calls `job.events.epoch_started(epoch)`, trains, makes the Keras model's and
optimizer's variables hold the current state (the checkpoint saves them), then calls
`job.events.epoch_ended(epoch, logs)` with Keras-style logs, and stops when that returns
True (early stopping or Ctrl-C). It starts from the variables it finds in the model
(restored from the checkpoint on a resume), and visits epoch `e` in the order
`epoch_order(seed, e, n, shuffle)`, or another function of `(seed, e)` only, so a resumed
run visits the batches of an uninterrupted one, and trains `batches_in_epoch` batches of it
(all but in the last epoch of a step budget). An engine that can stop inside an epoch calls
`job.events.epoch_interrupted(epoch, batches_done)` there, with the variables current, and
continues such an epoch from `job.partial`.

Importing this module imports NumPy only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from mnist_cli.config import Config, TrainConfig
    from mnist_cli.data import PreparedData


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch `epoch`'s shuffling (0-based), a function of the run's seed only.

    Derived through NumPy's `SeedSequence`, which mixes its inputs well: neighbouring
    seeds and epochs give unrelated streams.
    """
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def epoch_permutation(seed: int, epoch: int, count: int) -> np.ndarray:
    """The order in which epoch `epoch` visits `count` training samples.

    Exactly what `np.random.seed(epoch_seed(seed, epoch)); np.random.permutation(count)`
    draws, which is what Keras's array data adapter does on the JAX backend once the `fit`
    engine has reseeded NumPy at the epoch's start; the fast engines use this directly.
    """
    return np.random.RandomState(epoch_seed(seed, epoch)).permutation(count)


def epoch_order(seed: int, epoch: int, count: int, shuffle: bool = True) -> np.ndarray:
    """The rows epoch `epoch` visits: `epoch_permutation`, or 0..count-1 in every epoch
    when the config says `train.shuffle: false`."""
    if not shuffle:
        return np.arange(count)
    return epoch_permutation(seed, epoch, count)


def batches_per_epoch(count: int, batch_size: int) -> int:
    return math.ceil(count / batch_size)


def batches_in_epoch(train: TrainConfig, epoch: int, count: int) -> int:
    """How many batches epoch `epoch` trains: all of them, except in the last epoch of a
    step budget (`train.steps`), which stops when the budget is spent."""
    full = batches_per_epoch(count, train.batch_size)
    if train.steps is None:
        return full
    return max(0, min(full, train.steps - epoch * full))


def epochs_for_steps(steps: int, count: int, batch_size: int) -> int:
    """The epochs a budget of `steps` batches takes, the last one possibly cut short."""
    return math.ceil(steps / batches_per_epoch(count, batch_size))


class EpochEvents(Protocol):
    """What an engine tells the training loop (`training.epochs.EpochEvents` implements it)."""

    def epoch_started(self, epoch: int) -> None:
        """Epoch `epoch` (0-based) begins."""

    def epoch_ended(self, epoch: int, logs: Mapping[str, Any]) -> bool:
        """Epoch `epoch` is trained and the Keras variables are current; True: stop now."""

    def batch_ended(self, epoch: int, batches_done: int, batches: int) -> None:
        """`batches_done` of the epoch's `batches` are trained (for a progress bar; an
        engine that trains a whole epoch in one program need not call it)."""

    def epoch_interrupted(self, epoch: int, batches_done: int) -> None:
        """Ctrl-C stopped epoch `epoch` after `batches_done` batches; the variables are
        current. Save that partial epoch."""


@dataclass(frozen=True)
class PartialEpoch:
    """An epoch a previous process stopped after `batches_done` batches; `restore_metrics`
    puts back its metric accumulators once the engine has reset them at the epoch's start."""

    batches_done: int
    restore_metrics: Callable[[], None]


@dataclass(frozen=True)
class EngineJob:
    """Everything an engine is given: the compiled Keras model (its optimizer built or
    not), the config, the prepared data, whom to tell, where to start."""

    model: Any  # a compiled keras.Model; typed Any so this module never imports Keras
    config: Config
    data: PreparedData
    events: EpochEvents
    initial_epoch: int = 0
    partial: PartialEpoch | None = None


class Engine(Protocol):
    """A training engine: each engine module has this one function."""

    def train(self, job: EngineJob) -> None:
        """Train `job` following the contract above."""
