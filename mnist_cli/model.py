"""Build and compile the Keras model a config describes.

Import this module only after `runtime.start()`: it imports Keras.
"""

from __future__ import annotations

import functools
from typing import Any

import keras

from mnist_cli.config import IMAGE_SIDE, NUM_FEATURES, Config, Initializer, TrainConfig
from mnist_cli.errors import ConfigError, describe_error


@keras.saving.register_keras_serializable(package="mnist_cli")
def quadratic_cost(y_true, y_pred):
    """Nielsen's quadratic cost: 1/2 * sum over the outputs of (y - a)^2, per sample.

    Keras's `mse` takes the mean over the 10 outputs instead of half the sum, which scales
    every gradient by 1/5; this loss makes `learning_rate: 3.0` mean what it does in
    Nielsen's network.py.
    """
    difference = keras.ops.subtract(keras.ops.cast(y_true, y_pred.dtype), y_pred)
    return 0.5 * keras.ops.sum(keras.ops.square(difference), axis=-1)


@keras.saving.register_keras_serializable(package="mnist_cli")
def sum_squared_error(y_true, y_pred):
    """The squared error summed over the outputs, per sample: sum of (y - a)^2.

    The TensorFlow 2 tutorial's `reduce_sum(square(out - y)) / batch_size`: 10 times Keras's
    `mse` (a mean over the 10 outputs) and twice `quadratic_cost`.
    """
    difference = keras.ops.subtract(keras.ops.cast(y_true, y_pred.dtype), y_pred)
    return keras.ops.sum(keras.ops.square(difference), axis=-1)


def _initializer(spec: str | Initializer, key: str) -> keras.initializers.Initializer:
    name = spec if isinstance(spec, str) else spec.name
    arguments = {} if isinstance(spec, str) else dict(spec.model_extra or {})
    try:
        initializer = keras.initializers.get(name)
        if arguments:
            initializer = type(initializer)(**arguments)
    except (ValueError, TypeError) as error:
        raise ConfigError(
            f"model.{key}: {name!r} is not a usable Keras initializer ({error})"
        ) from None
    return initializer


def build_model(config: Config) -> keras.Sequential:
    """The Dense stack of `config.model` as a `keras.Sequential`, ready to compile.

    The initial weights and dropout masks come from Keras's global seed: call
    `runtime.seed_everything(config.seed)` first for a reproducible model. An initializer
    whose arguments Keras refuses only when it makes the weights is a `ConfigError` too.
    """
    model_config = config.model
    if config.data.flatten:
        layers: list = [keras.Input(shape=(NUM_FEATURES,), name="pixels")]
    else:
        layers = [keras.Input(shape=(IMAGE_SIDE, IMAGE_SIDE), name="image"), keras.layers.Flatten()]
    specs = model_config.dense_layers()
    for position, spec in enumerate(specs, start=1):
        layers.append(
            keras.layers.Dense(
                spec.units,
                activation=spec.activation,
                kernel_initializer=_initializer(
                    model_config.kernel_initializer, "kernel_initializer"
                ),
                bias_initializer=_initializer(model_config.bias_initializer, "bias_initializer"),
                kernel_regularizer=(keras.regularizers.L2(model_config.l2)
                                    if model_config.l2 else None),
                kernel_constraint=(keras.constraints.MaxNorm(model_config.max_norm, axis=0)
                                   if model_config.max_norm is not None else None),
                name=f"dense_{position}",
            )
        )
        if model_config.batch_norm and position < len(specs):
            layers.append(keras.layers.BatchNormalization(name=f"batch_norm_{position}"))
        if spec.dropout > 0:
            layers.append(keras.layers.Dropout(spec.dropout, name=f"dropout_{position}"))
    try:
        return keras.Sequential(layers, name="mnist_dense")  # makes the weights
    except (ValueError, TypeError) as error:
        raise ConfigError(
            f"model: the network cannot be built with these initializers "
            f"({describe_error(error)})"
        ) from None


