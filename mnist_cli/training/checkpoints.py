"""Checkpoints: what a run needs to continue exactly where it stopped.

After every completed epoch the run directory receives `checkpoint.npz`, written to a
temporary file and renamed into place (`runs.atomic_path`), so a kill at any instant leaves
either the previous epoch's checkpoint or the new one, never a torn file. (Keras's own
`BackupAndRestore` writes in place, and restarts an interrupted epoch from its first batch.)

A checkpoint holds:

- every variable of the model (`model.variables`: weights, and the state of the random seed
  generators of Dropout layers, so the dropout masks continue the same sequence);
- every variable of the optimizer (step counter, Adam's moments, momentum buffers);
- the state of each per-epoch object, which it gives (`state()`) and takes back
  (`load_state()`): the history rows, early stopping's best value, best weights and
  patience used, the learning-rate schedule's (reduce-on-plateau's rate and counters), and
  the time already spent in a partial epoch;
- how many epochs are complete, and, after a Ctrl-C in the middle of an epoch with the `fit`
  engine on JAX, how many batches of the next one, with that epoch's metric accumulators;
- the seconds spent training so far, and a fingerprint of the training data, so a resume
  against a different copy of the data is refused instead of silently mixing two datasets.

The remaining randomness, the order in which samples are visited, is not state at all:
epoch `e` shuffles with a generator seeded from `(seed, e)` (`engines.contract`), so any
process that starts at epoch `e` visits the same batches as one that got there without
stopping. Every engine keeps the Keras variables current at every epoch end (the engine
contract), so the same checkpoint serves every engine. Reading a checkpoint needs only
NumPy; this module never imports Keras.
"""

from __future__ import annotations

import hashlib
import json
import time
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mnist_cli.atomic_files import json_text, save_with
from mnist_cli.config import Config, load_config
from mnist_cli.errors import RunDirError, describe_error
from mnist_cli.runs import RunDir, open_run_dir
from mnist_cli.training.early_stopping import EarlyStopping
from mnist_cli.training.history import History
from mnist_cli.training.progress import Progress
from mnist_cli.training.schedules import LearningRateSchedule

CHECKPOINT_FORMAT = 1


def data_fingerprint(features: np.ndarray, labels: np.ndarray) -> str:
    """A short digest of the training data (after subset, split and preprocessing)."""
    digest = hashlib.sha256()
    for array in (features, labels):
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()[:16]


@dataclass
class Checkpoint:
    """The state of a run after `epochs_done` epochs (and `batches_done` batches of the next)."""

    epochs_done: int
    history: list[dict[str, Any]]
    model_variables: list[np.ndarray]
    optimizer_variables: list[np.ndarray]
    seed: int
    data_fingerprint: str
    train_seconds: float = 0.0
    batches_done: int = 0
    metric_variables: list[np.ndarray] = field(default_factory=list)
    partial_epoch_seconds: float = 0.0
    early_stopping: dict[str, Any] = field(default_factory=dict)
    best_weights: list[np.ndarray] | None = None
    schedule: dict[str, Any] = field(default_factory=dict)

    def training_done(self, config: Config) -> bool:
        """True when no epoch is left to train: all of them ran, or early stopping ended it."""
        return (self.batches_done == 0 and self.epochs_done >= config.train.epochs) or bool(
            self.early_stopping.get("stopped_early")
        )

    def describe(self) -> str:
        where = f"epoch {self.epochs_done}"
        if self.batches_done:
            where += f" and {self.batches_done} batches of epoch {self.epochs_done + 1}"
        return where


