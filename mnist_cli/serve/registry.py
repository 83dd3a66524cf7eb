"""The runs `mnist serve` may open, by name, and each one's weights loaded once.

A request names a run (its folder name, or `latest`); it never carries a path. The names
come from the folders directly under the output root (found again on every listing, so a
run trained while the server is up appears, and one still training is there from its
start) and from the run directories given on the command line. A finished run answers
with its model.keras; one still training with its newest checkpoint, read again whenever
training replaces it; any epoch with its snapshot (train.snapshots). Whatever a run needs
more than once (a model, its test-set outputs) is computed on first use and kept: a
prediction costs one forward pass. Nothing here writes to disk.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mnist_cli.catalog import RunSummary, find_runs, sort_runs, summarise_run
from mnist_cli.config import IMAGE_SIDE, NUM_CLASSES, load_config
from mnist_cli.errors import MnistCliError, RunDirError
from mnist_cli.inspection.source import (
    fit_to_model_input,
    load_model,
    load_split,
    locate_model,
    model_outputs,
)
from mnist_cli.runs import (
    LATEST,
    RunDir,
    best_epoch,
    rate_steps,
    read_history,
    read_json,
    resolve_run,
)

MAX_ACTIVATION_UNITS = 1024
"""Hidden layers up to this size have their activations shown; a wider one is too many
cells to read, and the page says so instead."""

MAX_ERRORS_SHOWN = 100
"""At most this many misclassified digits are sent for one confusion-matrix cell."""


MAX_UNITS_SHOWN = 24
"""The first layer's units drawn for a drawing: the most excited ones."""


class UnknownRunError(RunDirError):
    """A request named a run that is not among those served (HTTP 404)."""


class UnknownEpochError(RunDirError):
    """A request named an epoch the run kept no snapshot of (HTTP 404)."""


class NoEpochYetError(RunDirError):
    """The run has no weights yet: its first epoch is still training (HTTP 409)."""


@dataclass
class ServedRun:
    """One run as the page lists it: its name, folder and what `mnist runs` says of it."""

    name: str
    path: Path
    summary: RunSummary

    @property
    def run(self) -> RunDir:
        return RunDir(self.path)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "started": self.summary.started.isoformat(timespec="seconds"),
            "layers": self.summary.layers,
            "optimizer": self.summary.optimizer,
            "epochs": self.summary.epochs,
            "test_accuracy": self.summary.test_accuracy,
            "finished": self.summary.complete,
        }


def _pixels_of(features: np.ndarray) -> list[int]:
    """One sample's features as the 784 grey levels 0..255 the page draws (what the
    network received: scaled or binarized inputs are 0..1, unscaled ones 0..255)."""
    from mnist_cli.inspection.prediction import network_input_pixels

    return network_input_pixels(features).ravel().tolist()


def _history_of(run: RunDir) -> list[dict[str, Any]]:
    if not run.history.is_file():
        return []
    try:
        return read_history(run.history)
    except (OSError, ValueError):
        return []  # being rewritten this instant: the next look finds it whole


@dataclass(frozen=True)
class Weights:
    """A model and which weights it holds: `("final",)` (model.keras), `("checkpoint",
    mtime)` (the newest epoch of a run still training) or `("epoch", N)` (a snapshot)."""

    version: tuple
    model: Any
    epoch: int | None  # the epoch whose weights these are (None: unknown, a bare model)


