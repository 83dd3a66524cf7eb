"""Inspect what a run learned: evaluate its saved model, show its mistakes, classify images.

Everything here starts from what a run directory holds (`model.keras` and the resolved
`config.yaml`), never from the original YAML: the saved config says how the data was
prepared (scaling, binarizing, subset, validation split), so re-evaluating a run reproduces
exactly the test set and the numbers the training reported in `metrics.json`.

Keras is imported only inside the functions that load or run a model, so the CLI can choose
the backend first (`backend.activate_backend`) and `locate_model` stays instant. The numbers
come from the same helpers `train` uses (`evaluate.predict_probabilities`,
`loss_from_probabilities`, `classification_metrics`): one implementation, one answer.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mnist_cli.config import NUM_CLASSES, Config, load_config
from mnist_cli.errors import DataError, ImageError, RunDirError, UsageError
from mnist_cli.evaluate import (
    classification_metrics,
    loss_from_probabilities,
    per_class_report,
    predict_probabilities,
    select_errors,
    top_predictions,
)
from mnist_cli.runs import (
    CONFIG_FILE,
    MODEL_FILE,
    RunDir,
    open_run_dir,
    read_json,
    save_with,
    write_json_atomic,
    write_text_atomic,
)

SPLITS = ("test", "val", "train")
ERROR_GRID_LIMIT = 30
ERROR_GRID_PER_ROW = 10
TOP_COUNT = 3

# Two evaluations of one model agree when accuracy and errors are identical and the loss
# differs only by float32 rounding (a model evaluated on another backend than it was
# trained on sums in another order).
LOSS_TOLERANCE = 1e-5


# --------------------------------------------------------------------------------------------
# Finding the model and its config


@dataclass(frozen=True)
class ModelSource:
    """A saved model, the config that says how its inputs are prepared, and where the
    files an inspection writes go (the run directory, or the model file's folder)."""

    model_path: Path
    config: Config
    output_folder: Path
    run: RunDir | None = None

    @property
    def name(self) -> str:
        """A label for titles: the run folder's name, else the model file's."""
        if self.run is not None:
            return self.run.path.name
        return self.model_path.stem


def locate_model(path: str | Path, config_path: str | Path | None = None) -> ModelSource:
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
        return ModelSource(model_path=path, config=config, output_folder=path.parent, run=run)
    run = open_run_dir(path)
    if not run.model.is_file():
        raise RunDirError(
            f"{path}: has no {MODEL_FILE} yet (training has not finished or was interrupted); "
            "wait for `mnist train` to end, or pass another run"
        )
    config = load_config(config_path if config_path is not None else run.config)
    return ModelSource(model_path=run.model, config=config, output_folder=run.path, run=run)


def load_model(path: Path) -> Any:
    """Load a saved Keras model for inference, refusing anything that is not one.

    `safe_mode=True` refuses to run code stored in the file (lambda layers), so inspecting
    a model someone sent you cannot execute it; `compile=False` skips the optimizer and the
    loss, which inference never needs. Any failure (not a zip, not a Keras archive, a
    truncated file, a layer Keras does not know) becomes one `RunDirError` line.
    """
    import keras

    from mnist_cli.backend import keep_tensorflow_unloaded

    keep_tensorflow_unloaded()
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as error:  # Keras raises ValueError, OSError, zipfile and JSON errors
        raise RunDirError(
            f"{path}: is not a Keras model that can be loaded ({_first_line(error)})"
        ) from None
    if not isinstance(model, keras.Model):
        raise RunDirError(f"{path}: holds a {type(model).__name__}, not a Keras model")
    output_shape = _shape_or_none(model, "output_shape")
    if output_shape is not None and output_shape[-1] != NUM_CLASSES:
        raise RunDirError(
            f"{path}: the model has {output_shape[-1]} outputs, not one per digit "
            f"({NUM_CLASSES}); it is not an MNIST classifier"
        )
    return model


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    line = text.splitlines()[0] if text else type(error).__name__
    return line if len(line) <= 200 else line[:197] + "..."


def _shape_or_none(model: Any, attribute: str) -> tuple | None:
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
    expected = _shape_or_none(model, "input_shape")
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


# --------------------------------------------------------------------------------------------
# Data


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
                  what: str = "the data") -> np.ndarray:
    """The model's probabilities for `features`, after checking that the shapes fit."""
    features = fit_to_model_input(model, features, model_path, what)
    outputs = predict_probabilities(model, features)
    if outputs.ndim != 2 or outputs.shape[1] != NUM_CLASSES:
        raise RunDirError(
            f"{model_path}: the model returns outputs of shape {outputs.shape[1:]}, "
            f"not {NUM_CLASSES} class probabilities"
        )
    return outputs


