"""The fast engine on TensorFlow: a whole epoch is one XLA-compiled `tf.function`.

`model.fit` on TensorFlow feeds every batch through a `tf.data` pipeline and returns to
Python after every step (or every `steps_per_execution` steps). Here the epoch is one
`tf.function(jit_compile=True)`: a loop over the batches (`tf.range`, a while loop inside
the compiled program) that gathers each batch from the training data already on the
device as uint8 pixels, runs the Keras model under a `GradientTape`, and applies the
model's own Keras optimizer (`optimizer.apply`: same update rule, learning rate, step
counter). The loss is the per-sample Keras loss (`model.per_sample_loss`) averaged over
the real rows of the batch (`fast_common.Batches`), plus the regularization terms
(`model.regularization_penalty`, as Keras adds `model.losses`), accumulated with the
accuracy in the loop, as fit's metrics are. The layers are called one by one so that
BatchNormalization gets the row weights as its mask (the padding rows stay out of its
moments); `optimizer.apply` applies the max-norm constraints after each update, as in fit.

On TensorFlow the Keras variables are TensorFlow variables that the compiled program
updates in place, the Dropout layers' seed generator states included, so the variables
are current after every epoch without copying anything back (`write_back` has nothing to
do), and a resumed run continues from the saved states.

Augmentation (`data.augment`): the training pixels go to the device as they are (uint8,
before preprocessing) and every step distorts its batch with `augmented_features`
(`data/augment.py`, keyed by (seed, epoch, row)) inside the compiled epoch; the epoch is an
argument of the program, so one compilation serves every epoch.

The dead-column shortcut of the JAX engine is not used here: it would need a second,
narrower copy of the model's first layer and of its optimizer slots.

Import this module only after `runtime.start()` chose TensorFlow.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from mnist_cli.config import NUM_CLASSES, Config
from mnist_cli.data import PreparedData
from mnist_cli.data.augment import augmented_features
from mnist_cli.model import batch_loss, per_sample_loss, regularization_penalty
from mnist_cli.training.engines.contract import EngineJob
from mnist_cli.training.engines.fast_common import (
    Batches,
    encode_features,
    encode_training_features,
    epoch_logs,
    is_batch_norm,
    train_with,
)


class TensorFlowEpochs:
    """The compiled epoch of one model, and the data on the device."""

    def __init__(self, model: keras.Model, config: Config, data: PreparedData,
                 batches: Batches) -> None:
        self.model = model
        self.optimizer = model.optimizer
        self.batches = batches
        self.loss = per_sample_loss(config.train)
        self.data_config, self.seed = config.data, config.seed
        self.epoch = 0
        encoded = encode_training_features(data, config.data.augment is not None)
        self.pixels = tf.constant(encoded.values)
        self.table = None if encoded.table is None else tf.constant(encoded.table)
        self.labels = tf.constant(np.asarray(data.y_train, dtype=np.int32))
        self.row_weights = tf.constant(batches.row_weights())
        self.validation: tuple[tf.Tensor, tf.Tensor | None, tf.Tensor] | None = None
        if len(data.y_val):
            validation = encode_features(data.pixels_val, data.pixel_table)
            self.validation = (
                tf.constant(validation.values),
                None if validation.table is None else tf.constant(validation.table),
                tf.constant(np.asarray(data.y_val, dtype=np.int32)),
            )
        self._epoch = tf.function(self._epoch_program, jit_compile=True)

    @staticmethod
    def _decode(values: tf.Tensor, table: tf.Tensor | None) -> tf.Tensor:
        if table is None:
            return tf.cast(values, tf.float32)
        return tf.gather(table, tf.cast(values, tf.int32))

    def _training_outputs(self, inputs: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
        """The model in training mode, layer by layer, the padding rows (weight 0) masked
        out of batch normalization's moments."""
        outputs = inputs
        for layer in self.model.layers:
            if is_batch_norm(layer):
                outputs = layer(outputs, training=True, mask=weights > 0)
            else:
                outputs = layer(outputs, training=True)
        return outputs

    def _inputs(self, rows: tf.Tensor, epoch: tf.Tensor) -> tf.Tensor:
        if self.data_config.augment is not None:
            return augmented_features(tf.gather(self.pixels, rows), rows, self.seed, epoch,
                                      self.data_config)
        return self._decode(tf.gather(self.pixels, rows), self.table)

    def _epoch_program(self, order: tf.Tensor, epoch: tf.Tensor) -> tf.Tensor:
        variables = self.model.trainable_variables
        loss_sum = tf.constant(0.0)
        correct_sum = tf.constant(0.0)
        for index in tf.range(order.shape[0]):
            rows = order[index]
            weights = self.row_weights[index]
            inputs = self._inputs(rows, epoch)
            labels = tf.gather(self.labels, rows)
            targets = tf.one_hot(labels, NUM_CLASSES, dtype=tf.float32)
            with tf.GradientTape() as tape:
                outputs = self._training_outputs(inputs, weights)
                loss, logged = batch_loss(self.loss(targets, outputs),
                                          regularization_penalty(variables, variables), weights)
            self.optimizer.apply(tape.gradient(loss, variables), variables)
            hits = tf.equal(tf.argmax(outputs, axis=-1, output_type=tf.int32), labels)
            loss_sum += logged
            correct_sum += tf.reduce_sum(tf.cast(hits, tf.float32) * weights)
        count = float(self.batches.rows_in(order))  # a number known when tracing
        metrics = [loss_sum / count, correct_sum / count]
        if self.validation is not None:
            values, table, labels = self.validation
            outputs = self.model(self._decode(values, table), training=False)
            targets = tf.one_hot(labels, NUM_CLASSES, dtype=tf.float32)
            hits = tf.equal(tf.argmax(outputs, axis=-1, output_type=tf.int32), labels)
            metrics.append(batch_loss(self.loss(targets, outputs),
                                      regularization_penalty(variables, variables))[0])
            metrics.append(tf.reduce_mean(tf.cast(hits, tf.float32)))
        return tf.stack(metrics)

    def run_epoch(self, order: np.ndarray, on_batches: Any = None) -> dict[str, float]:
        """The whole epoch in one program (no pieces: `on_batches` is never called)."""
        epoch = tf.constant(self.epoch, tf.int32)
        return epoch_logs(self._epoch(tf.constant(order), epoch).numpy())

    def write_back(self) -> None:
        """Nothing to copy: the compiled program updated the Keras variables in place."""

    def start_epoch(self, epoch: int) -> None:
        """The epoch whose distortions to draw; the program reads the learning-rate
        variable itself."""
        self.epoch = epoch


def train(job: EngineJob) -> None:
    """The fast engine on TensorFlow (`engines.run`)."""
    train_with(TensorFlowEpochs, job)
