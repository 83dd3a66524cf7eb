"""The runs `mnist serve` may open, by name, and each one's model loaded once.

A request names a run (its folder name, or `latest`); it never carries a path. The names
come from the folders directly under the output root (found again on every listing, so a
run trained while the server is up appears) and from the run directories given on the
command line. Whatever a run needs more than once (the model, its test-set outputs) is
computed on first use and kept: a prediction costs one forward pass, nothing else.
Nothing here writes to disk.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mnist_cli.catalog import RunSummary, find_runs, sort_runs, summarise_run
from mnist_cli.config import IMAGE_SIDE, NUM_CLASSES
from mnist_cli.errors import RunDirError
from mnist_cli.inspection.source import (
    ModelSource,
    fit_to_model_input,
    load_model,
    load_split,
    locate_model,
    model_outputs,
)
from mnist_cli.runs import LATEST, read_history, resolve_run

MAX_ACTIVATION_UNITS = 1024
"""Hidden layers up to this size have their activations shown; a wider one is too many
cells to read, and the page says so instead."""

MAX_ERRORS_SHOWN = 100
"""At most this many misclassified digits are sent for one confusion-matrix cell."""


class UnknownRunError(RunDirError):
    """A request named a run that is not among those served."""


@dataclass
class ServedRun:
    """One run as the page lists it: its name, folder and what `mnist runs` says of it."""

    name: str
    path: Path
    summary: RunSummary

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "started": self.summary.started.isoformat(timespec="seconds"),
            "layers": self.summary.layers,
            "optimizer": self.summary.optimizer,
            "epochs": self.summary.epochs,
            "test_accuracy": self.summary.test_accuracy,
        }


def _pixels_of(features: np.ndarray) -> list[int]:
    """One sample's features as the 784 grey levels 0..255 the page draws (what the
    network received: scaled or binarized inputs are 0..1, unscaled ones 0..255)."""
    from mnist_cli.inspection.prediction import network_input_pixels

    return network_input_pixels(features).ravel().tolist()


@dataclass
class LoadedRun:
    """A run's model, loaded once, and what the page asks of it."""

    name: str
    source: ModelSource
    model: Any
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _test: tuple[Any, np.ndarray] | None = field(default=None, repr=False)

    @property
    def dense_layers(self) -> list[Any]:
        import keras

        return [layer for layer in self.model.layers if isinstance(layer, keras.layers.Dense)]

    def describe(self) -> dict[str, Any]:
        """The run in one glance, its preprocessing and its learning curves."""
        config = self.source.config
        summary = summarise_run(self.source.output_folder)
        history: list[dict[str, Any]] = []
        if self.source.run is not None and self.source.run.history.is_file():
            try:
                history = read_history(self.source.run.history)
            except (OSError, ValueError):
                history = []
        dense = self.dense_layers
        return {
            "name": self.name,
            "layers": [int(size) for size in config.model.stack()],
            "activations": [layer.activation.__name__ for layer in dense],
            "optimizer": config.train.optimizer,
            "learning_rate": config.train.learning_rate,
            "loss": config.train.loss,
            "batch_size": config.train.batch_size,
            "epochs": summary.epochs,
            "test_accuracy": summary.test_accuracy,
            "preprocessing": {
                "scale": config.data.scale,
                "binarize": config.data.binarize,
                "binarize_threshold": config.data.binarize_threshold,
            },
            "has_hidden_layers": len(dense) > 1,
            "history": history,
        }

    def predict(self, digit: np.ndarray) -> dict[str, Any]:
        """Classify one MNIST-style 28x28 uint8 digit: the ten probabilities, the network's
        input as the page draws it, and the hidden layers' activations (small layers only).

        The layers are called one after the other (in inference mode) so that every hidden
        layer's output is at hand from the same single forward pass.
        """
        import keras

        from mnist_cli.data import preprocess

        features = preprocess(digit[np.newaxis], self.source.config.data)
        values = fit_to_model_input(self.model, features, self.source.model_path,
                                    "the drawn digit")
        hidden: list[dict[str, Any]] = []
        for layer in self.model.layers:
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
            # A softmax output is ten probabilities; a sigmoid or linear one (Nielsen's
            # quadratic-loss nets) gives ten scores that need not sum to 1.
            "output_kind": ("probabilities"
                            if self.source.config.model.output_activation == "softmax"
                            else "scores"),
            "digit": int(np.argmax(probabilities)),
            "probabilities": probabilities.round(6).tolist(),
            "network_input": _pixels_of(features[0]),
            "activations": activations,
        }

    def warm_up(self) -> None:
        """One forward pass on a blank digit: the backend compiles its kernels now rather
        than on the first real request."""
        self.predict(np.zeros((IMAGE_SIDE, IMAGE_SIDE), dtype=np.uint8))

    def _test_outputs(self) -> tuple[Any, np.ndarray]:
        """The run's own test set and the model's outputs on it, computed once."""
        with self._lock:
            if self._test is None:
                data = load_split(self.source.config, "test")
                outputs = model_outputs(self.model, data.features, self.source.model_path,
                                        f"the test data of {data.source}")
                self._test = (data, outputs)
            return self._test

    def confusion(self) -> dict[str, Any]:
        """The test set's confusion matrix (rows: true digit, columns: predicted)."""
        from mnist_cli.metrics import classification_metrics

        data, outputs = self._test_outputs()
        metrics = classification_metrics(data.labels, outputs)
        return {
            "run": self.name,
            "matrix": metrics["confusion_matrix"],
            "accuracy": metrics["accuracy"],
            "num_samples": metrics["num_samples"],
            "num_errors": metrics["num_errors"],
        }

    def errors(self, true_digit: int, predicted_digit: int,
               limit: int = MAX_ERRORS_SHOWN) -> dict[str, Any]:
        """The test digits of one confusion-matrix cell that are misclassified, most
        confidently wrong first, with the same fields as `show-errors`' CSV."""
        from mnist_cli.metrics import TOP_COUNT, select_errors, top_predictions

        data, outputs = self._test_outputs()
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
        return {"run": self.name, "true": true_digit, "predicted": predicted_digit,
                "total": int(len(positions)), "errors": rows}

    def templates(self) -> dict[str, Any] | None:
        """For a net without hidden layers (softmax regression), the weights into each digit
        as ten 28x28 images, scaled together to -1..1 (None for a net with hidden layers)."""
        dense = self.dense_layers
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
        self.backend = backend  # every model is loaded on it (runtime.start, by load_model)
        self._given: dict[str, Path] = {}
        for run_dir in run_dirs or []:
            # `latest`: the newest finished run under the output root, as in every command.
            run_dir = resolve_run(run_dir, self.output_root, finished_only=True)
            source = locate_model(run_dir)  # a typo or an unfinished run fails at start-up
            name = source.output_folder.name
            number = 2
            while name in self._given:
                name = f"{source.output_folder.name}-{number}"
                number += 1
            self._given[name] = source.output_folder
        self._loaded: dict[str, LoadedRun] = {}
        self._lock = threading.Lock()

    def runs(self) -> list[ServedRun]:
        """Every run that can be opened, oldest first: those given on the command line and
        the complete runs (with a model) under the output root."""
        served = {name: ServedRun(name, path, summarise_run(path))
                  for name, path in self._given.items()}
        if not self._given and self.output_root.is_dir():
            found, _skipped = find_runs(self.output_root)
            for summary in found:
                if summary.complete and summary.path.name not in served:
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
        """The run's model, loaded the first time it is asked for. A run already loaded is
        found without looking at the output root again: a prediction reads no file."""
        with self._lock:
            loaded = self._loaded.get(name)
        if loaded is not None:
            return loaded
        run = self.resolve(name)
        with self._lock:
            loaded = self._loaded.get(run.name)
            if loaded is None:
                source = locate_model(run.path, backend=self.backend)
                loaded = LoadedRun(run.name, source, load_model(source))
                self._loaded[run.name] = loaded
            return loaded

    def check_not_empty(self) -> list[ServedRun]:
        """The runs, or an error telling the user how to get one (for start-up)."""
        runs = self.runs()
        if not runs:
            raise RunDirError(
                f"no finished run under {self.output_root}: train one first (`mnist train`), "
                "or give run directories (`mnist serve outputs/<run>`), or the output root "
                "with --out"
            )
        return runs