# --------------------------------------------------------------------------------------------
# mnist evaluate


@dataclass
class Evaluation:
    """What `evaluate_model` measured, and the files it wrote."""

    report: dict[str, Any]
    labels: np.ndarray
    outputs: np.ndarray
    written: list[Path] = field(default_factory=list)


def evaluation_file_names(split: str) -> tuple[str, str]:
    """`evaluation.json` and `confusion_matrix.png`, suffixed for another split than test, so
    that evaluating the validation set never replaces the test set's evaluation."""
    suffix = "" if split == "test" else f"-{split}"
    return f"evaluation{suffix}.json", f"confusion_matrix{suffix}.png"


def evaluate_model(source: ModelSource, split: str = "test",
                   data_path: str | Path | None = None,
                   output_folder: str | Path | None = None,
                   predictions_path: str | Path | None = None) -> Evaluation:
    """Recompute the loss, accuracy, per-class precision/recall/F1 and confusion matrix of
    a saved model, and write `evaluation.json` and `confusion_matrix.png` (atomically).

    On the run's own test set the numbers are compared with the `metrics.json` the training
    wrote; the report says whether they agree, so a model file that was replaced or
    damaged after training shows up. `predictions_path` also saves every sample's
    prediction as CSV (index, true, predicted, probability, true_probability, top_3).
    """
    import keras

    model = load_model(source.model_path)
    data = load_split(source.config, split, data_path)
    outputs = model_outputs(model, data.features, source.model_path,
                            f"the {split} data of {data.source}")
    summary = classification_metrics(data.labels, outputs)
    report: dict[str, Any] = {
        "model": str(source.model_path),
        "split": split,
        "data_source": data.source,
        "backend": keras.backend.backend(),
        "num_samples": summary["num_samples"],
        "loss_function": source.config.train.loss,
        "loss": loss_from_probabilities(source.config.train.loss, data.labels, outputs),
        "accuracy": summary["accuracy"],
        "num_errors": summary["num_errors"],
        **per_class_report(data.labels, outputs),
        "confusion_matrix": summary["confusion_matrix"],
    }
    training = _training_metrics(source, split, data_path)
    if training is not None:
        report["training_metrics"] = {
            "test_loss": training.get("test_loss"),
            "test_accuracy": training.get("test_accuracy"),
            "num_errors": training.get("num_errors"),
            "agrees": _agrees(report, training),
        }
    folder = Path(output_folder) if output_folder is not None else source.output_folder
    folder.mkdir(parents=True, exist_ok=True)
    json_name, picture_name = evaluation_file_names(split)
    write_json_atomic(folder / json_name, report)
    from mnist_cli import plots

    split_words = {"test": "test set", "val": "validation set", "train": "training set"}[split]
    title = (f"{source.name}: confusion matrix on the {split_words}\n"
             f"{report['num_errors']} errors in {report['num_samples']} digits, "
             f"accuracy {report['accuracy']:.2%}; diagonal: correct (count, recall)")
    save_with(folder / picture_name,
              plots.confusion_matrix_figure(report["confusion_matrix"], title).savefig)
    written = [folder / json_name, folder / picture_name]
    if predictions_path is not None:
        predictions_path = Path(predictions_path)
        predictions_path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(predictions_path, predictions_csv_text(
            data.labels, outputs, data.index, np.arange(len(data.labels))))
        written.append(predictions_path)
    return Evaluation(report, data.labels, outputs, written=written)


