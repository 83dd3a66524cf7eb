"""Train a config into a run directory.

The flow is one way: config -> data -> model -> fit -> run directory. The run directory is
written as training goes: `config.yaml` first (so a run can always be re-evaluated or
resumed), then `history.csv` and `checkpoint.npz` after every epoch, then the model, the
figures and, last, `metrics.json`: a run is finished exactly when it has `metrics.json`
(the checkpoint is then deleted). `train(..., resume=...)` continues a stopped run.

The engine contract: an engine calls `recorder.epoch_started(epoch)` and
`recorder.epoch_ended(epoch, logs)` for every epoch from `initial_epoch` on, and stops when
`epoch_ended` returns True (early stopping or Ctrl-C); before calling `epoch_ended` it has
written the current weights and optimizer state back into the Keras `model` and
`model.optimizer` variables, which is what the checkpoint saves. It starts from the
variables it finds in the model (restored from the checkpoint on a resume), and shuffles
epoch `e` with `checkpoints.epoch_permutation(seed, e, n)` (or another function of
`(seed, e)` only) so a resumed run visits the same batches as an uninterrupted one.
The engines: `fit_with_keras` below (Keras's `model.fit`, the reference) and the fast ones
of `mnist_cli.engines` (one compiled program per epoch), chosen by `resolve_engine`.

Import this module only after `backend.activate_backend()`: it imports Keras.
"""

from __future__ import annotations

import contextlib
import math
import platform
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from mnist_cli import __version__, engines, interrupt, plots
from mnist_cli.backend import enable_determinism, keep_tensorflow_unloaded, seed_everything
from mnist_cli.checkpoints import (
    Checkpoint,
    Checkpointer,
    ResumePoint,
    data_fingerprint,
    epoch_permutation,
    epoch_seed,
)
from mnist_cli.config import Config
from mnist_cli.data import PreparedData, check_batch_size, prepare
from mnist_cli.errors import Interrupted
from mnist_cli.evaluate import (
    classification_metrics,
    loss_from_probabilities,
    one_hot,
    predict_probabilities,
)
from mnist_cli.model import build_model, compile_model
from mnist_cli.runs import (
    RunDir,
    create_run_dir,
    history_csv_text,
    remove_temporaries,
    save_with,
    write_json_atomic,
    write_text_atomic,
)


def _float_or_none(value: Any) -> float | None:
    """A metric as a plain float, written with the digits its float32 value really has."""
    if value is None:
        return None
    return float(str(np.float32(np.asarray(value))))


