"""`mnist evaluate`: loss, accuracy, per-digit precision/recall/F1 and the confusion
matrix of a saved model on one split of its run's data, checked against `metrics.json`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mnist_cli.atomic_files import save_with, write_json_atomic, write_text_atomic
from mnist_cli.errors import RunDirError
from mnist_cli.inspection.misclassified import predictions_csv_text
from mnist_cli.inspection.source import (
    ModelSource,
    Progress,
    load_model,
    load_split,
    model_outputs,
)
from mnist_cli.metrics import classification_metrics, loss_from_probabilities, per_class_report
from mnist_cli.runs import read_json

# Two evaluations of one model agree when accuracy and errors are identical and the loss
# differs only by float32 rounding (a model evaluated on another backend than it was
# trained on sums in another order).
LOSS_TOLERANCE = 1e-5


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
                   predictions_path: str | Path | None = None,
                   on_progress: Progress | None = None) -> Evaluation:
    """Recompute the loss, accuracy, per-class precision/recall/F1 and confusion matrix of
    a saved model, and write `evaluation.json` and `confusion_matrix.png` (atomically).

    On the run's own test set the numbers are compared with the `metrics.json` the training
    wrote; the report says whether they agree, so a model file that was replaced or
    damaged after training shows up. `predictions_path` also saves every sample's
    prediction as CSV (index, true, predicted, probability, true_probability, top_3).
    """
    model = load_model(source)
    import keras  # started by load_model on the run's backend

    data = load_split(source.config, split, data_path)
    outputs = model_outputs(model, data.features, source.model_path,
                            f"the {split} data of {data.source}", on_progress)
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
              plots.confusion_matrix_figure(report["confusion_matrix"], title,
                                            split_words.replace("set", "digits")).savefig)
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
    if source.model_path != source.run.model or not source.run.finished:
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