def _training_metrics(source: ModelSource, split: str,
                      data_path: str | Path | None) -> dict[str, Any] | None:
    """The run's metrics.json when this evaluation is comparable with it, else None."""
    if source.run is None or split != "test" or data_path is not None:
        return None
    if source.model_path != source.run.model or not source.run.metrics.is_file():
        return None
    try:
        metrics = read_json(source.run.metrics)
    except RunDirError:
        return None
    return metrics if isinstance(metrics, dict) else None


def _agrees(report: dict[str, Any], training: dict[str, Any]) -> bool:
    loss = training.get("test_loss")
    return (
        training.get("test_accuracy") == report["accuracy"]
        and training.get("num_errors") == report["num_errors"]
        and isinstance(loss, (int, float))
        and abs(loss - report["loss"]) <= LOSS_TOLERANCE * max(1.0, abs(loss))
    )


def format_evaluation(report: dict[str, Any]) -> str:
    """The report as a person reads it: headline numbers, per-digit table, confusion matrix."""
    lines = [
        f"Model:    {report['model']} ({report['backend']} backend)",
        f"Data:     {report['split']} split of {report['data_source']} "
        f"({report['num_samples']} digits)",
        f"Accuracy: {report['accuracy']:.4f}   Loss ({report['loss_function']}): "
        f"{report['loss']:.4f}   Errors: {report['num_errors']} of {report['num_samples']}",
    ]
    training = report.get("training_metrics")
    if training is not None:
        if training["agrees"]:
            lines.append("          the same as metrics.json written by the training")
        else:
            lines.append(
                f"          DIFFERS from metrics.json written by the training (accuracy "
                f"{training['test_accuracy']}, loss {training['test_loss']}): was the model "
                "file replaced after training?"
            )
    lines += ["", "digit  precision  recall      f1  support"]
    for digit, row in report["per_class"].items():
        lines.append(f"{digit:>5}  {_cell(row['precision']):>9}  {_cell(row['recall']):>6}  "
                     f"{_cell(row['f1']):>6}  {row['support']:>7}")
    for key, label in (("macro_average", "macro"), ("weighted_average", "weighted")):
        row = report[key]
        lines.append(f"{label:>8}  {_cell(row['precision']):>6}  {_cell(row['recall']):>6}  "
                     f"{_cell(row['f1']):>6}  {row['support']:>7}")
    matrix = report["confusion_matrix"]
    width = max(4, len(str(max(max(row) for row in matrix))) + 1)
    lines += ["", "Confusion matrix (rows: true digit, columns: predicted digit)",
              "true\\pred" + "".join(f"{digit:>{width}}" for digit in range(len(matrix)))]
    for digit, row in enumerate(matrix):
        lines.append(f"{digit:>9}" + "".join(
            f"{value:>{width}}" if value or digit == column else f"{'.':>{width}}"
            for column, value in enumerate(row)))
    return "\n".join(lines)


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


# --------------------------------------------------------------------------------------------
# Misclassified digits: the grid (shared with `mnist train`) and `mnist show-errors`


