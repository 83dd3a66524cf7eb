"""`mnist show-errors`: the misclassified test digits of a saved model, as a captioned
grid (drawn by `artifacts.write_error_grid`, as training draws errors.png) and a CSV table.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_cli.artifacts import (
    ERROR_GRID_LIMIT,
    ERROR_GRID_PER_ROW,
    index_words,
    score_word,
    write_error_grid,
)
from mnist_cli.atomic_files import write_text_atomic
from mnist_cli.config import NUM_CLASSES
from mnist_cli.errors import UsageError
from mnist_cli.inspection.source import ModelSource, load_model, load_split, model_outputs
from mnist_cli.metrics import TOP_COUNT, select_errors, top_predictions
from mnist_cli.plots import require_png

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
    model = load_model(source)
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
                             per_row=per_row, selection=selection, order=sort,
                             score=score_word(source.config),
                             index_of=index_words(source.config))
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