class EpochRecorder:
    """What happens at every epoch's end, whichever engine trains: the history row, the
    atomic rewrite of `history.csv`, early stopping, and any extra per-epoch actions
    (checkpoints) registered in `after_epoch`.

    Engines call `epoch_started(epoch)` and `epoch_ended(epoch, logs)` with 0-based epochs
    and Keras-style logs; `epoch_ended` returns True when training must stop: early
    stopping, or a Ctrl-C (`interrupt.stop_requested()`), whose checkpoint the
    `after_epoch` actions have then already written.
    """

    def __init__(self, run: RunDir, config: Config, model: keras.Model,
                 history: list[dict[str, Any]] | None = None,
                 echo: Callable[[str], None] | None = None) -> None:
        self.run = run
        self.config = config
        self.model = model
        self.history: list[dict[str, Any]] = list(history or [])
        self.echo = echo
        self.after_epoch: list[Callable[[int], None]] = []
        self.best_value: float | None = None
        self.best_weights: list[np.ndarray] | None = None
        self.best_epoch: int | None = None
        self.epochs_without_improvement = 0
        self.stopped_early = False
        self._epoch_start = time.perf_counter()

    def epoch_started(self, epoch: int, elapsed: float = 0.0) -> None:
        """`elapsed`: seconds the epoch already ran in an earlier process (a partial epoch
        continued after Ctrl-C), so its row reports the epoch's whole time."""
        self._epoch_start = time.perf_counter() - elapsed

    def seconds_in_epoch(self) -> float:
        return time.perf_counter() - self._epoch_start

    def epoch_ended(self, epoch: int, logs: dict[str, Any]) -> bool:
        seconds = time.perf_counter() - self._epoch_start
        row = {
            "epoch": epoch + 1,
            "loss": _float_or_none(logs.get("loss")),
            "accuracy": _float_or_none(logs.get("accuracy")),
            "val_loss": _float_or_none(logs.get("val_loss")),
            "val_accuracy": _float_or_none(logs.get("val_accuracy")),
            "learning_rate": _float_or_none(self.model.optimizer.learning_rate),
            "seconds": round(seconds, 4),
        }
        self.history.append(row)
        write_text_atomic(self.run.history, history_csv_text(self.history))
        if self.echo is not None:
            self.echo(self._progress_line(row))
        stop = self._early_stopping(row)
        for action in self.after_epoch:
            action(epoch)
        return stop or interrupt.stop_requested()

    def _progress_line(self, row: dict[str, Any]) -> str:
        parts = [f"epoch {row['epoch']}/{self.config.train.epochs}"]
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            if row[key] is not None:
                parts.append(f"{key} {row[key]:.4f}")
        parts.append(f"{row['seconds']:.2f}s")
        return " - ".join(parts)

    def _early_stopping(self, row: dict[str, Any]) -> bool:
        settings = self.config.train.early_stopping
        if settings is None:
            return False
        value = row.get(settings.monitor)
        if value is None:
            return False
        sign = 1.0 if "loss" in settings.monitor else -1.0
        improved = self.best_value is None or sign * (value - self.best_value) < -settings.min_delta
        if improved:
            self.best_value = value
            self.best_epoch = row["epoch"]
            self.epochs_without_improvement = 0
            if settings.restore_best_weights:
                self.best_weights = self.model.get_weights()
            return False
        self.epochs_without_improvement += 1
        if self.epochs_without_improvement >= settings.patience:  # as keras.callbacks.EarlyStopping
            self.stopped_early = True
            return True
        return False

    def finish(self) -> None:
        """Restore the best weights when early stopping asked for it."""
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)


def reproducible_shuffling() -> bool:
    """Whether `model.fit` visits epoch `e` in the order `epoch_permutation(seed, e, n)`.

    On the JAX backend Keras's array adapter draws each epoch's permutation from NumPy's
    global generator, which `_RecorderCallback` reseeds from `(seed, epoch)` at every
    epoch's start. TensorFlow shuffles inside its tf.data pipeline (and torch with its own
    sampler), with a generator whose position cannot be saved or set per epoch: there a
    resumed run sees other batches than an uninterrupted one, and an epoch stopped by Ctrl-C
    is trained again from its start.
    """
    return keras.backend.backend() == "jax"


class _RecorderCallback(keras.callbacks.Callback):
    """Adapts the `EpochRecorder` to `model.fit`, and makes `fit` resumable.

    - Shuffling: NumPy's global generator is reseeded with `epoch_seed(seed, epoch)` at each
      epoch's start, before Keras draws the epoch's permutation from it (JAX backend), so an
      epoch's order does not depend on how many epochs this process ran before it.
    - Ctrl-C: after every batch the stop flag is checked; in the middle of an epoch fit
      stops there and `on_interrupt(epoch, batches_done)` runs (with the Keras variables
      made current first), and the partial epoch is not recorded as a history row.
    - A continued partial epoch (`first_batch` > 0): `on_epoch_start` restores its metric
      accumulators after Keras reset them, and `single_epoch` stops fit after it.
    """

    def __init__(self, recorder: EpochRecorder, *, seed: int, batches_per_epoch: int,
                 first_batch: int = 0, carried_seconds: float = 0.0,
                 on_epoch_start: Callable[[], None] | None = None, single_epoch: bool = False,
                 on_interrupt: Callable[[int, int], None] | None = None) -> None:
        super().__init__()
        self.recorder = recorder
        self.seed = seed
        self.batches_per_epoch = batches_per_epoch
        self.first_batch = first_batch
        self.carried_seconds = carried_seconds
        self.on_epoch_start = on_epoch_start
        self.single_epoch = single_epoch
        self.on_interrupt = on_interrupt
        self.epoch = 0
        self.interrupted_in_epoch = False
        self.stopped = False  # training must not go on: early stopping or Ctrl-C

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        np.random.seed(epoch_seed(self.seed, epoch))
        self.epoch = epoch
        self.recorder.epoch_started(epoch, elapsed=self.carried_seconds)
        self.carried_seconds = 0.0
        if self.on_epoch_start is not None:
            self.on_epoch_start()
            self.on_epoch_start = None

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if self.interrupted_in_epoch or not interrupt.stop_requested():
            return
        batches_done = self.first_batch + batch + 1
        if batches_done >= self.batches_per_epoch:
            return  # the epoch ends now anyway; its end saves it and stops
        self.interrupted_in_epoch = True
        self.stopped = True
        self.model.stop_training = True
        if self.on_interrupt is not None:
            sync = getattr(self.model, "jax_state_sync", None)  # JAX keeps state aside
            if sync is not None:
                sync()
            self.on_interrupt(self.epoch, batches_done)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.interrupted_in_epoch:
            return  # a partial epoch is no row of the history
        if self.recorder.epoch_ended(epoch, logs or {}):
            self.stopped = True
            self.model.stop_training = True
        elif self.single_epoch:
            self.model.stop_training = True