def write_error_grid(
    path: Path,
    images: np.ndarray,
    labels: np.ndarray,
    outputs: np.ndarray,
    test_index: np.ndarray,
    name: str,
    positions: np.ndarray | None = None,
    limit: int = ERROR_GRID_LIMIT,
    per_row: int = ERROR_GRID_PER_ROW,
    selection: str = "",
    order: str = "index",
) -> int:
    """Draw misclassified digits as a captioned grid and save it atomically as `path`.

    `mnist train` (errors.png, right after fitting) and `mnist show-errors` (later, from the
    saved model) both draw through this function, so the two pictures look alike and the
    default `show-errors` picture is the one training made. `positions` are the rows to show,
    already filtered and ordered (default: every error, in test-set order); the first `limit`
    are drawn. Each digit is captioned `true → predicted (probability)` with its index in
    the test set below it, so it can be found in `errors.csv` or in the dataset. Returns
    the number of digits drawn.
    """
    from mnist_cli import plots

    if positions is None:
        positions = select_errors(labels, outputs)
    shown = positions[:limit]
    predicted = np.argmax(outputs, axis=-1)
    captions = [
        plots.error_caption(int(labels[row]), int(predicted[row]), float(outputs[row].max()))
        for row in shown
    ]
    footnotes = [f"#{int(test_index[row])}" for row in shown]
    how_many = f"{len(positions)} misclassified test digits{selection}"
    if len(shown) < len(positions):
        how_many += (f", the {len(shown)} most confidently wrong shown" if order == "confidence"
                     else f", the first {len(shown)} shown")
    elif order == "confidence" and len(shown) > 1:
        how_many += ", most confidently wrong first"
    # Binarized inputs look blocky: say so, so nobody blames the picture.
    binarized = bool(len(shown)) and bool(np.isin(images[shown], (0.0, 1.0)).all())
    seen = "binarized, as the network saw them" if binarized else "as the network saw them"
    title = f"{name}: {how_many}"
    note = (f"Caption: true digit → predicted digit (probability of the prediction); "
            f"below: #index in the test set. Digits {seen}.")
    pictures = (images[shown].reshape(-1, 28, 28) if len(shown)
                else np.zeros((0, 28, 28), dtype=np.float32))
    figure = plots.digit_grid_figure(pictures, captions, per_row=per_row, title=title,
                                     footnotes=footnotes, note=note)
    save_with(path, figure.savefig)
    return len(shown)


PREDICTIONS_CSV_COLUMNS = (
    "index", "true", "predicted", "probability", "true_probability", "top_3"
)


def predictions_csv_text(labels: np.ndarray, outputs: np.ndarray, index: np.ndarray,
                         positions: np.ndarray) -> str:
    """One row per sample of `positions`, in that order: `errors.csv` (the misclassified
    test digits) and `mnist evaluate --predictions` (every sample) share this layout.

    `probability` is the probability of the prediction, `true_probability` what the network
    gave the right digit, `top_3` the three most probable digits as
    `digit:probability` separated by spaces (one column, so the file stays a plain table).
    """
    digits, probabilities = top_predictions(outputs[positions], TOP_COUNT)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(PREDICTIONS_CSV_COLUMNS)
    for row_number, row in enumerate(positions):
        true_label = int(labels[row])
        writer.writerow([
            int(index[row]),
            true_label,
            int(digits[row_number, 0]),
            f"{float(probabilities[row_number, 0]):.6f}",
            f"{float(outputs[row, true_label]):.6f}",
            " ".join(f"{int(digit)}:{float(probability):.4f}" for digit, probability
                     in zip(digits[row_number], probabilities[row_number])),
        ])
    return buffer.getvalue()


@dataclass
class ErrorsResult:
    """What `show_errors` found and wrote."""

    total_errors: int  # every misclassified test digit
    selected: int  # those that pass --true / --pred
    shown: int  # those drawn (at most --limit)
    picture: Path | None
    table: Path | None


def default_errors_path(folder: Path, limit: int, sort: str, true_digit: int | None,
                        predicted_digit: int | None) -> Path:
    """`errors.png` for the default view (the picture training drew), else a name that
    spells out the view (`errors-true4-pred9-confidence.png`), so that asking for a
    filtered view never replaces the training's picture or another view."""
    parts = ["errors"]
    if true_digit is not None:
        parts.append(f"true{true_digit}")
    if predicted_digit is not None:
        parts.append(f"pred{predicted_digit}")
    if sort != "index":
        parts.append(sort)
    if limit != ERROR_GRID_LIMIT:
        parts.append(f"limit{limit}")
    return folder / ("-".join(parts) + ".png")


