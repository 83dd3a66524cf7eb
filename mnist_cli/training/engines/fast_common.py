"""What the fast engines share, whatever the backend.

A fast engine turns one epoch into one compiled program. What such a program needs that
does not depend on the backend lives here:

- `Batches`: every epoch is cut into batches of one shape. The last, smaller batch of
  `model.fit` becomes a full batch padded with rows of weight 0, and every batch's loss is
  the weighted mean over its rows divided by the number of real rows: the same loss, the
  same gradients, the same metrics as fit's smaller batch, for networks whose layers treat
  each row on its own (Dense, Dropout, Flatten), with one compiled step instead of two.
  BatchNormalization does not (it normalizes by the batch's moments): the engines call it
  with the row weights as its `mask`, so its moments are those of the real rows alone, as
  in fit's smaller batch (`check_layers` allows exactly these layers).
- `Batches.order`: epoch `e` visits the samples in `contract.epoch_order(seed, e, n)`.
- `encode_features`: the training data goes to the device as the prepared data's uint8
  pixels (a quarter of the memory and of the traffic of float32) with the exact float32
  feature of each of the 256 pixel values.
- `live_columns`: the input columns that are not zero in every training sample (see
  `jax_fast` for why a zero column can be dropped exactly).
- `train_with`: the per-epoch loop of the engine contract around one compiled epoch.

Import this module only after `runtime.start()`: it imports Keras.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import keras
import numpy as np

from mnist_cli.config import Config
from mnist_cli.data import PreparedData, apply_pixel_table
from mnist_cli.errors import ConfigError, RunDirError
from mnist_cli.training.engines.contract import (
    EngineJob,
    EpochEvents,
    batches_in_epoch,
    epoch_order,
)

# What a compiled epoch returns, in this order (the last two only with a validation set).
LOG_NAMES = ("loss", "accuracy", "val_loss", "val_accuracy")


def epoch_logs(values: Any) -> dict[str, float]:
    """The Keras-style logs of an epoch from the numbers its program returned."""
    return {name: float(value) for name, value in zip(LOG_NAMES, np.asarray(values))}


class EpochProgram(Protocol):
    """One backend's compiled epoch, as `train_epochs` drives it."""

    def run_epoch(self, order: np.ndarray,
                  on_batches: Callable[[int, int], None] | None = None) -> dict[str, float]:
        """Train one epoch visiting the rows in `order` ((batches, batch_size) int32: all
        `Batches.number` batches, the padded rows last, or fewer full batches when a step
        budget cuts the epoch short); return the Keras-style logs: loss, accuracy, and
        val_loss, val_accuracy when there is a validation set. A program that trains a long
        epoch in pieces calls `on_batches(done, total)` after each."""

    def write_back(self) -> None:
        """Make the Keras model's and optimizer's variables hold the current state."""

    def start_epoch(self, epoch: int) -> None:
        """Epoch `epoch` begins: take the learning rate the schedule just set on the Keras
        optimizer, and the epoch whose distortions to draw (`data.augment`)."""


@dataclass(frozen=True)
class Batches:
    """An epoch of `count` samples in batches of `batch_size`, the last one padded."""

    count: int
    batch_size: int

    @property
    def number(self) -> int:
        return math.ceil(self.count / self.batch_size)

    @property
    def padded_count(self) -> int:
        return self.number * self.batch_size

    def row_weights(self) -> np.ndarray:
        """(batches, batch_size) float32: 1 for a real row, 0 for a padding row."""
        return (np.arange(self.padded_count) < self.count).astype(np.float32).reshape(
            self.number, self.batch_size)

    def rows_in(self, order: np.ndarray) -> int:
        """The real rows of an epoch's `order`: all of them, or whole batches only when a
        step budget cut the epoch short (padding sits in the last batch alone)."""
        if order.shape[0] == self.number:
            return self.count
        return order.shape[0] * self.batch_size

    def order(self, seed: int, epoch: int, shuffle: bool = True,
              batches: int | None = None) -> np.ndarray:
        """(batches, batch_size) int32: the rows epoch `epoch` visits, batch by batch (the
        first `batches` batches; default all); the padding rows repeat row 0 (their weight
        is 0)."""
        order = np.zeros(self.padded_count, dtype=np.int32)
        order[: self.count] = epoch_order(seed, epoch, self.count, shuffle)
        order = order.reshape(self.number, self.batch_size)
        return order if batches is None else order[:batches]


@dataclass(frozen=True)
class EncodedFeatures:
    """Features as stored on the device: `values`, uint8 pixels, and `table`, the float32
    feature of each pixel value 0..255 (None: the feature is the value itself)."""

    values: np.ndarray
    table: np.ndarray | None