def build_optimizer(train: TrainConfig) -> keras.optimizers.Optimizer:
    """The config's optimizer. Clipping is by the global norm of all gradients together
    (`global_clipnorm`), which keeps the update's direction, unlike per-tensor `clipnorm`."""
    common = {"learning_rate": train.learning_rate, "global_clipnorm": train.clip_norm}
    if train.ema is not None:
        # Keras averages after every update (all engines call the optimizer's apply); the
        # average lives among the optimizer's variables, hence in the checkpoint.
        common.update(use_ema=True, ema_momentum=train.ema)
    if train.optimizer == "adam":
        return keras.optimizers.Adam(**common)
    if train.optimizer == "adamw":
        decay = {} if train.weight_decay is None else {"weight_decay": train.weight_decay}
        return keras.optimizers.AdamW(**common, **decay)
    if train.optimizer == "rmsprop":
        return keras.optimizers.RMSprop(**common, momentum=train.momentum)
    return keras.optimizers.SGD(**common, momentum=train.momentum, nesterov=train.nesterov)


def build_loss(train: TrainConfig):
    if train.loss == "quadratic":
        return quadratic_cost
    if train.loss == "sum_squared_error":
        return sum_squared_error
    if train.loss == "mse":
        return keras.losses.MeanSquaredError()
    return keras.losses.CategoricalCrossentropy(label_smoothing=train.label_smoothing)


def per_sample_loss(train: TrainConfig):
    """The loss of every sample, `(y_true one-hot, y_pred) -> (batch,)`: the very function
    the `build_loss` object applies before it averages over the batch.

    The fast engines average it themselves (weighted by 0/1 row weights, so that a padded
    last batch is the mean over its real rows, as `model.fit`'s smaller last batch is), which
    is why they need the per-sample form: same clipping of probabilities in the
    cross-entropy, same mean over the outputs in `mse`, same half sum in `quadratic`, same
    label smoothing. Regularization penalties are not in it: `regularization_penalty` adds
    them to the batch's mean, as Keras does.
    """
    if train.loss == "quadratic":
        return quadratic_cost
    if train.loss == "sum_squared_error":
        return sum_squared_error
    if train.loss == "mse":
        return keras.losses.mean_squared_error
    if train.label_smoothing:
        return functools.partial(keras.losses.categorical_crossentropy,
                                 label_smoothing=train.label_smoothing)
    return keras.losses.categorical_crossentropy


def regularization_penalty(variables: list, values: list):
    """The regularization terms Keras adds to a batch's mean data loss (`model.losses`): the
    sum of each trainable variable's `regularizer` (L2 on a kernel) on its value in
    `values`; 0.0 when no variable has one. The engines and the TensorBoard gradients that
    compute the loss themselves add it: JAX passes the traced values, TensorFlow the
    variables themselves, inside the gradient tape."""
    terms = [variable.regularizer(value) for variable, value in zip(variables, values)
             if variable.regularizer is not None]
    return keras.ops.sum(keras.ops.stack(terms)) if terms else 0.0


def batch_loss(sample_losses: Any, penalty: Any = 0.0,
               weights: Any = None) -> tuple[Any, Any]:
    """The loss a batch trains on, by Keras's rule: the mean of its rows' losses (the real
    rows only, where 0/1 `weights` mark a padded batch) plus the regularization `penalty`.
    Also returns what the epoch's logged loss adds up for it: that loss times the batch's
    rows, as `model.fit` logs it. The one place this rule is written, for every engine and
    the TensorBoard gradients."""
    if weights is None:
        total = keras.ops.sum(sample_losses)
        count = keras.ops.cast(keras.ops.shape(sample_losses)[0], total.dtype)
    else:
        total = keras.ops.sum(sample_losses * weights)
        count = keras.ops.sum(weights)
    return total / count + penalty, total + penalty * count


def compile_model(model: keras.Model, config: Config) -> keras.Model:
    """Compile with the config's optimizer and loss; labels are one-hot for every loss."""
    model.compile(
        optimizer=build_optimizer(config.train),
        loss=build_loss(config.train),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )
    return model