def show_errors(source: ModelSource, limit: int = ERROR_GRID_LIMIT,
                per_row: int = ERROR_GRID_PER_ROW, sort: str = "index",
                true_digit: int | None = None, predicted_digit: int | None = None,
                out: str | Path | None = None,
                data_path: str | Path | None = None) -> ErrorsResult:
    """Find the misclassified test digits of a saved model and write the grid and the table.

    The table (`.csv` beside the picture) lists every selected error, not only the `limit`
    drawn. With no error to show nothing is written.
    """
    for value, option in ((true_digit, "--true"), (predicted_digit, "--pred")):
        if value is not None and not 0 <= value < NUM_CLASSES:
            raise UsageError(f"{option} must be a digit 0-9 (got {value})")
    if true_digit is not None and true_digit == predicted_digit:
        raise UsageError(f"--true and --pred are both {true_digit}: a digit classified as "
                        "itself is not an error")
    if out is not None:
        require_png(out, "--out")
    model = load_model(source.model_path)
    data = load_split(source.config, "test", data_path)
    outputs = model_outputs(model, data.features, source.model_path,
                            f"the test data of {data.source}")
    total = len(select_errors(data.labels, outputs))
    positions = select_errors(data.labels, outputs, true_digit, predicted_digit, sort)
    if len(positions) == 0:
        return ErrorsResult(total, 0, 0, None, None)
    picture = (Path(out) if out is not None else
               default_errors_path(source.output_folder, limit, sort, true_digit,
                                   predicted_digit))
    picture.parent.mkdir(parents=True, exist_ok=True)
    selection = _selection_words(true_digit, predicted_digit)
    shown = write_error_grid(picture, data.features, data.labels, outputs, data.index,
                             source.config.name, positions=positions, limit=limit,
                             per_row=per_row, selection=selection, order=sort)
    table = picture.with_suffix(".csv")
    write_text_atomic(table, predictions_csv_text(data.labels, outputs, data.index, positions))
    return ErrorsResult(total, len(positions), shown, picture, table)


def _selection_words(true_digit: int | None, predicted_digit: int | None) -> str:
    if true_digit is not None and predicted_digit is not None:
        return f" ({true_digit} taken for {predicted_digit})"
    if true_digit is not None:
        return f" (true digit {true_digit})"
    if predicted_digit is not None:
        return f" (taken for {predicted_digit})"
    return ""


# --------------------------------------------------------------------------------------------
# mnist predict


@dataclass
class ImagePrediction:
    """The top digits for one image file, or why it could not be classified."""

    image: Path
    digits: list[int] = field(default_factory=list)
    probabilities: list[float] = field(default_factory=list)
    preprocessed: Path | None = None
    error: str | None = None
    all_probabilities: list[float] = field(default_factory=list, repr=False)
    network_input: np.ndarray | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        if self.error is not None:
            return {"image": str(self.image), "error": self.error}
        return {
            "image": str(self.image),
            "digit": self.digits[0],
            "probability": self.probabilities[0],
            "top_3": [{"digit": digit, "probability": probability}
                      for digit, probability in zip(self.digits, self.probabilities)],
            "preprocessed": None if self.preprocessed is None else str(self.preprocessed),
        }


def network_input_pixels(features: np.ndarray) -> np.ndarray:
    """Features of one image back as a 28x28 uint8 picture (scaled or binarized inputs are
    0..1, unscaled ones 0..255), for `--save-preprocessed`."""
    pixels = np.asarray(features, dtype=np.float32).reshape(28, 28)
    if pixels.max() <= 1.0:
        pixels = pixels * 255.0
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def _preprocessed_name(image: Path, taken: set[str]) -> str:
    """`<stem>-preprocessed.png`, numbered when two inputs share a stem (a/1.png, b/1.png)."""
    name = f"{image.stem}-preprocessed.png"
    number = 2
    while name in taken:
        name = f"{image.stem}-{number}-preprocessed.png"
        number += 1
    taken.add(name)
    return name