class _Cache(OrderedDict):
    """The few most recently used entries (models of snapshots, test-set outputs)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def keep(self, key: Any, value: Any) -> Any:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)
        return value


class LoadedRun:
    """A run's model and what the page asks of it. A finished run answers with its
    `model.keras`; a run still training with the weights of its newest checkpoint (read
    again when the checkpoint changes); `epoch=N` with that epoch's snapshot."""

    def __init__(self, name: str, run: RunDir, backend: str) -> None:
        self.name = name
        self.run = run
        self.backend = backend
        self.config = load_config(run.config)
        self._lock = threading.Lock()
        self._current: Weights | None = None
        self._snapshots = _Cache(4)
        self._outputs = _Cache(4)  # test-set outputs of the last weights asked for
        self._test_data: Any = None  # read once: the weights change, the test set does not

    # -- which weights ------------------------------------------------------------------

    def _built(self) -> Any:
        """A fresh model of the run's config, on the server's backend, as `load_model`
        loads the finished ones (its weights follow)."""
        from mnist_cli import runtime

        runtime.start(self.backend)
        from mnist_cli.model import build_model

        return build_model(self.config)

    def current(self) -> Weights:
        """The newest weights: model.keras once the run is finished, else its checkpoint."""
        with self._lock:
            if self.run.finished and self.run.model.is_file():
                if self._current is None or self._current.version != ("final",):
                    source = locate_model(self.run.path, backend=self.backend)
                    epochs = len(_history_of(self.run)) or None
                    self._current = Weights(("final",), load_model(source), epochs)
                return self._current
            try:
                stamp = self.run.checkpoint.stat().st_mtime_ns
            except FileNotFoundError:
                raise NoEpochYetError(f"{self.name} has not finished its first epoch yet: "
                                      "its answers appear when it has") from None
            if self._current is None or self._current.version != ("checkpoint", stamp):
                from mnist_cli.training.checkpoints import ModelVariables, read_checkpoint

                checkpoint = read_checkpoint(self.run.checkpoint)
                model = self._built()
                ModelVariables(model).load_state(checkpoint.states["model"])
                self._current = Weights(("checkpoint", stamp), model, checkpoint.epochs_done)
            return self._current

    def at(self, epoch: int | None) -> Weights:
        """Epoch `epoch`'s weights (its snapshot), or the newest for None."""
        if epoch is None:
            return self.current()
        from mnist_cli.training.snapshots import read_snapshot

        with self._lock:
            cached = self._snapshots.get(epoch)
            if cached is not None:
                return cached
            if not self.run.snapshot(epoch).is_file():
                kept = self.run.snapshot_epochs()
                where = (f"epochs {kept[0]}-{kept[-1]}" if kept else
                         "none (train with train.snapshots: true to keep them)")
                raise UnknownEpochError(f"{self.name} has no snapshot of epoch {epoch}; "
                                        f"it has {where}")
            model = self._built()
            model.set_weights(read_snapshot(self.run.snapshot(epoch)))
            return self._snapshots.keep(epoch, Weights(("epoch", epoch), model, epoch))

    @property
    def model_path(self) -> Path:
        return self.run.model if self.run.finished else self.run.checkpoint

    @staticmethod
    def dense_layers(model: Any) -> list[Any]:
        import keras

        return [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]

    # -- what the page asks ---------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """The run in one glance, its preprocessing, its learning curves and how far it is."""
        config = self.config
        summary = summarise_run(self.run.path)
        history = _history_of(self.run)
        metrics = read_json(self.run.metrics) if self.run.finished else {}
        stopped_best = metrics.get("best_epoch") if isinstance(metrics, dict) else None
        steps = rate_steps(history) or []
        return {
            "name": self.name,
            "layers": [int(size) for size in config.model.stack()],
            "activations": [spec.activation for spec in config.model.dense_layers()],
            "optimizer": config.train.optimizer,
            "learning_rate": config.train.learning_rate,
            "schedule": config.train.schedule.name,
            "loss": config.train.loss,
            "batch_size": config.train.batch_size,
            "epochs": summary.epochs,
            "epochs_planned": config.train.epochs,
            "finished": self.run.finished,
            "test_accuracy": summary.test_accuracy,
            "preprocessing": {
                "scale": config.data.scale,
                "binarize": config.data.binarize,
                "binarize_threshold": config.data.binarize_threshold,
            },
            "has_hidden_layers": len(config.model.dense_layers()) > 1,
            "history": history,
            "best_epoch": stopped_best if stopped_best is not None else best_epoch(history),
            "best_epoch_by": (f"early stopping's {config.train.early_stopping.monitor}"
                              if stopped_best is not None and config.train.early_stopping
                              else "validation accuracy"
                              if any(row.get("val_accuracy") is not None for row in history)
                              else "training accuracy"),
            # A schedule that changes the rate every epoch (cosine, exponential) has no steps
            # worth marking; step decay and plateau do.
            "rate_steps": [{"epoch": epoch, "learning_rate": rate} for epoch, rate in steps]
                          if len(steps) <= 10 else [],
            "snapshot_epochs": self.run.snapshot_epochs(),
            "progress": self._progress(len(history)),
            "weights_version": self._weights_version(),
        }

    def _weights_version(self) -> str | None:
        """Which weights answer now: "final", the checkpoint's date (ns) while the run
        trains, None before its first epoch. The page re-asks its answers when it changes."""
        if self.run.finished:
            return "final"
        try:
            return str(self.run.checkpoint.stat().st_mtime_ns)
        except OSError:
            return None

    def _progress(self, epochs_done: int) -> dict[str, int] | None:
        """How far the epoch under way is (progress.json), while the run trains."""
        if self.run.finished or not self.run.progress.is_file():
            return None
        with contextlib.suppress(RunDirError):
            progress = read_json(self.run.progress)
            if isinstance(progress, dict) and progress.get("epoch") == epochs_done + 1:
                return progress
        return None

    def _network_input(self, digit: np.ndarray, weights: Weights) -> tuple[np.ndarray, Any]:
        """A 28x28 digit as the run's preprocessing makes it, and as the model takes it."""
        from mnist_cli.data import preprocess

        features = preprocess(digit[np.newaxis], self.config.data)
        return features, fit_to_model_input(weights.model, features, self.model_path,
                                            "the drawn digit")

    def predict(self, digit: np.ndarray, epoch: int | None = None) -> dict[str, Any]:
        """Classify one MNIST-style 28x28 uint8 digit: the ten probabilities, the network's
        input as the page draws it, and the hidden layers' activations (small layers only).

        The layers are called one after the other (in inference mode) so that every hidden
        layer's output is at hand from the same single forward pass.
        """
        weights = self.at(epoch)  # starts Keras on the run's backend: import it after
        import keras

        features, values = self._network_input(digit, weights)
        hidden: list[dict[str, Any]] = []
        for layer in weights.model.layers:
            values = layer(values, training=False)
            if isinstance(layer, keras.layers.Dense):
                hidden.append({"name": layer.name, "units": int(layer.units), "values": values})
        probabilities = keras.ops.convert_to_numpy(values)[0].astype(np.float64)
        activations = []
        for layer_output in hidden[:-1]:
            shown = layer_output["units"] <= MAX_ACTIVATION_UNITS
            activations.append({
                "name": layer_output["name"],
                "units": layer_output["units"],
                "values": (keras.ops.convert_to_numpy(layer_output["values"])[0]
                           .astype(np.float64).round(5).tolist() if shown else None),
            })
        return {
            "run": self.name,
            "epoch": weights.epoch,
            # A softmax output is ten probabilities; a sigmoid or linear one (Nielsen's
            # quadratic-loss nets) gives ten scores that need not sum to 1.
            "output_kind": ("probabilities"
                            if self.config.model.output_activation == "softmax"
                            else "scores"),
            "digit": int(np.argmax(probabilities)),
            "probabilities": probabilities.round(6).tolist(),
            "network_input": _pixels_of(features[0]),
            "activations": activations,
        }

    def explain(self, digit: np.ndarray, epoch: int | None = None) -> dict[str, Any]:
        """Where the network looks (saliency), how little change flips its answer (FGSM),
        and the first layer's units most excited by this digit, as images."""
        from mnist_cli.inspection.attribution import DenseStack

        weights = self.at(epoch)
        features, _ = self._network_input(digit, weights)
        stack = DenseStack.of(weights.model)
        # The inputs' range: 0..1 scaled or binarized, 0..255 raw (the nudge stays inside it).
        high = 1.0 if self.config.data.scale or self.config.data.binarize else 255.0
        x = features.reshape(-1).astype(np.float64)
        saliency = stack.saliency(x)
        nudge = stack.smallest_flip(x, high)
        units = stack.first_layer_units(x, MAX_UNITS_SHOWN)
        largest = float(np.abs(saliency["map"]).max()) or 1.0
        return {
            "run": self.name,
            "epoch": weights.epoch,
            "digit": saliency["digit"],
            "saliency": (saliency["map"] / largest).round(3).tolist(),
            "adversarial": None if nudge is None else {
                "epsilon": nudge["epsilon"],
                "digit": nudge["digit"],
                "probability": nudge["probability"],
                "pixels": _pixels_of(nudge["input"]),
            },
            "units": units,
            "first_layer_units": stack.first_units,
        }

    def warm_up(self) -> None:
        """One forward pass on a blank digit: the backend compiles its kernels now rather
        than on the first real request."""
        self.predict(np.zeros((IMAGE_SIDE, IMAGE_SIDE), dtype=np.uint8))

    def _test_outputs(self, epoch: int | None) -> tuple[Any, np.ndarray, Weights]:
        """The run's own test set and the model's outputs on it, computed once per weights."""
        weights = self.at(epoch)
        with self._lock:
            if self._test_data is None:
                self._test_data = load_split(self.config, "test")
            data = self._test_data
            outputs = self._outputs.get(weights.version)
            if outputs is None:
                outputs = self._outputs.keep(weights.version, model_outputs(
                    weights.model, data.features, self.model_path,
                    f"the test data of {data.source}"))
            return data, outputs, weights

    def confusion(self, epoch: int | None = None) -> dict[str, Any]:
        """The test set's confusion matrix (rows: true digit, columns: predicted)."""
        from mnist_cli.metrics import classification_metrics

        data, outputs, weights = self._test_outputs(epoch)
        metrics = classification_metrics(data.labels, outputs)
        return {
            "run": self.name,
            "epoch": weights.epoch,
            "matrix": metrics["confusion_matrix"],
            "accuracy": metrics["accuracy"],
            "num_samples": metrics["num_samples"],
            "num_errors": metrics["num_errors"],
        }

    def errors(self, true_digit: int, predicted_digit: int, epoch: int | None = None,
               limit: int = MAX_ERRORS_SHOWN) -> dict[str, Any]:
        """The test digits of one confusion-matrix cell that are misclassified, most
        confidently wrong first, with the same fields as `show-errors`' CSV."""
        from mnist_cli.metrics import TOP_COUNT, select_errors, top_predictions

        data, outputs, weights = self._test_outputs(epoch)
        positions = select_errors(data.labels, outputs, true_digit, predicted_digit,
                                  "confidence")
        shown = positions[:limit]
        digits, probabilities = top_predictions(outputs[shown], TOP_COUNT)
        rows = []
        for row, position in enumerate(shown):
            rows.append({
                "index": int(data.index[position]),
                "true": int(data.labels[position]),
                "predicted": int(np.argmax(outputs[position])),
                "probability": float(outputs[position].max()),
                "true_probability": float(outputs[position, data.labels[position]]),
                "top_3": [{"digit": int(digit), "probability": float(probability)}
                          for digit, probability in zip(digits[row], probabilities[row])],
                "pixels": _pixels_of(data.features[position]),
            })
        return {"run": self.name, "epoch": weights.epoch, "true": true_digit,
                "predicted": predicted_digit, "total": int(len(positions)), "errors": rows}

    def templates(self, epoch: int | None = None) -> dict[str, Any] | None:
        """For a net without hidden layers (softmax regression), the weights into each digit
        as ten 28x28 images, scaled together to -1..1 (None for a net with hidden layers)."""
        dense = self.dense_layers(self.at(epoch).model)
        if len(dense) != 1:
            return None
        kernel = np.asarray(dense[0].get_weights()[0], dtype=np.float64)
        if kernel.shape != (IMAGE_SIDE * IMAGE_SIDE, NUM_CLASSES):
            return None
        largest = float(np.abs(kernel).max()) or 1.0
        return {
            "run": self.name,
            "scale": largest,
            "templates": [(kernel[:, digit] / largest).round(4).tolist()
                          for digit in range(NUM_CLASSES)],
        }


