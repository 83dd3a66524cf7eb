"""The run directory's layout: its file names, creating and opening one, and reading and
writing its small text files (history.csv, JSON). Every write goes through `atomic_files`.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from mnist_cli.errors import RunDirError

CONFIG_FILE = "config.yaml"
MODEL_FILE = "model.keras"
HISTORY_FILE = "history.csv"
METRICS_FILE = "metrics.json"
CURVES_FILE = "learning_curves.png"
ERRORS_FILE = "errors.png"
AUGMENTATIONS_FILE = "augmentations.png"
CHECKPOINT_FILE = "checkpoint.npz"
SNAPSHOTS_FOLDER = "snapshots"
PROGRESS_FILE = "progress.json"

DEFAULT_OUTPUT_ROOT = "outputs"

HISTORY_COLUMNS = (
    "epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "seconds"
)


# A run folder is named <name>-<started> (-2, -3 ... when two start in the same second).
TIMESTAMP_FORMAT = "%Y%m%d-%H%M%S"
_TIMESTAMP = re.compile(r"-(\d{8}-\d{6})(?:-\d+)?$")
_SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}")

LATEST = "latest"
"""The name that stands for the newest run under an output root, in every command."""


def create_run_dir(output_root: str | Path, name: str) -> Path:
    """Make a new, empty `<output_root>/<name>-<timestamp>` folder; never reuse one.

    `os.mkdir` fails if the folder exists, so two runs started in the same second (or two
    processes racing) get distinct folders (`-2`, `-3`, ...) and nothing is overwritten.
    """
    root = Path(output_root)
    if not _SAFE_NAME.fullmatch(name):
        # The config checks this too; this guard keeps library callers inside the root.
        raise RunDirError(
            f"run name {name!r} must be a plain folder name: letters, digits, '.', '_' and "
            "'-', not starting with '.'"
        )
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RunDirError(
            f"cannot create the output folder {root} ({error.strerror}): choose another with --out"
        ) from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise RunDirError(f"the output folder {root} is not writable: choose another with --out")
    base = f"{name}-{datetime.now().strftime(TIMESTAMP_FORMAT)}"
    for attempt in range(1, 1000):
        candidate = root / (base if attempt == 1 else f"{base}-{attempt}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        except OSError as error:
            raise RunDirError(
                f"cannot create the run folder {candidate} ({error.strerror}): "
                f"choose another output folder with --out"
            ) from None
        return candidate
    raise RunDirError(f"too many runs named {base} in {root}")


@dataclass(frozen=True)
class RunDir:
    """One run directory: its files' paths, and the rules every command reads it by: what
    makes a folder a run (`config.yaml`, written first), when it started, and when it is
    finished (`metrics.json`, written last)."""

    path: Path

    @property
    def config(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def model(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def history(self) -> Path:
        return self.path / HISTORY_FILE

    @property
    def metrics(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def curves(self) -> Path:
        return self.path / CURVES_FILE

    @property
    def errors(self) -> Path:
        return self.path / ERRORS_FILE

    @property
    def augmentations(self) -> Path:
        return self.path / AUGMENTATIONS_FILE

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT_FILE

    @property
    def progress(self) -> Path:
        """How far the epoch under way is (`mnist serve` follows it)."""
        return self.path / PROGRESS_FILE

    @property
    def snapshots(self) -> Path:
        return self.path / SNAPSHOTS_FOLDER

    def snapshot(self, epoch: int) -> Path:
        """Epoch `epoch`'s (1-based) weights, kept with train.snapshots."""
        return self.snapshots / f"epoch-{epoch:04d}.npz"

    def snapshot_epochs(self) -> list[int]:
        """The epochs whose snapshot is on disk, in order."""
        if not self.snapshots.is_dir():
            return []
        return sorted(int(path.stem[6:]) for path in self.snapshots.glob("epoch-*.npz")
                      if path.stem[6:].isdigit())

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def is_run(self) -> bool:
        return self.config.is_file()

    @property
    def finished(self) -> bool:
        """Training wrote everything: metrics.json is the last file it writes."""
        return self.metrics.is_file()

    @property
    def started(self) -> datetime:
        """When the run started: the timestamp in its folder name (it survives a copy), else
        when config.yaml, the first file training writes, was last modified."""
        match = _TIMESTAMP.search(self.path.name)
        if match:
            with contextlib.suppress(ValueError):
                return datetime.strptime(match.group(1), TIMESTAMP_FORMAT)
        return datetime.fromtimestamp(self.config.stat().st_mtime)

    def start_order(self) -> tuple[datetime, int, str]:
        """Sorts runs oldest first: by start time, and within one second by when config.yaml
        was written (a copy keeps its name's order)."""
        try:
            written = self.config.stat().st_mtime_ns
        except OSError:
            written = 0
        return self.started, written, self.path.name