def fit_with_keras(model: keras.Model, config: Config, data: PreparedData,
                   recorder: EpochRecorder, initial_epoch: int, progress_bar: bool, *,
                   checkpoint: Checkpoint | None = None,
                   checkpointer: Checkpointer | None = None) -> None:
    """The reference engine: Keras's own `model.fit`.

    Ctrl-C stops it after the current batch. Where the shuffling is reproducible (JAX,
    `reproducible_shuffling`) the partly trained epoch is saved through `checkpointer`, and
    a `checkpoint` holding one is continued from its next batch: the epoch's remaining
    batches, in the order the uninterrupted epoch used, are fitted first with the epoch's
    metric accumulators restored, then the remaining epochs as usual. Elsewhere an epoch
    stopped in its middle is trained again from its start.
    """
    x_train, y_train = data.x_train, one_hot(data.y_train)
    batch_size = config.train.batch_size
    batches_per_epoch = math.ceil(len(x_train) / batch_size)
    validation = (data.x_val, one_hot(data.y_val)) if len(data.y_val) else None
    save_partial = checkpointer is not None and reproducible_shuffling()

    def on_interrupt(epoch: int, batches_done: int) -> None:
        if save_partial:
            checkpointer.save_partial(epoch, batches_done, recorder.seconds_in_epoch())

    def fit(x: np.ndarray, y: np.ndarray, first_epoch: int, *, shuffle: bool,
            **callback_options: Any) -> bool:
        callback = _RecorderCallback(recorder, seed=config.seed,
                                     batches_per_epoch=batches_per_epoch,
                                     on_interrupt=on_interrupt, **callback_options)
        model.fit(
            x,
            y,
            batch_size=batch_size,
            epochs=config.train.epochs,
            initial_epoch=first_epoch,
            validation_data=validation,
            shuffle=shuffle,
            callbacks=[callback],
            verbose=1 if progress_bar else 0,
        )
        return callback.stopped

    if checkpoint is not None and checkpoint.batches_done and checkpointer is not None:
        rest = epoch_permutation(config.seed, initial_epoch, len(x_train))[
            checkpoint.batches_done * batch_size:]
        stopped = fit(x_train[rest], y_train[rest], initial_epoch, shuffle=False,
                      first_batch=checkpoint.batches_done,
                      carried_seconds=checkpoint.partial_epoch_seconds,
                      on_epoch_start=lambda: checkpointer.restore_metrics(checkpoint),
                      single_epoch=True)
        if stopped:
            return
        initial_epoch += 1
    if initial_epoch < config.train.epochs:
        fit(x_train, y_train, initial_epoch, shuffle=True)


@dataclass
class TrainResult:
    run_dir: Path
    metrics: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)


def versions() -> dict[str, str]:
    backend = keras.backend.backend()
    backend_module = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}.get(backend)
    backend_version = getattr(sys.modules.get(backend_module), "__version__", "unknown")
    return {
        "mnist_cli": __version__,
        "python": platform.python_version(),
        "keras": keras.__version__,
        "backend": backend,
        "backend_version": backend_version,
        "numpy": np.__version__,
        "platform": platform.platform(),
    }