def encode_features(pixels: np.ndarray, table: np.ndarray) -> EncodedFeatures:
    """The prepared data's uint8 `pixels` and `pixel_table` as the device stores them.

    When every feature is a whole number 0..255 (binarized pixels are 0/1, unscaled pixels
    their own value), the features themselves are stored as uint8 and converted on the
    device; otherwise the pixels are, and the device looks each one up in the table."""
    if np.array_equal(table, np.rint(table)) and table.min() >= 0 and table.max() <= 255:
        return EncodedFeatures(apply_pixel_table(table.astype(np.uint8), pixels), None)
    return EncodedFeatures(np.ascontiguousarray(pixels, dtype=np.uint8), table)


def encode_training_features(data: PreparedData, augmenting: bool) -> EncodedFeatures:
    """The training set as the device stores it: `encode_features`, or with `data.augment`
    the raw uint8 pixels, which the compiled epoch distorts and only then preprocesses."""
    if augmenting:
        return EncodedFeatures(np.ascontiguousarray(data.pixels_train, np.uint8), None)
    return encode_features(data.pixels_train, data.pixel_table)


def live_columns(encoded: EncodedFeatures) -> np.ndarray | None:
    """The input columns that are not zero in every training sample (sorted indices), or
    None when every column is live. Pixel 0 is feature 0 for every preprocessing, and only
    pixel 0 is (checked), so the uint8 pixels answer for the features."""
    values = encoded.values
    if encoded.table is not None and not (encoded.table[0] == 0 and np.all(encoded.table[1:])):
        values = encoded.table[values]
    flat = values.reshape(len(values), -1)
    live = np.flatnonzero(flat.any(axis=0))
    return None if len(live) == flat.shape[1] else live


def is_batch_norm(layer: Any) -> bool:
    """A layer the fast engines call with the batch's row weights as its `mask`."""
    return isinstance(layer, keras.layers.BatchNormalization)


def check_layers(model: keras.Model) -> None:
    """The fast engines pad the last batch with rows of weight 0, which is exact for layers
    that treat every row on its own, and for BatchNormalization given the row mask (plain
    BatchNormalization only: renorm and synchronized moments are not masked the same way);
    their loss adds the variables' regularizers (`model.regularization_penalty`), not
    activity regularizers. Anything else a library user's model holds is refused here
    rather than trained differently."""
    row_wise = (keras.layers.Dense, keras.layers.Dropout, keras.layers.Flatten,
                keras.layers.InputLayer, keras.layers.BatchNormalization)
    for layer in model.layers:
        if not isinstance(layer, row_wise):
            raise ConfigError(
                f"train.engine: the fast engine trains Dense, BatchNormalization, Dropout and "
                f"Flatten layers only, not {type(layer).__name__}; use --engine fit"
            )
        if is_batch_norm(layer) and (layer.renorm or layer.synchronized):
            raise ConfigError(
                f"train.engine: the fast engine does not train BatchNormalization with renorm "
                f"or synchronized moments (layer {layer.name}); use --engine fit"
            )
        if getattr(layer, "activity_regularizer", None) is not None:
            raise ConfigError(
                f"train.engine: the fast engine does not add activity_regularizer penalties "
                f"to the loss (layer {layer.name}); use --engine fit"
            )


def train_epochs(program: EpochProgram, events: EpochEvents, config: Config, initial_epoch: int,
                 batches: Batches) -> None:
    """The engine contract: for each epoch from `initial_epoch`, announce it, train it,
    make the Keras variables current (the checkpoint saves them), report it; stop when the
    events say so (early stopping, Ctrl-C)."""
    for epoch in range(initial_epoch, config.train.epochs):
        events.epoch_started(epoch)
        program.start_epoch(epoch)
        count = batches_in_epoch(config.train, epoch, batches.count)
        order = batches.order(config.seed, epoch, config.train.shuffle, count)
        logs = program.run_epoch(order, lambda done, total, epoch=epoch: events.batch_ended(
            epoch, done, total))
        program.write_back()
        if events.epoch_ended(epoch, logs):
            return


def train_with(program_class: Callable[..., EpochProgram], job: EngineJob) -> None:
    """Train `job` with one backend's compiled epoch, `program_class(model, config, data,
    batches)`, following the engine contract. The fast engines continue from epoch ends
    only: a partial epoch comes from the fit engine (`engines.check_resumable`)."""
    model = job.model
    check_layers(model)
    if job.partial is not None:
        raise RunDirError("the fast engine cannot continue an epoch stopped in its middle; "
                          "resume this run with --engine fit")
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    batches = Batches(len(job.data.y_train), job.config.train.batch_size)
    program = program_class(model, job.config, job.data, batches)
    train_epochs(program, job.events, job.config, job.initial_epoch, batches)
