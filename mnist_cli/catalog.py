"""The runs found under an output root (`mnist runs`) and their curves side by side
(`mnist compare`).

Only the small text files of a run are read (config.yaml, metrics.json, history.csv), never
the model, so listing a hundred runs takes no Keras and no time. A folder that is not a
complete run (training still going, interrupted, a stray folder, a damaged file) is listed
with what is wrong with it or counted as skipped: a listing never fails because of one bad
folder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from mnist_cli.atomic_files import save_with
from mnist_cli.choices import RUN_SORT_KEYS
from mnist_cli.config import Config, load_config
from mnist_cli.errors import MnistCliError, RunDirError
from mnist_cli.runs import (
    CONFIG_FILE,
    METRICS_FILE,
    MODEL_FILE,
    RunDir,
    open_run_dir,
    read_history,
    read_json,
)


@dataclass
class RunSummary:
    """One row of `mnist runs`: what a run is and how it did."""

    path: Path
    started: datetime
    status: str  # "complete", or what is missing or wrong
    layers: str = "?"
    optimizer: str = "?"
    loss: str = "?"
    epochs: str = "?"
    test_set: str = "?"  # which digits test_accuracy counts: "official 10000", "pooled 17500"
    test_accuracy: float | None = None
    train_seconds: float | None = None
    order: tuple = ()  # RunDir.start_order: oldest first

    @property
    def complete(self) -> bool:
        return self.status == "complete"

    def to_dict(self) -> dict[str, Any]:
        return {
            "run": str(self.path),
            "started": self.started.isoformat(timespec="seconds"),
            "status": self.status,
            "layers": self.layers,
            "optimizer": self.optimizer,
            "loss": self.loss,
            "epochs": self.epochs,
            "test_set": self.test_set,
            "test_accuracy": self.test_accuracy,
            "train_seconds": self.train_seconds,
        }


def _describe_optimizer(config: Config) -> str:
    return f"{config.train.optimizer} {config.train.learning_rate:g}"


def summarise_run(path: str | Path) -> RunSummary:
    """Read what a run directory says about itself; problems become the `status`."""
    run = open_run_dir(path)
    summary = RunSummary(path=run.path, started=run.started, status="complete",
                         order=run.start_order())
    try:
        config = load_config(run.config)
    except MnistCliError as error:
        summary.status = f"unreadable {CONFIG_FILE} ({error})"
        return summary
    summary.layers = "-".join(str(size) for size in config.model.stack())
    summary.optimizer = _describe_optimizer(config)
    summary.loss = config.train.loss
    summary.epochs = str(config.train.epochs)
    summary.test_set = config.data.split
    metrics: Any = None
    if run.finished:
        try:
            metrics = read_json(run.metrics)
        except RunDirError:
            summary.status = f"unreadable {METRICS_FILE}"
    if isinstance(metrics, dict):
        accuracy = metrics.get("test_accuracy")
        seconds = metrics.get("train_seconds")
        completed = metrics.get("epochs_completed")
        tested = metrics.get("num_test")
        if isinstance(tested, int):
            summary.test_set = f"{config.data.split} {tested}"
        summary.test_accuracy = float(accuracy) if isinstance(accuracy, (int, float)) else None
        summary.train_seconds = float(seconds) if isinstance(seconds, (int, float)) else None
        if isinstance(completed, int) and completed != config.train.epochs:
            summary.epochs = f"{completed}/{config.train.epochs}"
        if not run.model.is_file():
            summary.status = f"no {MODEL_FILE}"
        return summary
    if summary.complete:
        summary.status = _incomplete_status(run, config)
    return summary


def _incomplete_status(run: RunDir, config: Config) -> str:
    """How far a run without metrics.json got: training now, or stopped before the end."""
    epochs_done = 0
    if run.history.is_file():
        try:
            epochs_done = len(read_history(run.history))
        except (OSError, ValueError):
            epochs_done = 0
    return f"incomplete: {epochs_done}/{config.train.epochs} epochs, no {METRICS_FILE}"


def find_runs(output_root: str | Path) -> tuple[list[RunSummary], list[Path]]:
    """The run directories directly inside `output_root` (or `output_root` itself when it is
    one), and the folders skipped because they are not runs (no config.yaml)."""
    root = Path(output_root)
    if not root.exists():
        raise RunDirError(f"{root}: no such folder; train a run first (`mnist train`) or "
                          "pass the output root it used (`mnist runs DIR`)")
    if not root.is_dir():
        raise RunDirError(f"{root}: is a file; pass the folder that holds the runs")
    if RunDir(root).is_run:
        return [summarise_run(root)], []
    runs: list[RunSummary] = []
    skipped: list[Path] = []
    for child in sorted(root.iterdir()):
        if not child.is_dir() or child.name.startswith("."):
            continue
        if not RunDir(child).is_run:
            skipped.append(child)
            continue
        try:
            runs.append(summarise_run(child))
        except (MnistCliError, OSError):
            skipped.append(child)
    return runs, skipped


def sort_runs(runs: list[RunSummary], key: str = "date") -> list[RunSummary]:
    """Oldest first by date (the newest ends next to the prompt), or best test accuracy
    first; runs without an accuracy go last either way. Accuracies on different test sets
    (official, pooled) are not ranked against each other: by accuracy, the runs of one
    test set come together, the test set with the best run first."""
    if key == "date":
        return sorted(runs, key=lambda run: run.order)
    if key == "accuracy":
        best: dict[str, float] = {}
        for run in runs:
            if run.test_accuracy is not None:
                best[run.test_set] = max(best.get(run.test_set, 0.0), run.test_accuracy)
        return sorted(runs, key=lambda run: (
            run.test_accuracy is None, -best.get(run.test_set, 0.0), run.test_set,
            -(run.test_accuracy or 0.0), run.path.name))
    raise RunDirError(f"sort must be one of {', '.join(RUN_SORT_KEYS)} (got {key!r})")


def test_sets_note(runs: list[RunSummary]) -> str | None:
    """A line for a listing whose accuracies come from different test sets, else None."""
    sets = sorted({run.test_set for run in runs if run.test_accuracy is not None})
    if len(sets) < 2:
        return None
    return (f"(test accuracies on different test sets, not comparable: {', '.join(sets)}; "
            "ranked within each test set)")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, remainder = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {remainder:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def format_runs_table(runs: list[RunSummary]) -> str:
    """A plain-text table, columns sized to their contents."""
    header = ("run", "started", "layers", "optimizer", "epochs", "test set", "test acc",
              "train time", "status")
    with_status = any(not run.complete for run in runs)
    rows = [header] + [
        (
            run.path.name,
            run.started.strftime("%Y-%m-%d %H:%M"),
            run.layers,
            run.optimizer,
            run.epochs,
            run.test_set,
            "-" if run.test_accuracy is None else f"{run.test_accuracy:.2%}",
            _duration(run.train_seconds),
            "" if run.complete else run.status,
        )
        for run in runs
    ]
    if not with_status:
        rows = [row[:-1] for row in rows]
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    right_aligned = {4, 6, 7}
    lines = []
    for row in rows:
        cells = [cell.rjust(width) if column in right_aligned else cell.ljust(width)
                 for column, (cell, width) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
    lines.insert(1, "  ".join("-" * width for width in widths).rstrip())
    return "\n".join(lines)


def compare_runs(paths: list[str | Path], out: str | Path,
                 on_progress: Callable[[int, int], None] | None = None
                 ) -> tuple[list[RunSummary], list[Path]]:
    """Draw the learning curves of several runs into one PNG (atomically); return their
    summaries, in the order given, and the paths skipped.

    As `mnist runs` does, a folder without config.yaml is skipped (`outputs/*` may hold
    other things), and so is a run that has not recorded an epoch yet; with no run left to
    draw, it is an error. `on_progress(done, total)` hears of each run read.
    """
    from mnist_cli import plots

    out = plots.require_png(out, "--out")
    histories = []
    summaries = []
    skipped = []
    for number, path in enumerate(paths, start=1):
        if on_progress is not None:
            on_progress(number, len(paths))
        run = RunDir(Path(path))
        if not run.is_run or not run.history.is_file():
            skipped.append(run.path)
            continue
        summary = summarise_run(path)
        try:
            history = read_history(run.history)
        except (OSError, ValueError, KeyError) as error:
            raise RunDirError(f"{run.history}: unreadable ({error})") from None
        if not history:
            skipped.append(run.path)
            continue
        accuracy = ("" if summary.test_accuracy is None
                    else f", test {summary.test_accuracy:.2%}")
        # Runs trained with different losses (cross-entropy, quadratic) have incomparable
        # loss curves: the label says which loss each one is.
        histories.append(
            (f"{run.path.name} ({summary.layers}, {summary.loss}{accuracy})", history))
        summaries.append(summary)
    if not histories:
        raise RunDirError(
            f"no run with a recorded epoch among {', '.join(str(path) for path in paths[:3])}"
            f"{', ...' if len(paths) > 3 else ''}: give run directories (outputs/<name>-<time>)"
        )
    title = f"Learning curves of {len(histories)} run{'s' if len(histories) != 1 else ''}"
    out.parent.mkdir(parents=True, exist_ok=True)
    save_with(out, plots.comparison_figure(histories, title).savefig)
    return summaries, skipped
