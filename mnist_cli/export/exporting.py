"""`mnist export`: write a finished run's network as ONNX, SavedModel or LiteRT, check the
file with its own runtime against the Keras model on the run's test digits, and only then
put it (and its `MODEL.md`) in place.

The file is written under a temporary name beside its destination; if the check finds a
single test digit predicted otherwise, or a probability further than the tolerance (default
`TOLERANCE`) from the Keras model's, the temporary file and any folder made for it are
deleted, and an existing export stays as it was.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from mnist_cli.atomic_files import atomic_directory, atomic_path, write_text_atomic
from mnist_cli.config import Config
from mnist_cli.errors import DataError, ExportError, RunDirError, describe_error
from mnist_cli.export import formats
from mnist_cli.export.model_card import model_card_text
from mnist_cli.inspection.source import ModelSource, fit_to_model_input, load_model
from mnist_cli.metrics import predict_probabilities
from mnist_cli.runs import METRICS_FILE, read_json

TOLERANCE = 1e-5  # default largest difference between a file's and Keras's probabilities
EXPORT_FOLDER = "export"
MODEL_CARD = "MODEL.md"


@dataclass(frozen=True)
class Agreement:
    """How the exported file's outputs compare with the Keras model's on the test digits."""

    digits: int
    same_prediction: int
    max_difference: float
    accuracy: float  # of the exported file, on the run's test digits
    tolerance: float = TOLERANCE

    @property
    def agrees(self) -> bool:
        return self.same_prediction == self.digits and self.max_difference <= self.tolerance


@dataclass(frozen=True)
class ExportResult:
    path: Path
    model_card: Path
    format_name: str
    raw: bool
    input: formats.Tensor
    output: formats.Tensor
    agreement: Agreement
    size_bytes: int
    export_seconds: float
    check_seconds: float

    def to_dict(self) -> dict[str, Any]:
        agreement = self.agreement
        return {
            "path": str(self.path), "model_card": str(self.model_card),
            "format": self.format_name, "raw": self.raw,
            "input": {"name": self.input.name, "shape": self.input.shape_text(),
                      "dtype": self.input.dtype},
            "output": {"name": self.output.name, "shape": self.output.shape_text(),
                       "dtype": self.output.dtype},
            "size_bytes": self.size_bytes,
            "export_seconds": round(self.export_seconds, 3),
            "check_seconds": round(self.check_seconds, 3),
            "test_digits": agreement.digits,
            "same_prediction": agreement.same_prediction,
            "max_probability_difference": agreement.max_difference,
            "accuracy": agreement.accuracy,
        }


def default_path(run_path: Path, format_name: str, raw: bool) -> Path:
    """`RUN_DIR/export/<format>[-raw]/<file>`: one folder per export, each with its MODEL.md."""
    folder = f"{format_name}-raw" if raw else format_name
    return run_path / EXPORT_FOLDER / folder / formats.FORMATS[format_name].file_name


def finished_run_metrics(source: ModelSource) -> dict[str, Any]:
    """The run's metrics.json, which only a finished run has (model.keras is written just
    before it: a run killed between the two is not finished)."""
    if source.run is None:
        raise RunDirError(f"{source.model_path}: export takes a run directory made by "
                          "`mnist train`, not a model file")
    if not source.run.finished:
        raise RunDirError(f"{source.run.path}: has no {METRICS_FILE} (training has not finished "
                          "or was interrupted); finish it with `mnist train --resume`, then export")
    metrics = read_json(source.run.metrics)
    if not isinstance(metrics, dict):
        raise RunDirError(f"{source.run.metrics}: is not the metrics of a run")
    return metrics


def export_run(source: ModelSource, format_name: str, out: str | Path | None = None,
               raw: bool = False, data_path: str | Path | None = None,
               tolerance: float = TOLERANCE) -> ExportResult:
    """Export the run's network as `format_name`, checked; return what was written.
    Keras is started on the backend the format's converter needs
    (`formats.export_backend`), whichever the run was trained on."""
    metrics = finished_run_metrics(source)
    network = load_model(replace(source, backend=formats.export_backend(format_name)))
    from mnist_cli.export.graph import export_graph  # imports Keras: after load_model
    data = _test_data(source.config, data_path)
    features = fit_to_model_input(network, data.x_test, source.model_path,
                                  f"the test data of {data.source}")
    expected = predict_probabilities(network, features)
    inputs = features if raw else np.ascontiguousarray(data.pixels_test.reshape(-1, 28, 28))
    graph = export_graph(network, data.pixel_table, raw)

    path = Path(out) if out is not None else default_path(source.run.path, format_name, raw)
    made = _make_folders(path.parent)
    try:
        agreement, loaded, size, export_seconds, check_seconds = _write_checked(
            format_name, graph, path, inputs, expected, data.y_test, tolerance,
            formats.output_name(source.config.model.output_activation))
    except BaseException:
        for folder in reversed(made):  # leave no empty folder behind either
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    card = path.parent / MODEL_CARD
    result = ExportResult(path, card, format_name, raw, loaded.input, loaded.output, agreement,
                          size, export_seconds, check_seconds)
    write_text_atomic(card, model_card_text(result, source, metrics, graph.input_dtype))
    return result


def _write_checked(format_name: str, graph: Any, path: Path, inputs: np.ndarray,
                   expected: np.ndarray, labels: np.ndarray, tolerance: float, output: str
                   ) -> tuple[Agreement, formats.LoadedExport, int, float, float]:
    """Write the file under a temporary name, check it, and rename it to `path` only if it
    agrees with the Keras model's `expected` probabilities."""
    writing = atomic_directory(path) if format_name == "saved_model" else atomic_path(path)
    with writing as temporary:
        started = time.perf_counter()
        try:
            formats.write(format_name, graph.model, graph.input_signature(), temporary, output)
        except Exception as error:
            raise ExportError(f"Keras could not write {format_name} "
                              f"({describe_error(error)})") from None
        export_seconds = time.perf_counter() - started
        started = time.perf_counter()
        loaded = formats.LoadedExport(format_name, temporary)
        outputs = loaded.run(inputs.astype(graph.input_dtype, copy=False))
        agreement = compare(expected, outputs, labels, tolerance)
        check_seconds = time.perf_counter() - started
        if not agreement.agrees:
            raise ExportError(
                f"the exported {format_name} file does not compute what the Keras model does: "
                f"{agreement.digits - agreement.same_prediction} of {agreement.digits} test "
                f"digits predicted otherwise, outputs up to {agreement.max_difference:.2g} "
                f"apart (allowed: {tolerance:g}, --tolerance); nothing was written")
        return agreement, loaded, _size(temporary), export_seconds, check_seconds