def _arrays(prefix: str, values: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    return {f"{prefix}_{index:04d}": np.asarray(value) for index, value in enumerate(values)}


def write_checkpoint(path: str | Path, checkpoint: Checkpoint) -> None:
    """Save atomically: a temporary file beside `path`, flushed, then renamed onto it."""
    meta = {
        "format": CHECKPOINT_FORMAT,
        "epochs_done": checkpoint.epochs_done,
        "batches_done": checkpoint.batches_done,
        "history": checkpoint.history,
        "seed": checkpoint.seed,
        "data_fingerprint": checkpoint.data_fingerprint,
        "train_seconds": checkpoint.train_seconds,
        "partial_epoch_seconds": checkpoint.partial_epoch_seconds,
        "early_stopping": checkpoint.early_stopping,
        "schedule": checkpoint.schedule,
        "has_best_weights": checkpoint.best_weights is not None,
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    arrays = {"meta": np.array(json_text(meta))}
    arrays.update(_arrays("model", checkpoint.model_variables))
    arrays.update(_arrays("optimizer", checkpoint.optimizer_variables))
    arrays.update(_arrays("metrics", checkpoint.metric_variables))
    arrays.update(_arrays("best", checkpoint.best_weights or []))

    def write(temporary: Path) -> None:
        with open(temporary, "wb") as handle:  # a handle: np.savez would append ".npz"
            np.savez(handle, **arrays)

    save_with(path, write)


def _group(arrays: dict[str, np.ndarray], prefix: str) -> list[np.ndarray]:
    names = sorted(name for name in arrays if name.startswith(prefix + "_"))
    return [arrays[name] for name in names]


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Load a checkpoint, or raise `RunDirError` saying what is wrong and what to do."""
    path = Path(path)
    damaged = (
        f"{path}: the checkpoint is unreadable or not one made by mnist-cli; delete it to "
        "restart this run from its first epoch with --resume"
    )
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
        meta = json.loads(str(arrays.pop("meta")))
        if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
            raise RunDirError(f"{damaged} (unknown checkpoint format)")
        checkpoint = Checkpoint(
            epochs_done=int(meta["epochs_done"]),
            batches_done=int(meta["batches_done"]),
            history=list(meta["history"]),
            seed=int(meta["seed"]),
            data_fingerprint=str(meta["data_fingerprint"]),
            train_seconds=float(meta["train_seconds"]),
            partial_epoch_seconds=float(meta["partial_epoch_seconds"]),
            early_stopping=dict(meta["early_stopping"]),
            schedule=dict(meta.get("schedule", {})),
            model_variables=_group(arrays, "model"),
            optimizer_variables=_group(arrays, "optimizer"),
            metric_variables=_group(arrays, "metrics"),
            best_weights=_group(arrays, "best") if meta["has_best_weights"] else None,
        )
    except FileNotFoundError:
        raise RunDirError(f"{path}: no checkpoint") from None
    except RunDirError:
        raise
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile,
            zlib.error) as error:
        raise RunDirError(f"{damaged} ({describe_error(error, 150)})") from None
    if checkpoint.epochs_done < 0 or checkpoint.batches_done < 0 or len(
        checkpoint.history
    ) != checkpoint.epochs_done:
        raise RunDirError(f"{damaged} (its epoch count and history disagree)")
    return checkpoint


def _values(variables: Sequence[Any]) -> list[np.ndarray]:
    return [np.array(variable.numpy()) for variable in variables]


def _assign(variables: Sequence[Any], values: Sequence[np.ndarray], what: str,
            where: Path) -> None:
    """Load `values` into Keras variables, refusing a checkpoint of another architecture."""
    if len(variables) != len(values):
        raise RunDirError(
            f"{where}: the checkpoint holds {len(values)} {what} variables but the model of "
            f"config.yaml has {len(variables)}; was config.yaml edited after the run started?"
        )
    for variable, value in zip(variables, values):
        if tuple(variable.shape) != tuple(value.shape):
            raise RunDirError(
                f"{where}: {what} variable {variable.path} has shape {tuple(variable.shape)} "
                f"in the model but {tuple(value.shape)} in the checkpoint; was config.yaml "
                "edited after the run started?"
            )
    for variable, value in zip(variables, values):
        variable.assign(value)


class Checkpointer:
    """Saves a run's state after every completed epoch, and on Ctrl-C within one, asking the
    history, early stopping and progress for theirs; `restore` gives it back to them and
    to a freshly built model and its optimizer before training continues."""

    def __init__(self, run: RunDir, model: Any, history: History,
                 early_stopping: EarlyStopping, progress: Progress, *, seed: int,
                 fingerprint: str, schedule: LearningRateSchedule | None = None) -> None:
        self.path = run.checkpoint
        self.model = model
        self.history = history
        self.early_stopping = early_stopping
        self.progress = progress
        self.schedule = schedule
        self.seed = seed
        self.fingerprint = fingerprint
        self.seconds_before = 0.0
        self.session_started: float | None = None
        # (epochs done, batches of the next epoch done) of the checkpoint on disk, if any.
        self.last_saved: tuple[int, int] | None = None

    def start_clock(self) -> None:
        """Training (not data loading or start-up) begins now in this process."""
        self.session_started = time.perf_counter()

    def train_seconds(self) -> float:
        """Seconds spent training by this run, over every process that worked on it."""
        running = 0.0 if self.session_started is None else (
            time.perf_counter() - self.session_started)
        return self.seconds_before + running

    def capture(self, epochs_done: int, batches_done: int = 0) -> Checkpoint:
        early_stopping, best_weights = self.early_stopping.state()
        return Checkpoint(
            epochs_done=epochs_done,
            batches_done=batches_done,
            history=self.history.state(),
            model_variables=_values(self.model.variables),
            optimizer_variables=_values(self.model.optimizer.variables),
            metric_variables=_values(self.model.metrics_variables) if batches_done else [],
            seed=self.seed,
            data_fingerprint=self.fingerprint,
            train_seconds=round(self.train_seconds(), 4),
            partial_epoch_seconds=round(self.progress.state(), 4) if batches_done else 0.0,
            early_stopping=early_stopping,
            best_weights=best_weights,
            schedule=self.schedule.state() if self.schedule is not None else {},
        )

    def save_epoch(self, epoch: int) -> None:
        """After epoch `epoch` (0-based) completed: the per-epoch checkpoint."""
        write_checkpoint(self.path, self.capture(epochs_done=epoch + 1))
        self.last_saved = (epoch + 1, 0)

    def save_partial(self, epoch: int, batches_done: int) -> None:
        """After `batches_done` batches of epoch `epoch` (0-based), on Ctrl-C. The engine
        has made the Keras variables current."""
        write_checkpoint(self.path, self.capture(epoch, batches_done))
        self.last_saved = (epoch, batches_done)

    def restore(self, checkpoint: Checkpoint) -> None:
        """Load `checkpoint` into the model, its optimizer and the per-epoch objects."""
        if checkpoint.data_fingerprint != self.fingerprint:
            raise RunDirError(
                f"{self.path}: the training data differs from the data this run started with "
                "(another file, or MNIST_DATA / data.path now points elsewhere); point them at "
                "the copy the run used, or start a new run"
            )
        _assign(self.model.variables, checkpoint.model_variables, "model", self.path)
        optimizer = self.model.optimizer
        if not optimizer.built:
            optimizer.build(self.model.trainable_variables)
        _assign(optimizer.variables, checkpoint.optimizer_variables, "optimizer", self.path)
        self.history.load_state(checkpoint.history)
        self.early_stopping.load_state(checkpoint.early_stopping, checkpoint.best_weights)
        self.progress.load_state(checkpoint.partial_epoch_seconds)
        if self.schedule is not None:
            self.schedule.load_state(checkpoint.schedule)
        self.seconds_before = checkpoint.train_seconds
        self.last_saved = (checkpoint.epochs_done, checkpoint.batches_done)

    def restore_metrics(self, checkpoint: Checkpoint) -> None:
        """Put back the metric accumulators of a partly trained epoch (call after the
        engine reset them at the epoch's start)."""
        _assign(self.model.metrics_variables, checkpoint.metric_variables, "metric", self.path)

    def remove(self) -> None:
        """The run finished: its outputs are written, the checkpoint is no longer needed."""
        self.path.unlink(missing_ok=True)


@dataclass
class ResumePoint:
    """A run directory to continue: its own config, and its checkpoint (None when the run
    stopped before its first epoch ended: it then starts over in the same folder)."""

    run: RunDir
    config: Config
    checkpoint: Checkpoint | None


def find_resume_point(path: str | Path) -> ResumePoint:
    """Check that `path` is an unfinished run and read what continuing it needs.

    Imports no Keras: `--resume` of a wrong folder fails at once.
    """
    run = open_run_dir(path)
    if run.metrics.exists():
        raise RunDirError(
            f"{run.path}: this run already finished (it has {run.metrics.name}); nothing to "
            f"resume. To train the same config again: mnist train -c {run.config}"
        )
    config = load_config(run.config)
    checkpoint_path = run.checkpoint
    checkpoint = read_checkpoint(checkpoint_path) if checkpoint_path.exists() else None
    if checkpoint is not None:
        if checkpoint.seed != config.seed:
            raise RunDirError(
                f"{checkpoint_path}: saved with seed {checkpoint.seed} but {run.config} says "
                f"seed {config.seed}; was config.yaml edited after the run started?"
            )
        if checkpoint.epochs_done > config.train.epochs:
            raise RunDirError(
                f"{checkpoint_path}: holds {checkpoint.epochs_done} epochs but {run.config} "
                f"asks for {config.train.epochs}; was config.yaml edited after the run started?"
            )
    return ResumePoint(run=run, config=config, checkpoint=checkpoint)