class RunRegistry:
    """The runs served, by name, and their models, each loaded on first use and kept."""

    def __init__(self, output_root: str | Path, run_dirs: list[str | Path] | None = None,
                 backend: str = "auto"):
        self.output_root = Path(output_root)
        self.backend = backend  # every model is loaded on it (runtime.start)
        self._given: dict[str, Path] = {}
        for run_dir in run_dirs or []:
            # `latest`: the newest finished run under the output root, as in every command.
            run_dir = resolve_run(run_dir, self.output_root, finished_only=True)
            source = locate_model(run_dir)  # a typo or an unfinished run fails at start-up
            self._add(source.output_folder)
        self._loaded: dict[str, LoadedRun] = {}
        self._lock = threading.Lock()

    def _add(self, path: Path) -> str:
        name = path.name
        number = 2
        while name in self._given and self._given[name] != path:
            name = f"{path.name}-{number}"
            number += 1
        self._given[name] = path
        return name

    def runs_given(self) -> bool:
        """Whether only chosen runs are served (given on the command line)."""
        with self._lock:
            return bool(self._given)

    def add(self, path: Path) -> str:
        """Serve `path` too (a run started from the page when only some runs are served)."""
        with self._lock:
            return self._add(path)

    def runs(self) -> list[ServedRun]:
        """Every run that can be opened, oldest first: those given on the command line (and
        started from the page), else every run under the output root, finished or training
        (or stopped) once it has a config."""
        with self._lock:
            given = dict(self._given)
        served: dict[str, ServedRun] = {}
        for name, path in given.items():
            with contextlib.suppress(MnistCliError, OSError):  # deleted meanwhile
                served[name] = ServedRun(name, path, summarise_run(path))
        if not given and self.output_root.is_dir():
            found, _skipped = find_runs(self.output_root)
            for summary in found:
                if summary.path.name not in served and (
                        summary.complete or summary.status.startswith("incomplete")):
                    served[summary.path.name] = ServedRun(summary.path.name, summary.path,
                                                          summary)
        ordered = sort_runs([run.summary for run in served.values()], "date")
        by_path = {run.path: run for run in served.values()}
        return [by_path[summary.path] for summary in ordered]

    def resolve(self, name: str) -> ServedRun:
        """The run called `name` (`latest`: the newest); `UnknownRunError` otherwise."""
        runs = self.runs()
        if name == LATEST and runs:
            return runs[-1]
        for run in runs:
            if run.name == name:
                return run
        raise UnknownRunError(f"no run called {name!r} is served here "
                              "(GET /api/runs lists them)")

    def load(self, name: str) -> LoadedRun:
        """The run, opened the first time it is asked for. A run already open is found
        without listing the output root again: a prediction reads no file but, for a run
        still training, the date of its checkpoint."""
        with self._lock:
            loaded = self._loaded.get(name)
        if loaded is not None:
            return loaded
        run = self.resolve(name)
        with self._lock:
            loaded = self._loaded.get(run.name)
            if loaded is None:
                loaded = LoadedRun(run.name, run.run, self.backend)
                self._loaded[run.name] = loaded
            return loaded

    def check_not_empty(self) -> list[ServedRun]:
        """The runs, or an error telling the user how to get one (for start-up)."""
        runs = self.runs()
        if not runs:
            raise RunDirError(
                f"no run under {self.output_root}: train one first (`mnist train`), "
                "or give run directories (`mnist serve outputs/<run>`), or the output root "
                "with --out"
            )
        return runs
