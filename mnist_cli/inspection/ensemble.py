"""`mnist ensemble`: a committee of trained runs, scored on their common test set.

The committee's output for a digit is the mean of its members' predicted probabilities
(Ciresan et al. 2011 average their MLPs' outputs the same way); it is then measured exactly
as `mnist evaluate` measures one model: accuracy, loss, per-digit table, confusion matrix,
and `errors.png` of the committee's mistakes, with each member's own accuracy beside it.
Averaging only means something on the same digits prepared the same way, so the members
must have the same test set (same labels at the same dataset positions) and give their
networks the same features; otherwise `ensemble` refuses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mnist_cli.atomic_files import save_with, write_json_atomic
from mnist_cli.errors import UsageError
from mnist_cli.inspection.source import ModelSource, load_model, load_split, model_outputs
from mnist_cli.metrics import classification_metrics, loss_from_probabilities, per_class_report

ENSEMBLE_FILE = "ensemble.json"


@dataclass
class Committee:
    """What `evaluate_committee` measured, and the files it wrote."""

    report: dict[str, Any]
    written: list[Path] = field(default_factory=list)


def committee_report(labels: np.ndarray, member_outputs: list[np.ndarray],
                     loss: str = "categorical_crossentropy") -> dict[str, Any]:
    """The committee's numbers from its members' probabilities ((N, 10) each): the mean
    of the probabilities, then what `evaluate` reports, and each member's accuracy."""
    outputs = np.mean(np.stack(member_outputs), axis=0)
    summary = classification_metrics(labels, outputs)
    return {
        "num_samples": summary["num_samples"],
        "loss_function": loss,
        "loss": loss_from_probabilities(loss, labels, outputs),
        "accuracy": summary["accuracy"],
        "num_errors": summary["num_errors"],
        **per_class_report(labels, outputs),
        "confusion_matrix": summary["confusion_matrix"],
        "member_accuracies": [classification_metrics(labels, member)["accuracy"]
                              for member in member_outputs],
        "outputs": outputs,
    }


def _check_members(sources: list[ModelSource], splits: list[Any]) -> None:
    """Softmax outputs, the same test digits, the same features: else a `UsageError`."""
    for source in sources:
        if not source.config.model.outputs_probabilities:
            activation = source.config.model.dense_layers()[-1].activation
            raise UsageError(
                f"{source.name}: its network ends in {activation}, not softmax: a committee "
                "averages probabilities; choose runs whose output is a softmax")
    first, first_split = sources[0], splits[0]
    for source, split in zip(sources[1:], splits[1:]):
        if (len(split.labels) != len(first_split.labels)
                or not np.array_equal(split.index, first_split.index)
                or not np.array_equal(split.labels, first_split.labels)):
            raise UsageError(
                f"{source.name} and {first.name} have different test sets ({len(split.labels)} "
                f"and {len(first_split.labels)} digits; data.split, test_fraction, subset.test "
                "or seed differ): a committee averages predictions on the same digits; choose "
                "runs with the same test set")
        if not np.array_equal(split.features, first_split.features):
            raise UsageError(
                f"{source.name} and {first.name} prepare the test digits differently "
                "(data.scale, binarize, binarize_threshold or flatten differ): a committee's "
                "members must take the same features; choose runs with the same preprocessing")


def evaluate_committee(sources: list[ModelSource],
                       output_folder: str | Path | None = None) -> Committee:
    """Average the members' probabilities on their common test set, measure the committee,
    and write ensemble.json, confusion_matrix.png and errors.png into `output_folder`
    (default: a new ensemble-<timestamp> folder beside the first run, made only once the
    members are accepted)."""
    from mnist_cli import artifacts, plots
    from mnist_cli.runs import create_run_dir

    if len(sources) < 2:
        raise UsageError("a committee needs at least two runs")
    splits = [load_split(source.config, "test") for source in sources]
    _check_members(sources, splits)
    member_outputs = [model_outputs(load_model(source), split.features,
                                    source.model_path, f"the test data of {split.source}")
                      for source, split in zip(sources, splits)]
    import keras  # started by load_model

    test = splits[0]
    loss = sources[0].config.train.loss
    numbers = committee_report(test.labels, member_outputs, loss)
    outputs = numbers.pop("outputs")
    report: dict[str, Any] = {
        "model": f"committee of {len(sources)} runs (mean of their probabilities)",
        "split": "test",
        "data_source": test.source,
        "backend": keras.backend.backend(),
        **numbers,
        "members": [{"run": str(source.model_path.parent), "model": str(source.model_path),
                     "accuracy": accuracy}
                    for source, accuracy in zip(sources, numbers["member_accuracies"])],
    }
    if output_folder is None:
        folder = create_run_dir(sources[0].output_folder.parent, "ensemble")
    else:
        folder = Path(output_folder)
        folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / ENSEMBLE_FILE, report)
    title = (f"committee of {len(sources)}: confusion matrix on the test set\n"
             f"{report['num_errors']} errors in {report['num_samples']} digits, "
             f"accuracy {report['accuracy']:.2%}; diagonal: correct (count, recall)")
    save_with(folder / "confusion_matrix.png",
              plots.confusion_matrix_figure(report["confusion_matrix"], title,
                                            "test digits").savefig)
    artifacts.write_error_grid(folder / "errors.png", test.features, test.labels, outputs,
                               test.index, f"committee of {len(sources)}",
                               index_of=artifacts.index_words(sources[0].config))
    return Committee(report, [folder / ENSEMBLE_FILE, folder / "confusion_matrix.png",
                              folder / "errors.png"])


def format_members(report: dict[str, Any]) -> str:
    """Each member's accuracy beside the committee's."""
    lines = ["", "Members (accuracy alone):"]
    for member in report["members"]:
        lines.append(f"  {member['accuracy']:.4f}  {member['run']}")
    best = max(member["accuracy"] for member in report["members"])
    lines.append(f"  {report['accuracy']:.4f}  the committee ({report['accuracy'] - best:+.4f} "
                 "over its best member)")
    return "\n".join(lines)
