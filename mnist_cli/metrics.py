"""Metrics and misclassified examples, computed from labels and predicted probabilities.

Everything here works on NumPy arrays (scikit-learn for the confusion matrix and the
per-digit scores), so training, right after fitting, and `mnist evaluate`, later from the
saved model, compute the very same numbers the same way. Only `predict_probabilities`
touches a model, and imports Keras inside.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from mnist_cli.choices import ERROR_SORT_KEYS
from mnist_cli.config import NUM_CLASSES

# Keras clips probabilities to [epsilon, 1 - epsilon] before the log of cross-entropy.
KERAS_EPSILON = 1e-7

# How many of the most probable digits a prediction lists.
TOP_COUNT = 3


def one_hot(labels: np.ndarray) -> np.ndarray:
    return np.eye(NUM_CLASSES, dtype=np.float32)[np.asarray(labels, dtype=np.int64)]


def predict_probabilities(model: Any, features: np.ndarray, batch_size: int = 2048,
                          on_progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """The model's outputs for `features`, as float32 NumPy, in inference mode;
    `on_progress(done, total)` after each chunk (for a progress bar)."""
    import keras

    chunks = []
    for start in range(0, len(features), batch_size):
        chunk = features[start:start + batch_size]
        rows = len(chunk)
        if rows < batch_size < len(features):
            # The last chunk padded to the others' shape: on JAX every new shape compiles
            # each layer's operations again. Inference treats every row on its own.
            chunk = np.concatenate([chunk, np.zeros((batch_size - rows, *chunk.shape[1:]),
                                                    dtype=chunk.dtype)])
        chunks.append(keras.ops.convert_to_numpy(model(chunk, training=False))[:rows])
        if on_progress is not None:
            on_progress(start + rows, len(features))
    if not chunks:
        return np.zeros((0, NUM_CLASSES), dtype=np.float32)
    return np.concatenate(chunks).astype(np.float32, copy=False)


def loss_from_probabilities(loss: str, labels: np.ndarray, outputs: np.ndarray) -> float:
    """The mean loss Keras would report for these outputs (same clipping, same reduction)."""
    target = one_hot(labels)
    outputs = outputs.astype(np.float64)
    if loss == "categorical_crossentropy":
        normalised = outputs / np.sum(outputs, axis=-1, keepdims=True)
        clipped = np.clip(normalised, KERAS_EPSILON, 1.0 - KERAS_EPSILON)
        return float(np.mean(-np.sum(target * np.log(clipped), axis=-1)))
    squared = np.square(target - outputs)
    if loss == "mse":
        return float(np.mean(squared))
    if loss == "quadratic":
        return float(np.mean(0.5 * np.sum(squared, axis=-1)))
    if loss == "sum_squared_error":
        return float(np.mean(np.sum(squared, axis=-1)))
    raise ValueError(f"unknown loss {loss!r}")


def classification_metrics(labels: np.ndarray, outputs: np.ndarray) -> dict[str, Any]:
    """Accuracy, per-class accuracy (recall), the confusion matrix and the number of errors."""
    from sklearn.metrics import confusion_matrix

    labels = np.asarray(labels, dtype=np.int64)
    predicted = np.argmax(outputs, axis=-1)
    matrix = confusion_matrix(labels, predicted, labels=list(range(NUM_CLASSES)))
    per_class_totals = matrix.sum(axis=1)
    per_class = {
        str(digit): (float(matrix[digit, digit] / per_class_totals[digit])
                     if per_class_totals[digit] else None)
        for digit in range(NUM_CLASSES)
    }
    errors = int(np.sum(predicted != labels))
    return {
        "accuracy": float(np.mean(predicted == labels)) if len(labels) else 0.0,
        "num_samples": int(len(labels)),
        "num_errors": errors,
        "per_class_accuracy": per_class,
        "confusion_matrix": matrix.tolist(),
    }


def per_class_report(labels: np.ndarray, outputs: np.ndarray) -> dict[str, Any]:
    """Precision, recall, F1 and support per digit, with their macro and weighted averages.

    scikit-learn computes them (`precision_recall_fscore_support`). A digit that the model
    never predicts has no defined precision: it is reported as None (null in JSON) rather
    than as a 0 that would read like a measured value, and the averages leave it out.
    """
    from sklearn.metrics import precision_recall_fscore_support

    labels = np.asarray(labels, dtype=np.int64)
    predicted = np.argmax(outputs, axis=-1)
    digits = list(range(NUM_CLASSES))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=digits, zero_division=np.nan
    )
    report: dict[str, Any] = {
        "per_class": {
            str(digit): {
                "precision": _number_or_none(precision[digit]),
                "recall": _number_or_none(recall[digit]),
                "f1": _number_or_none(f1[digit]),
                "support": int(support[digit]),
            }
            for digit in digits
        }
    }
    for average in ("macro", "weighted"):
        averaged = precision_recall_fscore_support(
            labels, predicted, labels=digits, average=average, zero_division=np.nan
        )
        report[f"{average}_average"] = {
            "precision": _number_or_none(averaged[0]),
            "recall": _number_or_none(averaged[1]),
            "f1": _number_or_none(averaged[2]),
            "support": int(len(labels)),
        }
    return report


def _number_or_none(value: Any) -> float | None:
    value = float(value)
    return None if np.isnan(value) else value


def top_predictions(outputs: np.ndarray, count: int = TOP_COUNT) -> tuple[np.ndarray, np.ndarray]:
    """The `count` most probable digits of every row, most probable first, with their
    probabilities: (digits (N, count), probabilities (N, count)).

    A stable sort keeps the lower digit first on ties, so the order is reproducible.
    """
    order = np.argsort(-outputs, axis=-1, kind="stable")[:, :count]
    return order, np.take_along_axis(outputs, order, axis=-1)


def select_errors(
    labels: np.ndarray,
    outputs: np.ndarray,
    true_digit: int | None = None,
    predicted_digit: int | None = None,
    sort: str = "index",
) -> np.ndarray:
    """Positions of the misclassified rows, optionally only those of one true and/or
    predicted digit, in dataset order (`sort="index"`) or most confidently wrong first
    (`sort="confidence"`: highest probability given to the wrong digit; ties keep their
    dataset order). The most confident mistakes are the interesting ones: a low-probability
    error is a coin toss, a 0.99 error is a digit the network is sure it knows.
    """
    labels = np.asarray(labels)
    predicted = np.argmax(outputs, axis=-1)
    wrong = predicted != labels
    if true_digit is not None:
        wrong &= labels == true_digit
    if predicted_digit is not None:
        wrong &= predicted == predicted_digit
    positions = np.flatnonzero(wrong)
    if sort == "confidence":
        confidence = outputs[positions, predicted[positions]]
        positions = positions[np.argsort(-confidence, kind="stable")]
    elif sort not in ERROR_SORT_KEYS:
        raise ValueError(f"sort must be one of {', '.join(ERROR_SORT_KEYS)} (got {sort!r})")
    return positions
