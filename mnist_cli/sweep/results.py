"""What a sweep found: every trial as a row (from the study alone, so a worker on any host
sees the trials of all of them), the best ones as a table, `trials.csv`, `sweep.png`, and
with `--seeds` the mean and standard deviation of every metric.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mnist_cli.atomic_files import save_with, write_json_atomic, write_text_atomic
from mnist_cli.runs import read_history, read_json
from mnist_cli.sweep.folder import SweepFolder, trial_name
from mnist_cli.sweep.schema import SavedSweep

TABLE_COLUMNS = ("trial", "state", "value", "test_accuracy", "train_seconds", "epochs",
                 "started", "finished", "run_dir")


@dataclass
class TrialRow:
    number: int
    state: str  # COMPLETE, PRUNED, RUNNING, FAIL, WAITING
    value: float | None
    params: dict[str, Any]
    test_accuracy: float | None = None
    train_seconds: float | None = None
    epochs: int | None = None
    started: datetime | None = None
    finished: datetime | None = None
    run_dir: str | None = None
    intermediate: dict[int, float] = field(default_factory=dict)


def trial_rows(study: Any) -> list[TrialRow]:
    """Every trial of the study that was really run (not one given up as surplus)."""
    rows = []
    for trial in study.get_trials(deepcopy=False):
        if trial.user_attrs.get("surplus"):
            continue
        value = trial.value
        if value is None and trial.intermediate_values:  # a pruned trial: its last report
            value = trial.intermediate_values[max(trial.intermediate_values)]
        rows.append(TrialRow(
            number=trial.number, state=trial.state.name, value=value, params=dict(trial.params),
            test_accuracy=trial.user_attrs.get("test_accuracy"),
            train_seconds=trial.user_attrs.get("train_seconds"),
            epochs=trial.user_attrs.get("epochs"),
            started=trial.datetime_start, finished=trial.datetime_complete,
            run_dir=trial.user_attrs.get("run_dir"),
            intermediate=dict(trial.intermediate_values),
        ))
    return rows


def best_rows(rows: list[TrialRow], sweep: SavedSweep, limit: int | None = None
              ) -> list[TrialRow]:
    complete = [row for row in rows if row.state == "COMPLETE" and row.value is not None]
    complete.sort(key=lambda row: (row.value if sweep.direction == "minimize" else -row.value,
                                   row.number))
    return complete[:limit] if limit else complete


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_best_table(rows: list[TrialRow], sweep: SavedSweep, limit: int = 10) -> str:
    """The best complete trials, best first: parameters, the metric, test accuracy, time."""
    best = best_rows(rows, sweep, limit)
    keys = list(sweep.space)
    header = ["trial", *keys, sweep.metric, "test acc", "train time"]
    lines = [header] + [
        [trial_name(row.number), *(_cell(row.params.get(key)) for key in keys),
         f"{row.value:.4f}", "-" if row.test_accuracy is None else f"{row.test_accuracy:.4f}",
         "-" if row.train_seconds is None else f"{row.train_seconds:.1f} s"]
        for row in best
    ]
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    text = ["  ".join(cell.rjust(width) if column else cell.ljust(width)
                      for column, (cell, width) in enumerate(zip(line, widths))).rstrip()
            for line in lines]
    text.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(text)


def count_states(rows: list[TrialRow]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.state] = counts.get(row.state, 0) + 1
    return counts


def trials_csv_text(rows: list[TrialRow], sweep: SavedSweep) -> str:
    """Every trial, one row each: the columns of `TABLE_COLUMNS` and one per parameter."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    keys = list(sweep.space)
    writer.writerow([*TABLE_COLUMNS[:3], *keys, *TABLE_COLUMNS[3:]])
    for row in rows:
        writer.writerow([
            row.number, row.state, "" if row.value is None else repr(row.value),
            *("" if row.params.get(key) is None else row.params[key] for key in keys),
            "" if row.test_accuracy is None else repr(row.test_accuracy),
            "" if row.train_seconds is None else row.train_seconds,
            "" if row.epochs is None else row.epochs,
            row.started.isoformat(timespec="seconds") if row.started else "",
            row.finished.isoformat(timespec="seconds") if row.finished else "",
            row.run_dir or "",
        ])
    return buffer.getvalue()


def write_results(folder: SweepFolder, sweep: SavedSweep, rows: list[TrialRow]) -> None:
    """trials.csv and sweep.png, each written atomically."""
    from mnist_cli import plots

    write_text_atomic(folder.table, trials_csv_text(rows, sweep))
    if any(row.value is not None for row in rows):
        figure = plots.sweep_figure(
            [(row.number, row.state, row.value, row.finished or row.started, row.params)
             for row in rows],
            {key: parameter.log or parameter.kind for key, parameter in sweep.space.items()},
            sweep.metric, f"{sweep.name}: {sweep.metric} of {len(rows)} trials")
        save_with(folder.figure, figure.savefig)


# --------------------------------------------------------------------------------------------
# --seeds: one config, several seeds


def seed_statistics(folder: SweepFolder, rows: list[TrialRow]) -> dict[str, dict[str, float]]:
    """Mean, standard deviation (n - 1), minimum and maximum over the complete trials of
    every number in their metrics.json and of the last epoch's validation metrics."""
    samples: dict[str, list[float]] = {}
    for row in rows:
        if row.state != "COMPLETE":
            continue
        run = folder.trial_run(row.number)
        if run is None or not run.finished:
            continue
        metrics = read_json(run.metrics)
        history = read_history(run.history)
        values = {key: history[-1].get(key) for key in ("val_loss", "val_accuracy")} \
            if history else {}
        values.update(metrics)
        for key, value in values.items():
            if key == "seed" or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if math.isfinite(value):
                samples.setdefault(key, []).append(float(value))
    summary = {}
    for key, values in samples.items():
        summary[key] = {
            "mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values), "count": len(values),
        }
    return summary


SEED_REPORT_KEYS = ("val_accuracy", "val_loss", "test_accuracy", "test_loss", "num_errors",
                    "train_seconds", "epochs_completed")


def format_seed_statistics(summary: dict[str, dict[str, float]]) -> str:
    """The metrics a comparison needs first, then every other number, as mean ± std; the
    numbers that are the same in every run (the data sizes) on one last line."""
    keys = [key for key in SEED_REPORT_KEYS if key in summary]
    keys += sorted(key for key in summary if key not in keys)
    varying = [key for key in keys if summary[key]["min"] != summary[key]["max"]]
    constant = [key for key in keys if key not in varying]
    width = max((len(key) for key in varying), default=0)
    lines = []
    for key in varying:
        entry = summary[key]
        lines.append(f"{key.ljust(width)}  {_number(entry['mean'])} ± {_number(entry['std'])}  "
                     f"(min {_number(entry['min'])}, max {_number(entry['max'])}, "
                     f"n={int(entry['count'])})")
    if constant:
        lines.append("the same in every run: " + ", ".join(
            f"{key} {_number(summary[key]['mean'])}" for key in constant))
    return "\n".join(lines)


def _number(value: float) -> str:
    """Four decimals for accuracies and losses, one for counts, seconds and memory."""
    return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"


def write_seed_statistics(folder: SweepFolder, summary: dict[str, dict[str, float]]) -> None:
    write_json_atomic(folder.seeds_summary, summary)
