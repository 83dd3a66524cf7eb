"""TensorBoard event files in the run directory, written with tensorboardX (no TensorFlow).

`TensorBoardLog` is one more per-epoch object of `epochs.EpochEvents`: after every epoch it
writes the history row's numbers as scalars (step = the epoch number, from 1). With
`train.histogram_every` N, at the first, every N-th and the last epoch it also writes a
histogram of every weight and of its gradient, and each layer's gradient norm; by default
(0) only the final weights' histograms, after training, so that the log costs training a
few milliseconds an epoch (docs/tensorboard.md). At the end, `errors.png` as an image and
the config as hyperparameters with the final test metrics (TensorBoard's HParams view).

A resumed run opens its writer with `purge_step` = the first epoch it will train, so events
of an epoch whose checkpoint never landed are dropped by the readers and the curves go on
without a duplicate step. Events are flushed after every epoch, so a killed process loses
none that its checkpoint covers. Import only after `runtime.start`.
"""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mnist_cli.config import Config
from mnist_cli.data import PreparedData, preprocess

GRADIENT_BATCH = 256  # the fixed training rows the gradients are computed on
SCALARS = ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "seconds")
FINAL_METRICS = ("test_accuracy", "test_loss", "num_errors", "train_seconds")


def tensorboard_log(config: Config, run_path: Path, model: Any, data: PreparedData,
                    first_epoch: int, echo: Callable[[str], None]) -> TensorBoardLog | None:
    """The run's TensorBoard log, or None when `train.tensorboard` is off or tensorboardX is
    not installed (then a one-line note: training does not depend on it)."""
    if not config.train.tensorboard:
        return None
    if not tensorboardx_installed():
        echo('Note: no TensorBoard log (tensorboardX is not installed: '
             'pip install "mnist-cli[tensorboard]"); training goes on without it')
        return None
    return TensorBoardLog(config, run_path, model, data, first_epoch)


def tensorboardx_installed() -> bool:
    return importlib.util.find_spec("tensorboardX") is not None


class TensorBoardLog:
    def __init__(self, config: Config, run_path: Path, model: Any, data: PreparedData,
                 first_epoch: int) -> None:
        from tensorboardX import SummaryWriter

        self.config = config
        self.model = model
        # A fresh run starts at step 1; a resumed one drops whatever it wrote from its first
        # epoch on (an epoch trained but not checkpointed before the process stopped).
        # tensorboardX names a file after the second it opens it and overwrites one of the
        # same name: the suffix keeps a resume in the same second from erasing the events
        # before it, and sorts the files of one second in the order they were written.
        suffix = f".epoch{first_epoch + 1:05d}.{uuid.uuid4().hex[:8]}"
        self.writer = SummaryWriter(logdir=str(run_path), filename_suffix=suffix,
                                    purge_step=first_epoch + 1 if first_epoch else None)
        self.histogram_every = config.train.histogram_every
        self.last_histograms = 0
        self.gradients = None
        if self.histogram_every:
            # The gradients' fixed batch: only its rows are preprocessed.
            features = preprocess(data.pixels_train[:GRADIENT_BATCH], data.preprocessing)
            self.gradients = gradient_function(model, config, features,
                                               data.y_train[:GRADIENT_BATCH])

    def epoch_ended(self, row: dict[str, Any]) -> None:
        step = int(row["epoch"])
        for key in SCALARS:
            if row.get(key) is not None:
                self.writer.add_scalar(_scalar_tag(key), row[key], step)
        every = self.histogram_every
        if every and (step == 1 or step % every == 0 or step == self.config.train.epochs):
            self.write_histograms(step)
        self.writer.flush()

    def write_histograms(self, step: int) -> None:
        """Every weight, and with `histogram_every`, its gradient on the fixed batch and
        each layer's gradient norm."""
        gradients = self.gradients() if self.gradients is not None else {}
        for variable in self.model.trainable_variables:
            self.writer.add_histogram(f"weights/{variable.path}",
                                      np.asarray(variable.numpy()), step)
        for path, gradient in gradients.items():
            self.writer.add_histogram(f"gradients/{path}", gradient, step)
            self.writer.add_scalar(f"gradient_norm/{path}", float(np.linalg.norm(gradient)),
                                   step)
        self.last_histograms = step

    def finish(self, last_epoch: int, errors_png: Path, metrics: dict[str, Any]) -> None:
        """The final weights' histograms (unless the last epoch wrote them), the error
        grid, and the config with the final metrics as one HParams session."""
        from PIL import Image
        from tensorboardX.summary import hparams

        if self.last_histograms != last_epoch:
            self.write_histograms(last_epoch)
        if errors_png.is_file():
            with Image.open(errors_png) as picture:
                image = np.asarray(picture.convert("RGB"))
            self.writer.add_image("errors", image, last_epoch, dataformats="HWC")
        final = {f"final/{key}": float(metrics[key]) for key in FINAL_METRICS
                 if isinstance(metrics.get(key), (int, float))}
        # In this run's own folder (tensorboardX's add_hparams would make a sub-run), so
        # the HParams view lists one row per run directory.
        for summary in hparams(hyperparameters(self.config), final):
            self.writer.file_writer.add_summary(summary)
        for tag, value in final.items():
            self.writer.add_scalar(tag, value, last_epoch)
        self.close()

    def close(self) -> None:
        self.writer.close()