def predict_images(source: ModelSource, image_paths: Sequence[str | Path],
                   save_preprocessed: str | Path | None = None) -> list[ImagePrediction]:
    """Classify image files with a run's model, preparing them as MNIST was made.

    Each image goes through `images.load_digit_image` (grey levels, polarity, crop, fit into
    20x20, centre of mass) and then the run's own `data.preprocess` (scaling, binarizing,
    flattening), exactly as the training data did. A file that cannot be read or holds no
    digit gets its `error` and the others are still classified; the images are all read
    before the model is loaded, so a run of typos costs no Keras start-up.
    """
    from mnist_cli.data import preprocess
    from mnist_cli.images import load_digit_image, save_digit_png

    results = [ImagePrediction(Path(path)) for path in image_paths]
    prepared: list[np.ndarray] = []
    readable: list[ImagePrediction] = []
    for result in results:
        try:
            prepared.append(load_digit_image(result.image))
        except ImageError as error:
            result.error = str(error)
            continue
        readable.append(result)
    if not readable:
        return results
    features = preprocess(np.stack(prepared), source.config.data)
    model = load_model(source.model_path)
    outputs = model_outputs(model, features, source.model_path, "a prepared image")
    digits, probabilities = top_predictions(outputs, TOP_COUNT)
    for row, result in enumerate(readable):
        result.digits = [int(digit) for digit in digits[row]]
        result.probabilities = [float(probability) for probability in probabilities[row]]
        result.all_probabilities = [float(probability) for probability in outputs[row]]
        result.network_input = network_input_pixels(features[row])
    if save_preprocessed is not None:
        folder = Path(save_preprocessed)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ImageError(
                f"--save-preprocessed {folder}: cannot create the folder ({error.strerror})"
            ) from None
        inputs = {result.image.resolve() for result in results}
        taken: set[str] = set()
        for result in readable:
            target = folder / _preprocessed_name(result.image, taken)
            while target.resolve() in inputs:  # never write over an image being classified
                target = folder / _preprocessed_name(result.image, taken)
            save_digit_png(result.network_input, target)
            result.preprocessed = target
    return results


def _thumbnail(path: Path, side: int = 160) -> np.ndarray:
    """The image file as a person sees it (upright, grey), small enough for a figure."""
    from PIL import Image, ImageOps

    with Image.open(path) as image:
        image = ImageOps.exif_transpose(image)
        image.draft("L", (side, side))
        image = image.convert("L")
        image.thumbnail((side, side))
        return np.asarray(image)


def require_png(path: str | Path, option: str) -> Path:
    """`path` if it names a PNG, else a one-line error: checked before any work is done, so
    a typo in an output name does not cost a model load (or print results then fail)."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise UsageError(f"{option} {path}: the picture is a PNG; give a file name ending in .png")
    return path


def write_predictions_figure(results: Sequence[ImagePrediction], path: str | Path,
                             name: str) -> Path:
    """`mnist predict --plot`: each classified image, its network input and the probability
    of every digit, saved atomically as a PNG."""
    from mnist_cli import plots

    path = require_png(path, "--plot")
    classified = [result for result in results if result.error is None]
    if not classified:
        raise ImageError("--plot: no image could be classified, so there is nothing to draw")
    figure = plots.predictions_figure(
        [result.image.name for result in classified],
        [_thumbnail(result.image) for result in classified],
        [result.network_input for result in classified],
        [result.all_probabilities for result in classified],
        f"{name}: what the network saw and what it answered",
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    save_with(path, figure.savefig)
    return path


def format_prediction(result: ImagePrediction, width: int = 0) -> str:
    """`seven.png  7 (98.1%)   then 1 (1.2%), 2 (0.3%)`."""
    first = f"{result.digits[0]} ({result.probabilities[0]:.1%})"
    others = ", ".join(f"{digit} ({probability:.1%})" for digit, probability
                       in zip(result.digits[1:], result.probabilities[1:]))
    line = f"{str(result.image) + ':':<{width + 1}} {first:<10} then {others}"
    if result.preprocessed is not None:
        line += f"   [network input: {result.preprocessed}]"
    return line