def resolve_engine(config: Config) -> str:
    """'auto' -> the engine to use on this backend (`engines.resolve_engine`)."""
    return engines.resolve_engine(config.train.engine, keras.backend.backend())


def peak_memory_mib() -> float | None:
    """The peak resident memory of this process so far, in MiB (None where unknown)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is in KiB on Linux, in bytes on macOS.
    return round(peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024, 1)


FAST_ENGINE_NOTICE = (
    "\nCtrl-C: stopping at the end of the current epoch and saving a checkpoint "
    "(press Ctrl-C again to quit at once).\n"
)


def train(config: Config, *, echo: Callable[[str], None] = print,
          progress_bar: bool = False, resume: ResumePoint | None = None) -> TrainResult:
    """Train `config` into a new run directory and return its path and test metrics.

    With `resume` (from `checkpoints.find_resume_point`), continue that stopped run instead,
    in its own folder, from its checkpoint (or from scratch when it stopped before its first
    epoch ended); `config` is then the run's own config.yaml. `progress_bar` shows Keras's
    per-batch bar (for a terminal); otherwise one line per epoch is passed to `echo`.

    Ctrl-C stops training at the next batch or epoch end, and raises `Interrupted` (exit 130)
    with the resume command once the checkpoint is saved; a second Ctrl-C, or one after
    training, raises it at once (the last epoch's checkpoint is on disk).
    """
    keep_tensorflow_unloaded()
    engine = resolve_engine(config)
    if engine == "fast":
        engines.check_resumable(resume.checkpoint if resume is not None else None)
        if keras.backend.backend() == "jax":  # before anything compiles
            from mnist_cli.engines.jax_fast import enable_compile_cache

            enable_compile_cache()
    enable_determinism(config.runtime.deterministic)
    seed_everything(config.seed)
    data = prepare(config)
    check_batch_size(config, data)
    resolved = config.model_copy(deep=True)
    resolved.runtime.backend = keras.backend.backend()
    resolved.train.engine = engine
    checkpoint = resume.checkpoint if resume is not None else None
    # Built before the run directory: a config error Keras finds (an initializer's
    # arguments, say) leaves no empty run behind.
    model = compile_model(build_model(config), config)

    if resume is None:
        run = RunDir(create_run_dir(config.output.root, config.name))
        try:
            write_text_atomic(run.config, resolved.to_yaml())
        except BaseException:
            with contextlib.suppress(OSError):  # still empty: leave no run that is not one
                run.path.rmdir()
            raise
        echo(f"Run directory: {run.path}")
    else:
        run = resume.run
        remove_temporaries(run.path)  # left by a process killed in the middle of a save
        echo(f"Resuming {run.path} after "
             + (checkpoint.describe() if checkpoint else "no completed epoch: from the start"))
    # From here on, the run directory exists: Ctrl-C always ends with the resume command.
    checkpointer: Checkpointer | None = None
    on_disk = (checkpoint.epochs_done, checkpoint.batches_done) if checkpoint else None
    try:
        echo(f"Data: {data.source} - {len(data.y_train)} train, {len(data.y_val)} validation, "
             f"{len(data.y_test)} test")
        # Keras's progress bar replaces the per-epoch lines only where Keras trains.
        recorder = EpochRecorder(run, resolved, model,
                                 echo=None if progress_bar and engine == "fit" else echo)
        checkpointer = Checkpointer(run, model, recorder, seed=config.seed,
                                    fingerprint=data_fingerprint(data.x_train, data.y_train))
        if checkpoint is not None:
            checkpointer.restore(checkpoint)
        # The checkpoint's history: drops the row of an epoch whose checkpoint never landed.
        write_text_atomic(run.history, history_csv_text(recorder.history))
        recorder.after_epoch.append(checkpointer.save_epoch)
        initial_epoch = checkpoint.epochs_done if checkpoint is not None else 0
        notice = FAST_ENGINE_NOTICE if engine == "fast" else interrupt.NOTICE
        with interrupt.stop_on_sigint(notice):
            # The clock covers the engine's whole work: putting the data on the device,
            # compiling, the epochs, and the per-epoch history and checkpoint writes.
            checkpointer.start_clock()
            if checkpoint is None or not checkpoint.training_done(config):
                if engine == "fast":
                    from mnist_cli.engines.fast_common import train_fast

                    train_fast(model, config, data, recorder, initial_epoch)
                else:
                    fit_with_keras(model, config, data, recorder, initial_epoch=initial_epoch,
                                   progress_bar=progress_bar, checkpoint=checkpoint,
                                   checkpointer=checkpointer)
            train_seconds = checkpointer.train_seconds()
        finished = len(recorder.history) >= config.train.epochs or recorder.stopped_early
        if interrupt.stop_requested() and not finished:
            raise _interrupted(run, checkpointer.last_saved, config)
        return _finish(run, config, data, model, recorder, engine, train_seconds, checkpointer,
                       echo)
    except KeyboardInterrupt:
        saved = checkpointer.last_saved if checkpointer is not None else None
        raise _interrupted(run, saved or on_disk, config) from None


def _interrupted(run: RunDir, saved: tuple[int, int] | None, config: Config) -> Interrupted:
    """The message after Ctrl-C: where training stopped, what is saved (`saved`: epochs and
    batches of the checkpoint on disk), how to go on."""
    if saved is None:
        where = "before the first epoch ended (nothing saved but the config)"
    elif saved[1]:
        where = f"in epoch {saved[0] + 1} after batch {saved[1]}; saved there"
    else:
        where = f"with epochs 1-{saved[0]} of {config.train.epochs} saved"
    return Interrupted(
        f"Interrupted {where} in {run.path}.\n"
        f"Resume with: mnist train --resume {shlex.quote(str(run.path))}"
    )


def _finish(run: RunDir, config: Config, data: PreparedData, model: keras.Model,
            recorder: EpochRecorder, engine: str, train_seconds: float,
            checkpointer: Checkpointer, echo: Callable[[str], None]) -> TrainResult:
    """Write the model, the figures and, last, metrics.json, which marks the run finished."""
    recorder.finish()
    save_with(run.model, model.save)

    metrics, outputs = test_metrics(model, config, data)
    epochs_run = len(recorder.history)
    metrics.update({
        "train_seconds": round(train_seconds, 3),
        "samples_per_second": round(len(data.y_train) * epochs_run / train_seconds, 1)
        if train_seconds > 0 else None,
        "epochs_completed": epochs_run,
        "stopped_early": recorder.stopped_early,
        "best_epoch": recorder.best_epoch,
        "num_train": int(len(data.y_train)),
        "num_validation": int(len(data.y_val)),
        "seed": config.seed,
        "engine": engine,
        "peak_memory_mib": peak_memory_mib(),
        "data_source": data.source,
        "versions": versions(),
    })
    save_with(run.curves, plots.learning_curves_figure(
        recorder.history, f"{config.name}: {'-'.join(map(str, config.model.stack()))}"
    ).savefig)
    write_error_grid(run.errors, data, outputs, config.name)
    write_json_atomic(run.metrics, metrics)
    checkpointer.remove()
    echo(f"Test accuracy: {metrics['test_accuracy']:.4f} "
         f"({metrics['num_errors']} errors in {metrics['num_test']})")
    echo(f"Saved to {run.path}")
    return TrainResult(run.path, metrics, recorder.history)


def test_metrics(model: keras.Model, config: Config,
                 data: PreparedData) -> tuple[dict[str, Any], np.ndarray]:
    """The test-set part of metrics.json, and the model's outputs on the test set."""
    outputs = predict_probabilities(model, data.x_test)
    summary = classification_metrics(data.y_test, outputs)
    metrics = {
        "test_loss": loss_from_probabilities(config.train.loss, data.y_test, outputs),
        "test_accuracy": summary["accuracy"],
        "num_test": summary["num_samples"],
        "num_errors": summary["num_errors"],
        "per_class_accuracy": summary["per_class_accuracy"],
        "confusion_matrix": summary["confusion_matrix"],
    }
    return metrics, outputs


def write_error_grid(path: Path, data: PreparedData, outputs: np.ndarray, name: str) -> None:
    """errors.png: drawn by the function `mnist show-errors` uses, so both look alike."""
    from mnist_cli.inspection import write_error_grid as draw_error_grid

    draw_error_grid(path, data.x_test, data.y_test, outputs, data.test_index, name)