def _make_folders(folder: Path) -> list[Path]:
    """Create `folder` and its missing parents; return those created, outermost first."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    missing.reverse()
    for created in missing:
        created.mkdir()
    return missing


def _test_data(config: Config, data_path: str | Path | None) -> Any:
    from mnist_cli.data import prepare

    if data_path is not None:
        config = config.model_copy(deep=True)
        config.data.path = str(data_path)
    try:
        return prepare(config)
    except DataError as error:
        if data_path is not None:
            raise
        raise DataError(f"{error} (or pass the data to this command with --data PATH)") from None


def compare(expected: np.ndarray, outputs: np.ndarray, labels: np.ndarray,
            tolerance: float = TOLERANCE) -> Agreement:
    """Predicted digits and largest probability difference of `outputs` against `expected`."""
    if outputs.shape != expected.shape:
        raise ExportError(f"the exported file returns outputs of shape {outputs.shape}, the "
                          f"Keras model {expected.shape}; nothing was written")
    predicted = outputs.argmax(axis=1)
    return Agreement(
        digits=len(expected),
        same_prediction=int((predicted == expected.argmax(axis=1)).sum()),
        max_difference=float(np.abs(outputs - expected).max()) if len(expected) else 0.0,
        accuracy=float((predicted == labels).mean()) if len(labels) else 0.0,
        tolerance=tolerance,
    )


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(item.stat().st_size for item in path.rglob("*") if item.is_file())
    return path.stat().st_size
