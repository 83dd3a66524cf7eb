"""Matplotlib figures, drawn without a display (Agg). Callers save them (atomically).

Figures are built with `matplotlib.figure.Figure` rather than pyplot, so nothing global
(open windows, the current figure) is touched and figures are freed when dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def learning_curves_figure(history: Sequence[dict[str, Any]], title: str) -> Figure:
    """Loss and accuracy per epoch, training and validation, side by side."""
    figure = Figure(figsize=(10, 4), layout="constrained")
    loss_axes, accuracy_axes = figure.subplots(1, 2)
    epochs = [int(row["epoch"]) for row in history]
    for axes, key, label in ((loss_axes, "loss", "loss"), (accuracy_axes, "accuracy", "accuracy")):
        for prefix, name, style in (("", "training", "-o"), ("val_", "validation", "-s")):
            values = [row.get(prefix + key) for row in history]
            points = [(epoch, value) for epoch, value in zip(epochs, values) if value is not None]
            if points:
                xs, ys = zip(*points)
                axes.plot(xs, ys, style, markersize=3, label=name)
        axes.set_xlabel("epoch")
        axes.set_ylabel(label)
        axes.set_title(label.capitalize())
        axes.grid(alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend()
        if len(epochs) <= 20:
            axes.set_xticks(epochs)
    figure.suptitle(title)
    return figure


def digit_grid_figure(
    images: np.ndarray,
    captions: Sequence[str],
    per_row: int = 10,
    title: str = "",
) -> Figure:
    """A grid of 28x28 digits (light on dark, as MNIST stores them) with a caption each."""
    count = len(images)
    columns = max(1, min(per_row, count))
    rows = max(1, -(-count // columns))
    figure = Figure(figsize=(1.25 * columns, 1.45 * rows + 0.6), layout="constrained")
    axes_grid = np.atleast_1d(figure.subplots(rows, columns, squeeze=False)).ravel()
    for axes in axes_grid:
        axes.set_axis_off()
    for axes, image, caption in zip(axes_grid, images, captions):
        pixels = np.asarray(image, dtype=np.float32).reshape(28, 28)
        axes.imshow(pixels, cmap="gray_r", vmin=0.0, vmax=max(1.0, float(pixels.max())))
        axes.set_title(caption, fontsize=8)
    if title:
        figure.suptitle(title)
    return figure


def error_caption(true_label: int, predicted_label: int, probability: float) -> str:
    return f"{true_label} → {predicted_label} ({probability:.2f})"