def open_run_dir(path: str | Path) -> RunDir:
    """Check that `path` is a run directory (a folder with a config.yaml) and return it."""
    folder = Path(path)
    if not folder.exists():
        raise RunDirError(f"{folder}: no such run directory (see `mnist runs` for the runs found)")
    if not folder.is_dir():
        raise RunDirError(f"{folder}: is a file, not a run directory made by `mnist train`")
    run = RunDir(folder)
    if not run.is_run:
        raise RunDirError(
            f"{folder}: not a run directory (no {CONFIG_FILE}); pass a folder made by `mnist train`"
        )
    return run


def runs_under(output_root: str | Path) -> list[RunDir]:
    """The run directories directly inside `output_root`, oldest first."""
    root = Path(output_root)
    if not root.is_dir():
        return []
    runs = [RunDir(child) for child in root.iterdir()
            if child.is_dir() and not child.name.startswith(".")]
    return sorted((run for run in runs if run.is_run), key=RunDir.start_order)


def newest_run(output_root: str | Path, *, finished_only: bool) -> RunDir:
    """The newest run under `output_root` (what `latest` names), or a `RunDirError` that
    says how to get one. `finished_only`: for commands that read a trained model."""
    root = Path(output_root)
    if not root.is_dir():
        raise RunDirError(f"latest: there is no {root} folder here yet; train a run first "
                          "(mnist train -c configs/quickstart.yaml)")
    runs = runs_under(root)
    chosen = [run for run in runs if run.finished] if finished_only else runs
    if chosen:
        return chosen[-1]
    if runs:
        raise RunDirError(f"latest: no run under {root} has finished yet (the newest, "
                          f"{runs[-1].path}, has no {METRICS_FILE}); finish it with "
                          f"`mnist train --resume latest`, or name a run directory")
    raise RunDirError(f"latest: no run in {root} yet; train one first "
                      "(mnist train -c configs/quickstart.yaml)")


def resolve_run(text: str | Path, output_root: str | Path = DEFAULT_OUTPUT_ROOT, *,
                finished_only: bool = True) -> Path:
    """`text` as a path, or, for `latest` (where no such folder exists), the newest run under
    `output_root`."""
    if str(text) != LATEST or Path(text).exists():
        return Path(text)
    return newest_run(output_root, finished_only=finished_only).path


def read_json(path: str | Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunDirError(f"{path}: missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RunDirError(f"{path}: unreadable ({error})") from None


def history_csv_text(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_COLUMNS, extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _csv_value(row.get(key)) for key in HISTORY_COLUMNS})
    return buffer.getvalue()


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return value


def read_history(path: str | Path) -> list[dict[str, float | int | None]]:
    """history.csv as a list of rows; empty cells (no validation set) become None."""
    rows = []
    with open(path, newline="", encoding="utf-8") as handle:
        try:
            raws = list(csv.DictReader(handle))
        except csv.Error as error:  # not a ValueError: say it as one, as for a bad number
            raise RunDirError(f"{path} is not a readable CSV file ({error})") from None
        for raw in raws:
            row: dict[str, float | int | None] = {}
            for key, value in raw.items():
                if key is None:
                    continue
                if value in ("", None):
                    row[key] = None
                elif key == "epoch":
                    row[key] = int(value)
                else:
                    row[key] = float(value)
            rows.append(row)
    return rows


def best_epoch(rows: list[dict[str, Any]]) -> int | None:
    """The epoch (1-based) with the highest validation accuracy, else training accuracy;
    None for an empty history. (Early stopping's own best epoch is in metrics.json.)"""
    for key in ("val_accuracy", "accuracy"):
        scored = [(row[key], -int(row["epoch"])) for row in rows if row.get(key) is not None]
        if scored:
            return -max(scored)[1]
    return None


def rate_steps(rows: list[dict[str, Any]]) -> list[tuple[int, float]] | None:
    """The epochs whose learning rate differs from the one before, with the new rate; None
    where the history has no learning rate."""
    known = [(int(row["epoch"]), row["learning_rate"]) for row in rows
             if row.get("learning_rate") is not None]
    if len(known) < 2:
        return None
    return [(epoch, rate) for (_, before), (epoch, rate) in zip(known, known[1:])
            if not math.isclose(rate, before, rel_tol=1e-6)]