def _scalar_tag(key: str) -> str:
    """`loss` -> `train/loss`, `val_loss` -> `validation/loss`: one chart per metric name
    group in TensorBoard, training and validation side by side."""
    if key.startswith("val_"):
        return f"validation/{key.removeprefix('val_')}"
    if key in ("learning_rate", "seconds"):
        return f"epoch/{key}"
    return f"train/{key}"


def hyperparameters(config: Config) -> dict[str, bool | int | float | str]:
    """Every config key, dotted (`train.learning_rate`), as a value HParams can show."""
    flat: dict[str, bool | int | float | str] = {}

    def visit(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                visit(f"{prefix}.{key}" if prefix else key, item)
        elif isinstance(value, (bool, int, float, str)):
            flat[prefix] = value
        else:  # None, the layer list, an initializer with arguments
            flat[prefix] = str(value)

    visit("", config.model_dump(mode="json"))
    flat["model.layers"] = "-".join(str(size) for size in config.model.stack())
    return flat


def gradient_function(model: Any, config: Config, features: np.ndarray,
                      labels: np.ndarray) -> Callable[[], dict[str, np.ndarray]] | None:
    """A function that returns the gradient of the training loss (without dropout, with the
    regularization penalties) on `features` for every trainable variable at its current
    value, by the variable's path; None on a backend where this is not done (torch)."""
    import keras

    from mnist_cli.metrics import one_hot
    from mnist_cli.model import batch_loss, per_sample_loss, regularization_penalty

    sample_loss = per_sample_loss(config.train)
    targets = one_hot(labels)
    variables = model.trainable_variables
    backend = keras.backend.backend()

    def by_path(gradients: Any) -> dict[str, np.ndarray]:
        return {variable.path: np.asarray(keras.ops.convert_to_numpy(gradient))
                for variable, gradient in zip(variables, gradients)}

    if backend == "jax":
        import jax

        def loss_of(trainable: list[Any], non_trainable: list[Any]) -> Any:
            outputs, _ = model.stateless_call(trainable, non_trainable, features,
                                              training=False)
            return batch_loss(sample_loss(targets, outputs),
                              regularization_penalty(variables, trainable))[0]

        # Compiled once per run: JAX's eager mode would compile each operation on its own,
        # many times slower on the first call.
        compiled = jax.jit(jax.grad(loss_of))
        return lambda: by_path(compiled(
            [variable.value for variable in variables],
            [variable.value for variable in model.non_trainable_variables]))
    if backend == "tensorflow":
        import tensorflow as tf

        def tensorflow_gradients() -> dict[str, np.ndarray]:
            with tf.GradientTape() as tape:
                outputs = model(features, training=False)
                loss = batch_loss(sample_loss(targets, outputs),
                                  regularization_penalty(variables, variables))[0]
            return by_path(tape.gradient(loss, variables))

        return tensorflow_gradients
    return None
