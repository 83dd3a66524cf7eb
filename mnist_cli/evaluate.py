"""Metrics and misclassified examples, computed from labels and predicted probabilities.

Everything here works on NumPy arrays, so `train` (right after fitting) and `evaluate`
(later, from the saved model) compute the very same numbers the same way. Importing this
module does not import Keras.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mnist_cli.config import NUM_CLASSES

# Keras clips probabilities to [epsilon, 1 - epsilon] before the log of cross-entropy.
KERAS_EPSILON = 1e-7


def one_hot(labels: np.ndarray) -> np.ndarray:
    return np.eye(NUM_CLASSES, dtype=np.float32)[np.asarray(labels, dtype=np.int64)]


def predict_probabilities(model: Any, features: np.ndarray, batch_size: int = 2048) -> np.ndarray:
    """The model's outputs for `features`, as float32 NumPy, in inference mode."""
    import keras

    chunks = [
        keras.ops.convert_to_numpy(model(features[start:start + batch_size], training=False))
        for start in range(0, len(features), batch_size)
    ]
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


def misclassified(labels: np.ndarray, outputs: np.ndarray) -> np.ndarray:
    """Positions of the wrongly classified samples, in their original order."""
    return np.flatnonzero(np.argmax(outputs, axis=-1) != np.asarray(labels))
