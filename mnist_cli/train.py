"""Train a config into a run directory.

The flow is one way: config -> data -> model -> fit -> run directory. The run directory is
written as training goes: `config.yaml` first (so a run can always be re-evaluated or
resumed), then `history.csv` after every epoch, then the model, the metrics and the figures.

Import this module only after `backend.activate_backend()`: it imports Keras.
"""

from __future__ import annotations

import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from mnist_cli import __version__, plots
from mnist_cli.backend import keep_tensorflow_unloaded, seed_everything
from mnist_cli.config import Config
from mnist_cli.data import PreparedData, prepare
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
    save_with,
    write_json_atomic,
    write_text_atomic,
)

ERROR_GRID_LIMIT = 30


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
    and Keras-style logs; `epoch_ended` returns True when training must stop.
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

    def epoch_started(self, epoch: int) -> None:
        self._epoch_start = time.perf_counter()

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
        return stop

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
        if self.epochs_without_improvement > settings.patience:
            self.stopped_early = True
            return True
        return False

    def finish(self) -> None:
        """Restore the best weights when early stopping asked for it."""
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)


class _RecorderCallback(keras.callbacks.Callback):
    """Adapts the `EpochRecorder` to `model.fit`."""

    def __init__(self, recorder: EpochRecorder) -> None:
        super().__init__()
        self.recorder = recorder

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.recorder.epoch_started(epoch)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.recorder.epoch_ended(epoch, logs or {}):
            self.model.stop_training = True


def fit_with_keras(model: keras.Model, config: Config, data: PreparedData,
                   recorder: EpochRecorder, initial_epoch: int, progress_bar: bool) -> None:
    """The reference engine: Keras's own `model.fit`."""
    validation = (data.x_val, one_hot(data.y_val)) if len(data.y_val) else None
    model.fit(
        data.x_train,
        one_hot(data.y_train),
        batch_size=config.train.batch_size,
        epochs=config.train.epochs,
        initial_epoch=initial_epoch,
        validation_data=validation,
        shuffle=True,
        callbacks=[_RecorderCallback(recorder)],
        verbose=1 if progress_bar else 0,
    )


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
    """'auto' -> the engine to use on this backend."""
    return "fit" if config.train.engine == "auto" else config.train.engine


def train(config: Config, *, echo: Callable[[str], None] = print,
          progress_bar: bool = False) -> TrainResult:
    """Train `config` into a new run directory and return its path and test metrics.

    `progress_bar` shows Keras's per-batch bar (for a terminal); otherwise one line per epoch
    is passed to `echo`.
    """
    keep_tensorflow_unloaded()
    seed_everything(config.seed)
    data = prepare(config)
    engine = resolve_engine(config)
    resolved = config.model_copy(deep=True)
    resolved.runtime.backend = keras.backend.backend()
    resolved.train.engine = engine

    run = RunDir(create_run_dir(config.output.root, config.name))
    write_text_atomic(run.config, resolved.to_yaml())
    echo(f"Run directory: {run.path}")
    echo(f"Data: {data.source} - {len(data.y_train)} train, {len(data.y_val)} validation, "
         f"{len(data.y_test)} test")

    model = compile_model(build_model(config), config)
    recorder = EpochRecorder(run, resolved, model, echo=None if progress_bar else echo)
    started = time.perf_counter()
    fit_with_keras(model, config, data, recorder, initial_epoch=0, progress_bar=progress_bar)
    train_seconds = time.perf_counter() - started
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
        "data_source": data.source,
        "versions": versions(),
    })
    write_json_atomic(run.metrics, metrics)
    save_with(run.curves, plots.learning_curves_figure(
        recorder.history, f"{config.name}: {'-'.join(map(str, config.model.stack()))}"
    ).savefig)
    write_error_grid(run.errors, data, outputs, config.name)
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


def write_error_grid(path: Path, data: PreparedData, outputs: np.ndarray, name: str,
                     limit: int = ERROR_GRID_LIMIT) -> None:
    """errors.png: drawn by the function `mnist show-errors` uses, so both look alike."""
    from mnist_cli.inspection import write_error_grid as draw_error_grid

    draw_error_grid(path, data.x_test, data.y_test, outputs, data.test_index, name, limit=limit)
