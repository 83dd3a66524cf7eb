"""What a run leaves for a person to look at, drawn the same way by training and by
inspection: the test-set part of `metrics.json` and the `errors.png` grid.

`mnist train` writes both right after fitting; `mnist evaluate` and `mnist show-errors`
recompute them later from the saved model through the same functions, so the numbers agree
and the pictures look alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mnist_cli import plots
from mnist_cli.atomic_files import save_with
from mnist_cli.config import Config
from mnist_cli.metrics import (
    classification_metrics,
    loss_from_probabilities,
    predict_probabilities,
    select_errors,
)

ERROR_GRID_LIMIT = 30
ERROR_GRID_PER_ROW = 10


def score_word(config: Config) -> str:
    """What an output number is: a probability after a softmax, else only a score."""
    return "probability" if config.model.outputs_probabilities else "score"


def index_words(config: Config) -> str:
    """What a test digit's index counts, in words, for the captions."""
    if config.data.split == "pooled":
        return "the pooled training and test digits"
    return "the test set"


def test_metrics(model: Any, loss: str, features: np.ndarray,
                 labels: np.ndarray) -> tuple[dict[str, Any], np.ndarray]:
    """The test-set part of metrics.json (loss by the run's `loss` function, accuracy,
    errors, per-digit accuracy, confusion matrix), and the model's outputs on the test set."""
    outputs = predict_probabilities(model, features)
    summary = classification_metrics(labels, outputs)
    metrics = {
        "test_loss": loss_from_probabilities(loss, labels, outputs),
        "test_accuracy": summary["accuracy"],
        "num_test": summary["num_samples"],
        "num_errors": summary["num_errors"],
        "per_class_accuracy": summary["per_class_accuracy"],
        "confusion_matrix": summary["confusion_matrix"],
    }
    return metrics, outputs


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
    score: str = "probability",
    index_of: str = "the test set",
) -> int:
    """Draw misclassified digits as a captioned grid and save it atomically as `path`.

    `mnist train` (errors.png, right after fitting) and `mnist show-errors` (later, from the
    saved model) both draw through this function, so the two pictures look alike and the
    default `show-errors` picture is the one training made. `positions` are the rows to show,
    already filtered and ordered (default: every error, in test-set order); the first `limit`
    are drawn. Each digit is captioned `true → predicted (probability)` with its index in
    the test set below it, so it can be found in `errors.csv` or in the dataset. Returns
    the number of digits drawn. `score` names the number in the caption: "probability"
    for a softmax output, "score" for a sigmoid or linear one; `index_of` what the index
    counts (the test set, or the pool of a `split: pooled` run).
    """
    if positions is None:
        positions = select_errors(labels, outputs)
    shown = positions[:limit]
    predicted = np.argmax(outputs, axis=-1)
    captions = [
        plots.error_caption(int(labels[row]), int(predicted[row]), float(outputs[row].max()))
        for row in shown
    ]
    footnotes = [f"#{int(test_index[row])}" for row in shown]
    how_many = (f"{len(positions)} misclassified test "
                f"digit{'s' if len(positions) != 1 else ''}{selection}")
    if len(shown) < len(positions):
        how_many += (f", the {len(shown)} most confidently wrong shown" if order == "confidence"
                     else f", the first {len(shown)} shown")
    elif order == "confidence" and len(shown) > 1:
        how_many += ", most confidently wrong first"
    # Binarized inputs look blocky: say so, so nobody blames the picture.
    binarized = bool(len(shown)) and bool(np.isin(images[shown], (0.0, 1.0)).all())
    seen = "binarized, as the network saw them" if binarized else "as the network saw them"
    title = f"{name}: {how_many}"
    note = (f"Caption: true digit → predicted digit ({score} of the prediction); "
            f"below: #index in {index_of}. Digits {seen}.")
    pictures = (images[shown].reshape(-1, 28, 28) if len(shown)
                else np.zeros((0, 28, 28), dtype=np.float32))
    figure = plots.digit_grid_figure(pictures, captions, per_row=per_row, title=title,
                                     footnotes=footnotes, note=note)
    save_with(path, figure.savefig)
    return len(shown)
