"""Matplotlib figures, drawn without a display (Agg). Callers save them (atomically).

Figures are built with `matplotlib.figure.Figure` rather than pyplot, so nothing global
(open windows, the current figure) is touched and figures are freed when dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from mnist_cli.errors import UsageError  # noqa: E402
from mnist_cli.runs import rate_steps  # noqa: E402


def learning_curves_figure(history: Sequence[dict[str, Any]], title: str,
                           best_epoch: int | None = None) -> Figure:
    """Loss and accuracy per epoch, training and validation, side by side; the best epoch
    (early stopping's) marked, and the learning rate's steps, or its curve in a third panel
    when a schedule changes it every epoch."""
    epochs = [int(row["epoch"]) for row in history]
    rates = [row.get("learning_rate") for row in history]
    steps = rate_steps(list(history))
    continuous = steps is not None and len(steps) > 10
    figure = Figure(figsize=(14 if continuous else 10, 4), layout="constrained")
    panels = figure.subplots(1, 3 if continuous else 2)
    loss_axes, accuracy_axes = panels[0], panels[1]
    for axes, key, label in ((loss_axes, "loss", "loss"), (accuracy_axes, "accuracy", "accuracy")):
        for prefix, name, style in (("", "training", "-o"), ("val_", "validation", "-s")):
            values = [row.get(prefix + key) for row in history]
            points = [(epoch, value) for epoch, value in zip(epochs, values) if value is not None]
            if points:
                xs, ys = zip(*points)
                axes.plot(xs, ys, style, markersize=3, label=name)
        if best_epoch is not None:
            axes.axvline(best_epoch, color="tab:green", linestyle="--", linewidth=1,
                         label=f"best epoch ({best_epoch})")
        for position, (epoch, rate) in enumerate(steps if steps and not continuous else []):
            axes.axvline(epoch - 0.5, color="grey", linestyle=":", linewidth=1,
                         label="learning rate changes" if position == 0 else None)
            axes.annotate(f"lr {rate:.2g}", (epoch - 0.5, 1), xycoords=("data", "axes fraction"),
                          xytext=(2, -10), textcoords="offset points", fontsize=7, color="grey")
        _label_epochs(axes, epochs, label)
    if continuous:
        rate_axes = panels[2]
        rate_axes.plot(epochs, rates, "-", color="tab:purple")
        _label_epochs(rate_axes, epochs, "learning rate")
    figure.suptitle(title)
    return figure


def _label_epochs(axes: Any, epochs: Sequence[int], label: str) -> None:
    axes.set_xlabel("epoch")
    axes.set_ylabel(label)
    axes.set_title(label.capitalize())
    axes.grid(alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=8)
    if len(epochs) <= 20:
        axes.set_xticks(epochs)


def digit_grid_figure(
    images: np.ndarray,
    captions: Sequence[str],
    per_row: int = 10,
    title: str = "",
    footnotes: Sequence[str] | None = None,
    note: str = "",
) -> Figure:
    """A grid of 28x28 digits with a caption above each and an optional footnote below.

    Digits are drawn dark on white (ink on paper reads better than MNIST's light-on-black),
    each in a thin grey frame so that the 28x28 field, and so how far off-centre or how
    small a digit is, stays visible. With no images the figure still carries the title, so
    a caller can always save it. `note` (how to read the captions) goes under the grid in
    small type; title and note are wrapped to the figure's width, so a grid of two digits
    does not cut them off.
    """
    import textwrap

    count = len(images)
    columns = max(1, min(per_row, count))
    rows = max(1, -(-count // columns))
    row_height = 1.6 if footnotes is not None else 1.45
    width = max(1.25 * columns, 4.0)
    # About 12 characters of 11-point text per inch, 15 of 8-point text.
    title = "\n".join(textwrap.fill(line, int(width * 12)) for line in title.splitlines())
    note = textwrap.fill(note, int(width * 15)) if note else ""
    text_lines = (title.count("\n") + 1 if title else 0) + (note.count("\n") + 1 if note else 0)
    figure = Figure(figsize=(width, row_height * rows + 0.25 * text_lines + 0.3),
                    layout="constrained")
    axes_grid = np.atleast_1d(figure.subplots(rows, columns, squeeze=False)).ravel()
    for position, axes in enumerate(axes_grid):
        if position >= count:
            axes.set_axis_off()
            continue
        axes.set_xticks([])
        axes.set_yticks([])
        for spine in axes.spines.values():
            spine.set_color("0.75")
    for position, (axes, image, caption) in enumerate(zip(axes_grid, images, captions)):
        pixels = np.asarray(image, dtype=np.float32).reshape(28, 28)
        axes.imshow(pixels, cmap="gray_r", vmin=0.0, vmax=max(1.0, float(pixels.max())))
        axes.set_title(caption, fontsize=9)
        if footnotes is not None and position < len(footnotes):
            axes.set_xlabel(footnotes[position], fontsize=7, color="0.35", labelpad=2)
    if title:
        figure.suptitle(title, fontsize=11)
    if note:
        figure.supxlabel(note, fontsize=8, color="0.3")
    return figure


def error_caption(true_label: int, predicted_label: int, probability: float) -> str:
    return f"{true_label} → {predicted_label} ({probability:.2f})"


def confusion_matrix_figure(matrix: Sequence[Sequence[int]], title: str,
                            digits: str = "test digits") -> Figure:
    """The confusion matrix with its counts written in every cell.

    The diagonal (correct answers, thousands) and the errors (mostly single digits) differ by
    three orders of magnitude: on one colour scale every error cell would look empty. So the
    errors get their own red scale and the diagonal is drawn in a neutral blue with its count
    and the digit's recall; the eye goes to the red cells, which are the mistakes. Zero cells
    are left blank so the few confusions that matter stand out.
    """
    from matplotlib.colors import Normalize

    counts = np.asarray(matrix, dtype=np.int64)
    classes = counts.shape[0]
    off_diagonal = counts.copy()
    np.fill_diagonal(off_diagonal, 0)
    error_maximum = max(1, int(off_diagonal.max()))
    figure = Figure(figsize=(7.6, 6.6), layout="constrained")
    axes = figure.subplots()
    errors_only = np.ma.masked_where(off_diagonal == 0, off_diagonal)
    image = axes.imshow(errors_only, cmap="Reds", norm=Normalize(0, error_maximum))
    diagonal = np.ma.masked_where(~np.eye(classes, dtype=bool), np.ones_like(counts))
    axes.imshow(diagonal, cmap="Blues", vmin=0, vmax=4, alpha=1.0)
    row_totals = counts.sum(axis=1)
    for true_digit in range(classes):
        for predicted_digit in range(classes):
            value = int(counts[true_digit, predicted_digit])
            if true_digit == predicted_digit:
                recall = value / row_totals[true_digit] if row_totals[true_digit] else 0.0
                axes.text(predicted_digit, true_digit, f"{value}\n{recall:.1%}", ha="center",
                          va="center", fontsize=8, fontweight="bold", color="#08306b")
            elif value:
                dark = value > 0.55 * error_maximum
                axes.text(predicted_digit, true_digit, str(value), ha="center", va="center",
                          fontsize=9, color="white" if dark else "black")
    axes.set_xticks(range(classes))
    axes.set_yticks(range(classes))
    axes.set_xticks(np.arange(-0.5, classes, 1), minor=True)
    axes.set_yticks(np.arange(-0.5, classes, 1), minor=True)
    axes.grid(which="minor", color="0.85", linewidth=0.6)
    axes.tick_params(which="minor", length=0)
    axes.set_xlabel("predicted digit")
    axes.set_ylabel("true digit")
    axes.xaxis.set_label_position("top")
    axes.xaxis.tick_top()
    colorbar = figure.colorbar(image, ax=axes, shrink=0.8)
    colorbar.set_label(f"misclassified {digits} (off the diagonal)")
    axes.set_title(title, fontsize=11)
    return figure


_COMPARISON_METRICS = (
    ("loss", "Training loss", "loss (each run's own loss function)"),
    ("val_loss", "Validation loss", "loss (each run's own loss function)"),
    ("accuracy", "Training accuracy", "accuracy"),
    ("val_accuracy", "Validation accuracy", "accuracy"),
)


def comparison_figure(
    histories: Sequence[tuple[str, Sequence[dict[str, Any]]]], title: str
) -> Figure:
    """Learning curves of several runs: one colour per run, one panel per metric.

    Four panels (training and validation, loss and accuracy) rather than two crowded ones:
    with five runs, solid and dashed lines of ten colours in one axes cannot be told apart.
    Loss panels use a log scale when the values span more than a factor of 20, since a
    good run's training loss falls by orders of magnitude and would flatten the others.
    """
    figure = Figure(figsize=(11, 7.5), layout="constrained")
    axes_grid = figure.subplots(2, 2, sharex=True)
    colours = matplotlib.colormaps["tab10"]
    for axes, (key, panel_title, y_label) in zip(axes_grid.ravel(), _COMPARISON_METRICS):
        plotted: list[float] = []
        for number, (label, history) in enumerate(histories):
            points = [(int(row["epoch"]), row.get(key)) for row in history
                      if row.get(key) is not None]
            if not points:
                continue
            xs, ys = zip(*points)
            plotted.extend(ys)
            axes.plot(xs, ys, "-o", markersize=2.5, linewidth=1.5, color=colours(number % 10),
                      label=label)
        axes.set_title(panel_title)
        axes.set_ylabel(y_label)
        axes.grid(alpha=0.3)
        if not plotted:
            axes.text(0.5, 0.5, "not recorded\n(no validation set)", ha="center", va="center",
                      transform=axes.transAxes, color="0.4")
        elif key.endswith("loss") and min(plotted) > 0 and max(plotted) / min(plotted) > 20:
            axes.set_yscale("log")
    from matplotlib.ticker import MaxNLocator

    for axes in axes_grid[1]:
        axes.set_xlabel("epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    handles, labels = axes_grid[0][0].get_legend_handles_labels()
    if handles:
        # Two columns of long run names fit the 11-inch width; longer ones get one column.
        columns = 2 if max(len(label) for label in labels) <= 75 else 1
        figure.legend(handles, labels, loc="outside lower center",
                      ncols=min(columns, len(handles)), fontsize=9)
    figure.suptitle(title)
    return figure


def predictions_figure(
    names: Sequence[str],
    originals: Sequence[np.ndarray],
    network_inputs: Sequence[np.ndarray],
    probabilities: Sequence[Sequence[float]],
    title: str,
    score: str = "probability",
) -> Figure:
    """One row per image: the file as given, the 28x28 input the network received, and the
    probability of every digit, the predicted one highlighted. `score` names the numbers:
    "probability" (a softmax's, shown as percentages) or "score" (any other output layer's,
    shown as they are, on an axis that holds them all).

    Seeing the network's input next to the original is what explains a surprising answer:
    a digit cropped badly, a stroke lost to binarizing, the background taken for ink.
    """
    count = len(names)
    figure = Figure(figsize=(8.0, 1.55 * count + 0.5), layout="constrained")
    axes_grid = figure.subplots(count, 3, squeeze=False, width_ratios=[1, 1, 2.6])
    for row, (name, original, network_input, row_probabilities) in enumerate(
        zip(names, originals, network_inputs, probabilities)
    ):
        original_axes, input_axes, bar_axes = axes_grid[row]
        original_axes.imshow(original, cmap="gray", vmin=0, vmax=255)
        original_axes.set_title(name if len(name) <= 24 else "…" + name[-23:], fontsize=8)
        input_axes.imshow(np.asarray(network_input).reshape(28, 28), cmap="gray_r", vmin=0,
                          vmax=max(1.0, float(np.max(network_input))))
        input_axes.set_title("network input", fontsize=8)
        for axes in (original_axes, input_axes):
            axes.set_xticks([])
            axes.set_yticks([])
            for spine in axes.spines.values():
                spine.set_color("0.75")
        values = np.asarray(row_probabilities, dtype=np.float64)
        best = int(np.argmax(values))
        colours = ["#d0d0d0"] * len(values)
        colours[best] = "#2171b5"
        bar_axes.bar(range(len(values)), values, color=colours)
        low, high = min(0.0, float(values.min())), max(1.0, float(values.max()))
        bar_axes.set_ylim(low, high + 0.12 * (high - low))
        bar_axes.set_xticks(range(len(values)))
        if score == "probability":
            bar_axes.set_yticks([0, 0.5, 1])
        bar_axes.tick_params(labelsize=8)
        bar_axes.set_ylabel(score, fontsize=8)
        label = f"{values[best]:.0%}" if score == "probability" else f"{values[best]:.2f}"
        bar_axes.text(best, values[best] + 0.03 * (high - low), label, ha="center",
                      fontsize=8, color="#08306b")
        bar_axes.set_title(f"predicted {best}", fontsize=9, fontweight="bold")
        bar_axes.spines[["top", "right"]].set_visible(False)
        if row == count - 1:
            bar_axes.set_xlabel("digit", fontsize=8)
    figure.suptitle(title, fontsize=11)
    return figure


def require_png(path: str | Path, option: str) -> Path:
    """`path` if it names a PNG, else a one-line error: checked before any work is done, so
    a typo in an output name does not cost a model load (or print results then fail)."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise UsageError(f"{option} {path}: the picture is a PNG; give a file name ending in .png")
    return path


def sweep_figure(trials: Sequence[tuple[int, str, float | None, Any, dict[str, Any]]],
                 scales: dict[str, Any], metric: str, title: str) -> Figure:
    """A sweep at a glance: the metric of each trial over time (with the best so far), then
    the metric against each searched parameter. `trials`: (number, state, value, finish
    time, params); `scales`: each parameter's `True` for a log axis, else its kind
    ('choices' draws its values as categories)."""
    maximize = not metric.endswith("loss")
    shown = [trial for trial in trials if trial[2] is not None]
    columns = min(3, 1 + len(scales))
    rows = -(-(1 + len(scales)) // columns)
    figure = Figure(figsize=(4.6 * columns, 3.6 * rows), layout="constrained")
    axes_grid = np.atleast_1d(figure.subplots(rows, columns)).ravel()
    styles = {"COMPLETE": ("o", "tab:blue", "complete"),
              "PRUNED": ("x", "tab:red", "pruned (at its last epoch)"),
              "RUNNING": (".", "tab:grey", "running")}

    timeline = axes_grid[0]
    times = [trial[3] for trial in shown if trial[3] is not None]
    start = min(times) if times else None
    for state, (marker, colour, label) in styles.items():
        points = [((trial[3] - start).total_seconds() / 60, trial[2]) for trial in shown
                  if trial[1] == state and trial[3] is not None]
        if points:
            xs, ys = zip(*points)
            timeline.scatter(xs, ys, marker=marker, color=colour, label=label, s=28)
    complete = sorted((trial for trial in shown if trial[1] == "COMPLETE" and trial[3]),
                      key=lambda trial: trial[3])
    if complete:
        best: list[float] = []
        for trial in complete:
            value = trial[2]
            best.append(value if not best else (max if maximize else min)(best[-1], value))
        # The line runs on to the last trial: the best stays the best until then.
        xs = [(trial[3] - start).total_seconds() / 60 for trial in complete]
        xs.append(max((when - start).total_seconds() / 60 for when in times))
        timeline.step(xs, [*best, best[-1]], where="post", color="tab:green",
                      label="best so far")
    timeline.set_xlabel("minutes since the first trial")
    timeline.set_ylabel(metric)
    timeline.set_title("Trials over time")
    timeline.grid(alpha=0.3)
    if timeline.get_legend_handles_labels()[0]:
        timeline.legend(fontsize=8)

    # Numbers among the choices are drawn on a number axis (in order), other choices as
    # categories.
    numeric = {key: all(isinstance(trial[4].get(key), (int, float))
                        and not isinstance(trial[4].get(key), bool)
                        for trial in shown if key in trial[4]) for key in scales}
    for axes, (key, scale) in zip(axes_grid[1:], scales.items()):
        for state, (marker, colour, label) in styles.items():
            points = [(trial[4].get(key), trial[2]) for trial in shown
                      if trial[1] == state and key in trial[4]]
            if not points:
                continue
            xs, ys = zip(*points)
            if scale == "choices" and not numeric[key]:
                xs = [str(value) for value in xs]
            axes.scatter(xs, ys, marker=marker, color=colour, label=label, s=28)
        if scale is True or (scale == "choices" and numeric[key] and _spans_decades(
                [trial[4][key] for trial in shown if key in trial[4]])):
            axes.set_xscale("log")
        axes.set_xlabel(key)
        axes.set_ylabel(metric)
        axes.set_title(f"{metric} against {key}")
        axes.grid(alpha=0.3)
    for axes in axes_grid[1 + len(scales):]:
        axes.set_visible(False)
    figure.suptitle(title)
    return figure


def _spans_decades(values: Sequence[float]) -> bool:
    """Whether positive values span enough orders of magnitude to want a log axis."""
    return bool(values) and min(values) > 0 and max(values) / min(values) >= 20
