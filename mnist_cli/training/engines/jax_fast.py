"""The fast engine on JAX: a whole epoch is one `jax.jit` program.

`model.fit` runs one compiled step per batch and returns to Python between them; on a
small Dense network that overhead is most of the time. Here the epoch is one program: a
`jax.lax.scan` over the batches, each step calling the model's own layers through Keras's
stateless API (`Layer.stateless_call`) and the model's own optimizer
(`Optimizer.stateless_apply`: same update rule, same learning rate variable, same step
counter), with the per-sample Keras loss (`model.per_sample_loss`). The training data
lives on the device as uint8 pixels, passed to the program as arguments (closed over, they
would become constants of the program: three times the compile time). The host only draws
each epoch's order (`Batches.order`) and reads back four numbers per epoch.

State between epochs is (trainable values, non-trainable values, optimizer values): the
non-trainable values hold the Dropout layers' seed generator states and the
BatchNormalization layers' moving mean and variance, so the dropout masks come from saved
state and a resumed run draws the masks, and continues the moving statistics, of an
uninterrupted one. After every epoch the state is written back into the Keras variables
(`write_back`), which is what the checkpoint and `model.save` read.

Regularization, as `model.fit` does it: the loss of a step is the weighted mean of the
per-sample loss plus `model.regularization_penalty` (each variable's regularizer on its
traced value); constraints (max-norm) are applied by `stateless_apply` after the update; a
BatchNormalization layer is called with the row weights as its mask, so the padding rows
of the last batch take no part in its moments.

Two exact shortcuts for the first Dense layer, which reads the inputs:

- Its kernel gradient is computed as `x^T @ g` with `x^T` materialised
  (`input_matmul`): left to itself XLA folds the transpose into a dot that is slower on
  a CPU.
- Dead input columns (`live_columns`): a column that is zero in every training sample
  gives its kernel row a zero gradient in every step. Adam, SGD and RMSprop without weight
  decay then leave that row, and its optimizer slots, exactly as they are when the slots
  start at zero (they do, unless the data changed, which resume refuses; checked anyway).
  Not so with weight decay (AdamW shrinks every row), an L2 penalty on the first kernel
  (its gradient is not zero on the dead rows) or a max-norm constraint (a column's norm
  counts the dead rows, and the compact copy of the variables carries no constraint): the
  shortcut is off then (`_dead_columns_are_exact`). Clipping by the global norm keeps it:
  the dead rows' gradients are zeros, which add nothing to the norm.
  So the program trains on the live columns only (MNIST's border pixels are dead), and the
  dead rows are put back, unchanged, into the full kernel for validation and for the Keras
  variables. Preparing it costs more than one epoch saves, so a one-epoch run does without
  (`DEAD_COLUMNS_MIN_EPOCHS`).

Data parallel (`runtime.devices` > 1): the state and the data are replicated on every
device and each epoch's order is split along the batch axis (`jax.sharding`), so every
step's batch is cut into one equal part per device; XLA partitions the compiled epoch
accordingly and sums the gradients across the devices. The padding rows of the last batch
keep every part the same size.

Augmentation (`data.augment`): the training pixels go to the device as they are (uint8,
before preprocessing) and the batches are distorted with `augmented_features`
(`data/augment.py`), keyed by (seed, epoch, row), inside the compiled epoch, each one a
step ahead of the step that trains on it (`_scan`); the epoch is an argument of the
program, so one compiled program serves every epoch. Distortions move ink onto the
border, so the dead-column shortcut is off then.

A learning-rate schedule sets the Keras optimizer's rate at each epoch start; `start_epoch`
copies it into the optimizer values the program carries.

The compile cache (`jax_cache`) lets a second run of the same config skip compiling.

Import this module only after `runtime.start()` chose JAX.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import keras
import numpy as np

from mnist_cli import runtime
from mnist_cli.config import NUM_CLASSES, Config
from mnist_cli.data import PreparedData
from mnist_cli.data.augment import augmented_features
from mnist_cli.keras_compat import is_plain_dense
from mnist_cli.model import batch_loss, per_sample_loss, regularization_penalty
from mnist_cli.training.engines.contract import EngineJob
from mnist_cli.training.engines.fast_common import (
    Batches,
    EncodedFeatures,
    encode_features,
    encode_training_features,
    epoch_logs,
    is_batch_norm,
    live_columns,
    train_with,
)

# Dropping dead columns costs about one epoch's saving in preparation (docs/performance.md):
# it pays from the second epoch on.
DEAD_COLUMNS_MIN_EPOCHS = 2

# An epoch of more multiply-adds than this (forward and backward, about several seconds of a
# laptop CPU) is trained in pieces of about this size, each one compiled program, so that a
# progress bar moves inside it; a smaller epoch stays one program. Decided from the config
# alone, so a run computes the same way on a terminal, in a pipe and when resumed.
PIECE_MULTIPLY_ADDS = 5e11

@jax.custom_vjp
def input_matmul(inputs: jax.Array, kernel: jax.Array) -> jax.Array:
    """`inputs @ kernel` for a layer that reads the model's inputs (no gradient needed for
    them), with the kernel gradient computed from a materialised `inputs^T`."""
    return inputs @ kernel


def _input_matmul_forward(inputs: jax.Array, kernel: jax.Array) -> tuple[jax.Array, jax.Array]:
    return inputs @ kernel, inputs


def _input_matmul_backward(inputs: jax.Array,
                           gradient: jax.Array) -> tuple[jax.Array, jax.Array]:
    # The barrier keeps XLA from fusing the transpose into the dot (slower on a CPU).
    return jnp.zeros_like(inputs), jax.lax.optimization_barrier(inputs.T) @ gradient


input_matmul.defvjp(_input_matmul_forward, _input_matmul_backward)


def _optimizer_keeps_zero_rows(optimizer: keras.optimizers.Optimizer) -> bool:
    """Whether a kernel row with zero gradients and zero slots stays as it is."""
    return (isinstance(optimizer, (keras.optimizers.Adam, keras.optimizers.SGD,
                                   keras.optimizers.RMSprop))
            and not getattr(optimizer, "weight_decay", None))


def _dead_columns_are_exact(model: keras.Model) -> bool:
    """Whether training on the live columns leaves the dead kernel rows as training on all
    columns does: the optimizer keeps zero rows, no penalty on the first kernel gives them a
    gradient, and no constraint (lost on the compact copy of the variables) rescales them."""
    variables = model.trainable_variables
    return (_optimizer_keeps_zero_rows(model.optimizer)
            and variables[0].regularizer is None
            and all(variable.constraint is None for variable in variables))


class JaxEpochs:
    """The compiled epoch of one model, its state, and the data on the device."""

    def __init__(self, model: keras.Model, config: Config, data: PreparedData,
                 batches: Batches) -> None:
        self.model = model
        self.optimizer = model.optimizer
        self.batches = batches
        self.loss = per_sample_loss(config.train)
        self.data_config = config.data
        self.seed = config.seed
        self.learning_rate_position = next(
            (position for position, variable in enumerate(self.optimizer.variables)
             if variable is self.optimizer.learning_rate), None)
        self.has_validation = len(data.y_val) > 0
        self.layer_slices = self._layer_slices(model)
        self.takes_training = ["training" in inspect.signature(layer.call).parameters
                               for layer in model.layers]
        first = model.layers[0]
        self.first_dense = first if is_plain_dense(first) else None

        encoded = encode_training_features(data, config.data.augment is not None)
        trainable = [np.asarray(variable.value) for variable in model.trainable_variables]
        optimizer_values = [np.asarray(variable.value) for variable in self.optimizer.variables]
        self.live: np.ndarray | None = None
        self.train_optimizer = self.optimizer
        # Positions of the optimizer variables that are slots of the first kernel.
        self.kernel_slots: list[int] = []
        # Decided from the config, not from the epochs left: a resumed run must compute
        # exactly as the uninterrupted one did (the two ways round floats differently).
        # A distorted digit moves ink into any column: no column is dead then.
        if (self.first_dense is not None and config.data.augment is None
                and config.train.epochs >= DEAD_COLUMNS_MIN_EPOCHS
                and encoded.values.ndim == 2 and _dead_columns_are_exact(model)):
            self._drop_dead_columns(encoded, trainable, optimizer_values)
        # np.take, unlike x[:, live], returns a C-contiguous array, and twice as fast.
        pixels = encoded.values if self.live is None else np.take(encoded.values, self.live,
                                                                   axis=1)

        self.full_values = (trainable[0], [optimizer_values[i] for i in self.kernel_slots])
        if self.live is not None:
            trainable = [np.take(trainable[0], self.live, axis=0), *trainable[1:]]
            for position in self.kernel_slots:
                optimizer_values[position] = np.take(optimizer_values[position], self.live,
                                                     axis=0)
        non_trainable = [variable.value for variable in model.non_trainable_variables]
        # Where the arrays live: one device, or replicated on each data parallel device
        # with each batch split across them.
        devices = runtime.data_parallel_devices()
        if devices is None:
            replicated = self.batch_split = None
        else:
            from jax.sharding import Mesh, NamedSharding, PartitionSpec

            mesh = Mesh(np.array(devices), ("batch",))
            replicated = NamedSharding(mesh, PartitionSpec())
            self.batch_split = NamedSharding(mesh, PartitionSpec(None, "batch"))
        # NumPy arrays go to the device with `device_put`: converting dtypes or slicing on
        # the device would compile one small program each.
        self.replicated = replicated
        self.state = (jax.device_put(trainable, replicated),
                      jax.device_put(non_trainable, replicated),
                      jax.device_put(optimizer_values, replicated))
        host = {
            "pixels": pixels,
            "labels": np.asarray(data.y_train, dtype=np.int32),
            "row_weights": None,
            "table": encoded.table,
            "validation_pixels": None,
            "validation_labels": None,
            "validation_table": None,
            "frozen_kernel": None if self.live is None else self.full_values[0],
            "live": None if self.live is None else self.live.astype(np.int32),
            "epoch": np.int32(0),
        }
        if self.has_validation:
            validation = encode_features(data.pixels_val, data.pixel_table)
            host["validation_pixels"] = validation.values
            host["validation_labels"] = np.asarray(data.y_val, dtype=np.int32)
            host["validation_table"] = validation.table
        self.device = jax.device_put(host, replicated)
        self.device["row_weights"] = jax.device_put(batches.row_weights(), self.batch_split)
        self._epoch = jax.jit(self._epoch_program)
        # The carried state is consumed by each piece: its buffers are reused, not copied.
        self._piece = jax.jit(self._piece_program, donate_argnums=0)
        self._metrics = jax.jit(self._metrics_program, static_argnums=1)
        work = 3 * batches.batch_size * sum(int(np.prod(value.shape)) for value in trainable)
        self.piece_batches = max(1, int(PIECE_MULTIPLY_ADDS // max(work, 1)))

    @staticmethod
    def _layer_slices(model: keras.Model) -> list[tuple[Any, slice, slice]]:
        """Each layer with the slices of the model's trainable and non-trainable variable
        lists that belong to it (Sequential lists them layer by layer)."""
        slices, trainable_start, state_start = [], 0, 0
        for layer in model.layers:
            trainable_count = len(layer.trainable_variables)
            state_count = len(layer.non_trainable_variables)
            slices.append((layer, slice(trainable_start, trainable_start + trainable_count),
                           slice(state_start, state_start + state_count)))
            trainable_start += trainable_count
            state_start += state_count
        if (trainable_start, state_start) != (len(model.trainable_variables),
                                              len(model.non_trainable_variables)):
            raise ValueError("the model's variables are not listed layer by layer")
        return slices

    def _drop_dead_columns(self, encoded: EncodedFeatures, trainable: list[np.ndarray],
                           optimizer_values: list[np.ndarray]) -> None:
        """Set `self.live`, `self.kernel_slots` and `self.train_optimizer` when some input
        columns are zero in every training sample and their kernel rows' slots are zero."""
        live = live_columns(encoded)
        if live is None or self.optimizer.use_ema:
            # The weights' average (train.ema) of a dead row is its initial value, which a
            # compact kernel would not keep: train on every column.
            return
        kernel = trainable[0]
        compact_shapes = [(len(live), *kernel.shape[1:]), *(value.shape for value in trainable[1:])]
        compact_optimizer = type(self.optimizer).from_config(self.optimizer.get_config())
        # Made in a stateless scope, variables are created without values (Keras defers
        # their initialization): only their shapes matter here, since `stateless_apply` is
        # given the values. Initializing them would compile a `zeros` per new shape.
        with keras.StatelessScope():
            compact_variables = [
                keras.Variable(initializer="zeros", shape=shape, dtype=variable.dtype,
                               name=variable.name)
                for shape, variable in zip(compact_shapes, self.model.trainable_variables)
            ]
            compact_optimizer.build(compact_variables)
        if len(compact_optimizer.variables) != len(optimizer_values):
            return
        dead = np.setdiff1d(np.arange(kernel.shape[0]), live)
        slots = [position for position, variable in enumerate(compact_optimizer.variables)
                 if tuple(variable.shape) != optimizer_values[position].shape]
        for position in slots:
            if optimizer_values[position].shape != kernel.shape or np.any(
                    optimizer_values[position][dead]):
                return  # not a zero slot of the first kernel: train on every column
        self.live, self.kernel_slots, self.train_optimizer = live, slots, compact_optimizer

    # ---------------------------------------------------------------- the compiled epoch

    def _decode(self, values: jax.Array, table: jax.Array | None) -> jax.Array:
        return values.astype(jnp.float32) if table is None else table[values]

    def _outputs(self, trainable: list, non_trainable: list, inputs: jax.Array,
                 training: bool, rows: jax.Array | None = None) -> tuple[jax.Array, list]:
        """The model's outputs and its updated non-trainable values (dropout seeds, batch
        normalization's moving statistics); `rows`, the batch's row weights, masks the
        padding rows out of batch normalization's moments."""
        outputs, updated = inputs, []
        for index, (layer, trainable_slice, state_slice) in enumerate(self.layer_slices):
            weights, state = trainable[trainable_slice], non_trainable[state_slice]
            if index == 0 and training and self.first_dense is not None:
                outputs = input_matmul(outputs, weights[0])
                if layer.use_bias:
                    outputs = outputs + weights[1]
                if layer.activation is not None:
                    outputs = layer.activation(outputs)
            elif is_batch_norm(layer) and rows is not None:
                outputs, state = layer.stateless_call(weights, state, outputs,
                                                      training=training, mask=rows > 0)
            else:
                # Only layers whose call takes `training` get it (Flatten's does not).
                options = {"training": training} if self.takes_training[index] else {}
                outputs, state = layer.stateless_call(weights, state, outputs, **options)
            updated.extend(state)
        return outputs, updated

    def _scan(self, carry: tuple, order: jax.Array, weights: jax.Array,
              device: dict) -> tuple:
        """`carry` after one training step per batch of `order` (batches, rows).

        With `data.augment` each step also distorts the next step's batch and carries it:
        distorted in the step that trains on it, within the same fusions as the first
        layer's product, the gathers compile to code several times slower on a CPU
        (docs/augmentation.md). The last step distorts its own batch once more, unused."""
        if self.data_config.augment is None:
            def plain(carry: tuple, batch: tuple) -> tuple[tuple, None]:
                inputs = self._decode(device["pixels"][batch[0]], device["table"])
                return self._step(carry, batch, inputs, device), None

            return jax.lax.scan(plain, carry, (order, weights))[0]

        def distort(rows: jax.Array) -> jax.Array:
            return augmented_features(device["pixels"][rows], rows, self.seed,
                                      device["epoch"], self.data_config)

        def body(state: tuple, batch: tuple) -> tuple[tuple, None]:
            carry, inputs = state
            rows, weights, following = batch
            return (self._step(carry, (rows, weights), inputs, device), distort(following)), None

        following = jnp.concatenate([order[1:], order[-1:]])
        (carry, _), _ = jax.lax.scan(body, (carry, distort(order[0])),
                                     (order, weights, following))
        return carry

    def _step(self, carry: tuple, batch: tuple, inputs: jax.Array, device: dict) -> tuple:
        trainable, non_trainable, optimizer_values, loss_sum, correct_sum = carry
        rows, weights = batch
        labels = device["labels"][rows]
        targets = jax.nn.one_hot(labels, NUM_CLASSES, dtype=jnp.float32)

        def objective(trainable: list) -> tuple[jax.Array, tuple]:
            outputs, updated = self._outputs(trainable, non_trainable, inputs, True, weights)
            loss, logged = batch_loss(
                self.loss(targets, outputs),
                regularization_penalty(self.model.trainable_variables, trainable), weights)
            return loss, (outputs, updated, logged)

        (_, (outputs, non_trainable, total)), gradients = jax.value_and_grad(
            objective, has_aux=True)(trainable)
        trainable, optimizer_values = self.train_optimizer.stateless_apply(
            optimizer_values, gradients, trainable)
        correct = jnp.sum((jnp.argmax(outputs, axis=-1) == labels) * weights)
        return (trainable, non_trainable, optimizer_values, loss_sum + total,
                correct_sum + correct)

    def _full_trainable(self, trainable: list, device: dict) -> list:
        if device["live"] is None:
            return trainable
        return [device["frozen_kernel"].at[device["live"]].set(trainable[0]), *trainable[1:]]

    def _epoch_program(self, state: tuple, order: jax.Array, device: dict) -> tuple:
        carry = self._scan((*state, jnp.float32(0), jnp.float32(0)), order,
                           device["row_weights"][: order.shape[0]], device)
        return self._metrics_program(carry, self.batches.rows_in(order), device)

    def _piece_program(self, carry: tuple, order: jax.Array, weights: jax.Array,
                       device: dict) -> tuple:
        """Some batches of an epoch trained in pieces: the scan of `_epoch_program`, cut."""
        return self._scan(carry, order, weights, device)

    def _metrics_program(self, carry: tuple, count: int, device: dict) -> tuple:
        """The epoch's logs from the carried sums (`count` real rows), and validation."""
        trainable, non_trainable, optimizer_values, loss_sum, correct_sum = carry
        metrics = [loss_sum / count, correct_sum / count]
        if device["validation_pixels"] is not None:
            inputs = self._decode(device["validation_pixels"], device["validation_table"])
            labels = device["validation_labels"]
            full_trainable = self._full_trainable(trainable, device)
            outputs, _ = self._outputs(full_trainable, non_trainable, inputs, False)
            targets = jax.nn.one_hot(labels, NUM_CLASSES, dtype=jnp.float32)
            metrics.append(batch_loss(
                self.loss(targets, outputs),
                regularization_penalty(self.model.trainable_variables, full_trainable))[0])
            metrics.append(jnp.mean((jnp.argmax(outputs, axis=-1) == labels).astype(
                jnp.float32)))
        return (trainable, non_trainable, optimizer_values), jnp.stack(metrics)

    # ---------------------------------------------------------------- the engine protocol

    def run_epoch(self, order: np.ndarray,
                  on_batches: Callable[[int, int], None] | None = None) -> dict[str, float]:
        total = order.shape[0]
        if total <= self.piece_batches:
            self.state, metrics = self._epoch(self.state, self._split(order), self.device)
            return epoch_logs(metrics)  # waits for the epoch: one transfer of 2-4 numbers
        carry = (*self.state, jnp.float32(0), jnp.float32(0))
        weights = self.batches.row_weights()
        for start in range(0, total, self.piece_batches):
            end = min(total, start + self.piece_batches)
            carry = self._piece(carry, self._split(order[start:end]),
                                self._split(weights[start:end]), self.device)
            if on_batches is not None:
                jax.block_until_ready(carry[3])
                on_batches(end, total)
        self.state, metrics = self._metrics(carry, self.batches.rows_in(order), self.device)
        return epoch_logs(metrics)

    def start_epoch(self, epoch: int) -> None:
        self.device["epoch"] = jax.device_put(np.int32(epoch), self.replicated)
        if self.learning_rate_position is not None:
            trainable, non_trainable, optimizer_values = self.state
            optimizer_values = list(optimizer_values)
            rate = np.asarray(self.optimizer.learning_rate.value)
            optimizer_values[self.learning_rate_position] = jax.device_put(rate,
                                                                           self.replicated)
            self.state = (trainable, non_trainable, optimizer_values)

    def _split(self, batches: np.ndarray) -> Any:
        """Batches as they go to the device: split across the devices when there are several."""
        return batches if self.batch_split is None else jax.device_put(batches,
                                                                       self.batch_split)

    def write_back(self) -> None:
        trainable, non_trainable, optimizer_values = (list(part) for part in self.state)
        if self.live is not None:
            full_kernel, full_slots = self.full_values
            trainable[0] = _expand(full_kernel, self.live, trainable[0])
            for position, full in zip(self.kernel_slots, full_slots):
                optimizer_values[position] = _expand(full, self.live, optimizer_values[position])
        for variables, values in ((self.model.trainable_variables, trainable),
                                  (self.model.non_trainable_variables, non_trainable),
                                  (self.optimizer.variables, optimizer_values)):
            for variable, value in zip(variables, values):
                variable.assign(value)


def _expand(full: np.ndarray, rows: np.ndarray, values: jax.Array) -> np.ndarray:
    """`full` with `rows` replaced by `values` (the rows trained on the live columns)."""
    expanded = np.array(full)
    expanded[rows] = np.asarray(values)
    return expanded


def train(job: EngineJob) -> None:
    """The fast engine on JAX (`engines.run`)."""
    train_with(JaxEpochs, job)
