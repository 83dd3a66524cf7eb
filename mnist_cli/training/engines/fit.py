"""The reference engine: Keras's own `model.fit`, on every backend.

A Keras callback turns fit's epochs into the contract's events and makes fit resumable:

- Shuffling: on the JAX backend Keras's array adapter draws each epoch's permutation from
  NumPy's global generator, which the callback reseeds with `epoch_seed(seed, epoch)` at
  every epoch's start, so an epoch's order does not depend on how many epochs this process
  ran before it. TensorFlow shuffles inside its tf.data pipeline (and torch with its own
  sampler), with a generator whose position cannot be saved or set per epoch: there a
  resumed run sees other batches than an uninterrupted one (`reproducible_order`); without
  shuffling (`train.shuffle: false`) the order is the same on every backend.
- Ctrl-C: after every batch the stop flag is checked; in the middle of an epoch fit stops
  there, and where the order is reproducible the partial epoch is saved
  (`events.epoch_interrupted`) and later continued from its next batch, in the order the
  uninterrupted epoch used, with its metric accumulators restored. Elsewhere an epoch
  stopped in its middle is trained again from its start.

- Augmentation (`data.augment`): before each epoch the whole training array is distorted on
  the host by the function the fast engines run on the device (`augment_epoch_on_host`,
  keyed by (seed, epoch, row)), and `model.fit` trains that one epoch on it; the shuffling
  rule is unchanged, so on JAX both engines see the same distorted images in the same
  batches.

Import this module only after `runtime.start()`: it imports Keras.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from mnist_cli import keras_compat
from mnist_cli.keras_compat import sync_jax_state
from mnist_cli.metrics import one_hot
from mnist_cli.training import interrupt
from mnist_cli.training.engines.contract import (
    EngineJob,
    EpochEvents,
    batches_in_epoch,
    batches_per_epoch,
    epoch_order,
    epoch_seed,
)


def reproducible_order(shuffle: bool) -> bool:
    """Whether `model.fit` visits epoch `e` in the order `epoch_order(seed, e, n, shuffle)`:
    always without shuffling, and on JAX only with it (see the module's docstring)."""
    return not shuffle or keras.backend.backend() == "jax"


class _EpochCallback(keras.callbacks.Callback):
    """Adapts `model.fit` to the contract's events. A continued partial epoch
    (`first_batch` > 0) restores its metric accumulators after Keras reset them
    (`on_epoch_start`), and `single_epoch` stops fit after it."""

    def __init__(self, events: EpochEvents, *, seed: int, batches_per_epoch: int,
                 save_partial: bool, first_batch: int = 0, on_epoch_start: Any = None,
                 single_epoch: bool = False) -> None:
        super().__init__()
        self.events = events
        self.seed = seed
        self.batches_per_epoch = batches_per_epoch
        self.save_partial = save_partial
        self.first_batch = first_batch
        self.on_epoch_start = on_epoch_start
        self.single_epoch = single_epoch
        self.epoch = 0
        self.interrupted_in_epoch = False
        self.stopped = False  # training must not go on: early stopping or Ctrl-C

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        np.random.seed(epoch_seed(self.seed, epoch))
        self.epoch = epoch
        self.events.epoch_started(epoch)
        if self.on_epoch_start is not None:
            self.on_epoch_start()
            self.on_epoch_start = None

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        batches_done = self.first_batch + batch + 1
        self.events.batch_ended(self.epoch, batches_done, self.batches_per_epoch)
        if self.interrupted_in_epoch or not interrupt.stop_requested():
            return
        if batches_done >= self.batches_per_epoch:
            return  # the epoch ends now anyway; its end saves it and stops
        self.interrupted_in_epoch = True
        self.stopped = True
        self.model.stop_training = True
        if self.save_partial:
            sync_jax_state(self.model)
            self.events.epoch_interrupted(self.epoch, batches_done)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.interrupted_in_epoch:
            return  # a partial epoch is no row of the history
        if self.events.epoch_ended(epoch, logs or {}):
            self.stopped = True
            self.model.stop_training = True
        elif self.single_epoch:
            self.model.stop_training = True


def train(job: EngineJob) -> None:
    """Train `job` with `model.fit`: first the rest of a partial epoch (`job.partial`), then
    the whole epochs, then the last epoch of a step budget when the budget cuts it short."""
    model, config, data = job.model, job.config, job.data
    x_train, y_train = data.x_train, one_hot(data.y_train)
    count, batch_size, shuffle = len(x_train), config.train.batch_size, config.train.shuffle
    validation = (data.x_val, one_hot(data.y_val)) if len(data.y_val) else None
    save_partial = reproducible_order(shuffle)

    def fit(x: np.ndarray, y: np.ndarray, first_epoch: int, end_epoch: int, *,
            shuffle: bool, batches: int, **callback_options: Any) -> bool:
        callback = _EpochCallback(job.events, seed=config.seed, batches_per_epoch=batches,
                                  save_partial=save_partial, **callback_options)
        with keras_compat.fit_keeps_training_weights(model.optimizer):
            model.fit(
                x,
                y,
                batch_size=batch_size,
                epochs=end_epoch,
                initial_epoch=first_epoch,
                validation_data=validation,
                shuffle=shuffle,
                callbacks=[callback],
                verbose=0,  # the events draw the progress
            )
        return callback.stopped

    def features(epoch: int) -> np.ndarray:
        """The training features epoch `epoch` trains on: distorted anew with `data.augment`."""
        if config.data.augment is None:
            return x_train
        from mnist_cli.data.augment import augment_epoch_on_host

        return augment_epoch_on_host(data.pixels_train, config.seed, epoch, config.data)

    def fit_rows(epoch: int, first_batch: int = 0, **callback_options: Any) -> bool:
        """One epoch from batch `first_batch` to its last (or its budget's), in its order."""
        batches = batches_in_epoch(config.train, epoch, count)
        rows = epoch_order(config.seed, epoch, count, shuffle)[
            first_batch * batch_size: batches * batch_size]
        return fit(features(epoch)[rows], y_train[rows], epoch, epoch + 1, shuffle=False,
                   batches=batches, first_batch=first_batch, single_epoch=True,
                   **callback_options)

    epoch, epochs = job.initial_epoch, config.train.epochs
    if job.partial is not None:
        if fit_rows(epoch, job.partial.batches_done,
                    on_epoch_start=job.partial.restore_metrics):
            return
        epoch += 1
    full = batches_per_epoch(count, batch_size)
    if config.data.augment is not None:  # one fit per epoch, each on its own distortions
        for each in range(epoch, epochs):
            if batches_in_epoch(config.train, each, count) < full:
                fit_rows(each)
                return
            if fit(features(each), y_train, each, each + 1, shuffle=shuffle, batches=full):
                return
        return
    whole_epochs = epochs if batches_in_epoch(config.train, epochs - 1, count) == full \
        else epochs - 1
    if epoch < whole_epochs:
        if fit(x_train, y_train, epoch, whole_epochs, shuffle=shuffle, batches=full):
            return
        epoch = whole_epochs
    if epoch < epochs:
        fit_rows(epoch)
