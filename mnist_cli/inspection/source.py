"""Finding a run's model and config, loading the model safely, and reloading its data.

Everything starts from what a run directory holds (`model.keras` and the resolved
`config.yaml`), never from the original YAML: the saved config says how the data was
prepared (scaling, binarizing, subset, validation split), so an inspection sees exactly the
test set and the numbers the training reported. Keras is started only when a model is
loaded (`load_model` starts the runtime on the source's backend), so every inspection is
callable from Python as it is from the CLI, and a typo is reported before Keras starts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mnist_cli.choices import SPLITS
from mnist_cli.config import NUM_CLASSES, Config, load_config
from mnist_cli.errors import DataError, RunDirError, UsageError, describe_error
from mnist_cli.metrics import predict_probabilities
from mnist_cli.runs import CONFIG_FILE, MODEL_FILE, RunDir, open_run_dir

# `(done, total)`, called as work advances: a command's progress bar.
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class ModelSource:
    """A saved model, the config that says how its inputs are prepared, and where the
    files an inspection writes go (the run directory, or the model file's folder)."""

    model_path: Path
    config: Config
    output_folder: Path
    run: RunDir | None = None
    backend: str | None = None  # Keras backend to load the model on; None: the run's own

    @property
    def name(self) -> str:
        """A label for titles: the run folder's name, else the model file's."""
        if self.run is not None:
            return self.run.path.name
        return self.model_path.stem


def locate_model(path: str | Path, config_path: str | Path | None = None,
                 backend: str | None = None) -> ModelSource:
    """Resolve `path` (a run directory or a `.keras` file) to its model and config.

    A run directory brings its own `config.yaml`; `config_path` replaces it when given. A
    bare `.keras` file needs `config_path`, unless a `config.yaml` lies beside it (a model
    file inside a run directory). Nothing is loaded yet: this only checks that the files
    are there, so a typo is reported before Keras is imported.
    """
    path = Path(path)
    if path.is_file():
        if path.suffix != ".keras":
            raise RunDirError(
                f"{path}: is neither a run directory nor a .keras model file; pass a folder "
                "made by `mnist train` or its model.keras"
            )
        sibling_config = path.parent / CONFIG_FILE
        if config_path is None and not sibling_config.is_file():
            raise RunDirError(
                f"{path}: a bare model file needs the config it was trained with, to prepare "
                "the data the same way: add --config FILE (a run's config.yaml or the YAML recipe)"
            )
        run = RunDir(path.parent) if sibling_config.is_file() else None
        config = load_config(config_path if config_path is not None else sibling_config)
        return ModelSource(model_path=path, config=config, output_folder=path.parent, run=run,
                           backend=backend)
    run = open_run_dir(path)
    if not run.model.is_file():
        raise RunDirError(
            f"{path}: has no {MODEL_FILE} yet (training has not finished or was interrupted); "
            "wait for `mnist train` to end, or pass another run"
        )
    config = load_config(config_path if config_path is not None else run.config)
    return ModelSource(model_path=run.model, config=config, output_folder=run.path, run=run,
                       backend=backend)


def load_model(source: ModelSource) -> Any:
    """Start the runtime on the source's backend and load its Keras model for inference,
    refusing anything that is not one.

    `safe_mode=True` refuses to run code stored in the file (lambda layers), so inspecting
    a model someone sent you cannot execute it; `compile=False` skips the optimizer and the
    loss, which inference never needs. Any failure (not a zip, not a Keras archive, a
    truncated file, a layer Keras does not know) becomes one `RunDirError` line.
    """
    from mnist_cli import runtime

    runtime.start(source.backend or source.config.runtime.backend)
    import keras

    path = source.model_path
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as error:  # Keras raises ValueError, OSError, zipfile and JSON errors
        reason = describe_error(error, with_type=False)
        raise RunDirError(f"{path}: is not a Keras model that can be loaded ({reason})") from None
    if not isinstance(model, keras.Model):
        raise RunDirError(f"{path}: holds a {type(model).__name__}, not a Keras model")
    output_shape = shape_or_none(model, "output_shape")
    if output_shape is not None and output_shape[-1] != NUM_CLASSES:
        raise RunDirError(
            f"{path}: the model has {output_shape[-1]} outputs, not one per digit "
            f"({NUM_CLASSES}); it is not an MNIST classifier"
        )
    return model


def shape_or_none(model: Any, attribute: str) -> tuple | None:
    try:
        shape = getattr(model, attribute)
    except (AttributeError, ValueError):
        return None
    return tuple(shape) if isinstance(shape, (tuple, list)) else None


def fit_to_model_input(model: Any, features: np.ndarray, model_path: Path,
                       what: str = "the data") -> np.ndarray:
    """`features` shaped the way the model takes them, or a `DataError` saying why not.

    A run's own config always matches its model. A `.keras` file evaluated with another
    config may not: 784 features for a model built on 28x28 images (or the reverse) are
    the same pixels and are reshaped; any other size is a different network.
    """
    expected = shape_or_none(model, "input_shape")
    if expected is None:
        return features
    expected_sample = tuple(expected[1:])
    if tuple(features.shape[1:]) == expected_sample:
        return features
    if None not in expected_sample and math.prod(expected_sample) == math.prod(features.shape[1:]):
        return features.reshape((len(features), *expected_sample))
    expected_count = "?" if None in expected_sample else math.prod(expected_sample)
    raise DataError(
        f"{model_path}: the model takes inputs of shape {_shape_text(expected_sample)} "
        f"({expected_count} features) but {what} has shape {_shape_text(features.shape[1:])} "
        f"({math.prod(features.shape[1:])} features); use the config the model was trained with"
    )


def _shape_text(shape: Sequence[int | None]) -> str:
    return "(" + ", ".join("None" if size is None else str(size) for size in shape) + ")"


@dataclass
class SplitData:
    """One split of the data, preprocessed as the run's config says."""

    split: str
    features: np.ndarray
    labels: np.ndarray
    index: np.ndarray  # position in the dataset's test set (test) or in the split (train, val)
    source: str


def load_split(config: Config, split: str = "test", data_path: str | Path | None = None
               ) -> SplitData:
    """The `split` of the data the config describes, prepared by `data.prepare` itself.

    `data_path` points at another copy of the dataset (the run's config may name a path that
    does not exist on this machine, or none at all when `MNIST_DATA` was used). Subset and
    validation split are re-derived from the config with its seed, so `val` and `train` are
    the very rows the training used.
    """
    from mnist_cli.data import prepare

    if split not in SPLITS:
        raise DataError(f"split must be one of {', '.join(SPLITS)} (got {split!r})")
    if data_path is not None:
        config = config.model_copy(deep=True)
        config.data.path = str(data_path)
    try:
        data = prepare(config)
    except DataError as error:
        if data_path is not None:
            raise
        raise DataError(f"{error} (or pass the data to this command with --data PATH)") from None
    if split == "test":
        return SplitData("test", data.x_test, data.y_test, data.test_index, data.source)
    if split == "val":
        if len(data.y_val) == 0:
            raise UsageError(
                "the run has no validation set (data.validation_split is 0); use --split test"
            )
        return SplitData("val", data.x_val, data.y_val, np.arange(len(data.y_val)), data.source)
    return SplitData("train", data.x_train, data.y_train, np.arange(len(data.y_train)),
                     data.source)


def model_outputs(model: Any, features: np.ndarray, model_path: Path,
                  what: str = "the data", on_progress: Progress | None = None) -> np.ndarray:
    """The model's probabilities for `features`, after checking that the shapes fit."""
    features = fit_to_model_input(model, features, model_path, what)
    outputs = predict_probabilities(model, features, on_progress=on_progress)
    if outputs.ndim != 2 or outputs.shape[1] != NUM_CLASSES:
        raise RunDirError(
            f"{model_path}: the model returns outputs of shape {outputs.shape[1:]}, "
            f"not {NUM_CLASSES} class probabilities"
        )
    return outputs
