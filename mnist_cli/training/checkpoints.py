"""Checkpoints: what a run needs to continue exactly where it stopped.

After every completed epoch the run directory receives `checkpoint.npz`, written to a
temporary file and renamed into place (`atomic_files.save_with`), so a kill at any instant
leaves either the previous epoch's checkpoint or the new one, never a torn file. (Keras's
own `BackupAndRestore` writes in place, and restarts an interrupted epoch from its first
batch.)

Training state is one registry: every object that holds some (the model's and optimizer's
variables, the history rows, early stopping's best value and weights, the learning-rate
schedule's counters, the epoch clock, the seconds spent training) is a `Stateful` with a
key, and the pipeline hands the one list of them to the `Checkpointer`, which stores
`{key: state}` and gives each its part back on a resume. Around them the checkpoint records
how many epochs are complete (and, after a Ctrl-C inside an epoch with the `fit` engine on
JAX, how many batches of the next one, with that epoch's metric accumulators), the seed, and
a fingerprint of the training data, so a resume against a different copy of the data is
refused instead of silently mixing two datasets.

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
from typing import Any, Protocol

import numpy as np

from mnist_cli.atomic_files import json_text, save_with
from mnist_cli.config import Config, load_config
from mnist_cli.errors import RunDirError, describe_error
from mnist_cli.runs import RunDir, open_run_dir

CHECKPOINT_FORMAT = 2


class Stateful(Protocol):
    """A piece of training state the checkpoint carries: the model's variables, the
    optimizer's, the history, early stopping, the schedule, the clocks. `state()` is a dict
    of JSON values and lists of NumPy arrays; `load_state` takes back what `state()` gave.
    The pipeline builds the one list of them; the checkpoint stores each under its `key`."""

    key: str

    def state(self) -> dict[str, Any]: ...

    def load_state(self, state: dict[str, Any]) -> None: ...


def data_fingerprint(*arrays: np.ndarray) -> str:
    """A short digest of the training data (after subset and split: its pixels, the table
    that preprocesses them, its labels)."""
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()[:16]


@dataclass
class Checkpoint:
    """A run after `epochs_done` epochs (and `batches_done` batches of the next, with that
    epoch's metric accumulators): every `Stateful`'s state by its key."""

    epochs_done: int
    seed: int
    data_fingerprint: str
    states: dict[str, dict[str, Any]] = field(default_factory=dict)
    batches_done: int = 0
    metric_variables: list[np.ndarray] = field(default_factory=list)

    @property
    def history(self) -> list[dict[str, Any]]:
        return list(self.states.get(HISTORY_KEY, {}).get("rows", []))

    def describe(self) -> str:
        where = f"epoch {self.epochs_done}"
        if self.batches_done:
            where += f" and {self.batches_done} batches of epoch {self.epochs_done + 1}"
        return where


HISTORY_KEY = "history"
_ARRAYS = "__arrays__"  # in the JSON part: this entry is that many arrays beside it


def _is_arrays(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(item, np.ndarray) for item in value)


def write_checkpoint(path: str | Path, checkpoint: Checkpoint) -> None:
    """Save atomically: a temporary file beside `path`, flushed, then renamed onto it. Each
    state's arrays are stored as `<key>.<name>.<index>`, the rest as one JSON document."""
    arrays: dict[str, np.ndarray] = {}
    states: dict[str, dict[str, Any]] = {}
    for key, state in checkpoint.states.items():
        states[key] = {}
        for name, value in state.items():
            if _is_arrays(value):
                arrays.update({f"{key}.{name}.{index:04d}": np.asarray(item)
                               for index, item in enumerate(value)})
                value = {_ARRAYS: len(value)}
            states[key][name] = value
    arrays.update({f"metrics.{index:04d}": np.asarray(value)
                   for index, value in enumerate(checkpoint.metric_variables)})
    meta = {
        "format": CHECKPOINT_FORMAT,
        "epochs_done": checkpoint.epochs_done,
        "batches_done": checkpoint.batches_done,
        "seed": checkpoint.seed,
        "data_fingerprint": checkpoint.data_fingerprint,
        "metric_variables": len(checkpoint.metric_variables),
        "states": states,
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    arrays["meta"] = np.array(json_text(meta))

    def write(temporary: Path) -> None:
        with open(temporary, "wb") as handle:  # a handle: np.savez would append ".npz"
            np.savez(handle, **arrays)

    save_with(path, write)


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
        states = {
            key: {name: [arrays[f"{key}.{name}.{index:04d}"] for index in range(value[_ARRAYS])]
                  if isinstance(value, dict) and _ARRAYS in value else value
                  for name, value in state.items()}
            for key, state in dict(meta["states"]).items()
        }
        checkpoint = Checkpoint(
            epochs_done=int(meta["epochs_done"]),
            batches_done=int(meta["batches_done"]),
            seed=int(meta["seed"]),
            data_fingerprint=str(meta["data_fingerprint"]),
            states=states,
            metric_variables=[arrays[f"metrics.{index:04d}"]
                              for index in range(int(meta["metric_variables"]))],
        )
    except FileNotFoundError:
        raise RunDirError(f"{path}: no checkpoint") from None
    except RunDirError:
        raise
    except (OSError, ValueError, KeyError, TypeError, AttributeError, EOFError,
            zipfile.BadZipFile, zlib.error) as error:
        raise RunDirError(f"{damaged} ({describe_error(error, 150)})") from None
    if checkpoint.epochs_done < 0 or checkpoint.batches_done < 0 or (
            HISTORY_KEY in checkpoint.states
            and len(checkpoint.history) != checkpoint.epochs_done):
        raise RunDirError(f"{damaged} (its epoch count and history disagree)")
    return checkpoint


def _values(variables: Sequence[Any]) -> list[np.ndarray]:
    return [np.array(variable.numpy()) for variable in variables]


def _assign(variables: Sequence[Any], values: Sequence[np.ndarray], what: str) -> None:
    """Load `values` into Keras variables, refusing a checkpoint of another architecture."""
    if len(variables) != len(values):
        raise RunDirError(
            f"the checkpoint holds {len(values)} {what} variables but the model of "
            f"config.yaml has {len(variables)}; was config.yaml edited after the run started?"
        )
    for variable, value in zip(variables, values):
        if tuple(variable.shape) != tuple(value.shape):
            raise RunDirError(
                f"{what} variable {variable.path} has shape {tuple(variable.shape)} "
                f"in the model but {tuple(value.shape)} in the checkpoint; was config.yaml "
                "edited after the run started?"
            )
    for variable, value in zip(variables, values):
        variable.assign(value)


class ModelVariables:
    """Every variable of the model: weights, and the state of the seed generators of
    Dropout layers, so the dropout masks continue the same sequence."""

    key = "model"

    def __init__(self, model: Any) -> None:
        self.model = model

    def state(self) -> dict[str, Any]:
        return {"variables": _values(self.model.variables)}

    def load_state(self, state: dict[str, Any]) -> None:
        _assign(self.model.variables, state["variables"], "model")


class OptimizerVariables:
    """Every variable of the optimizer: step counter, Adam's moments, momentum buffers."""

    key = "optimizer"

    def __init__(self, model: Any) -> None:
        self.model = model

    def state(self) -> dict[str, Any]:
        return {"variables": _values(self.model.optimizer.variables)}

    def load_state(self, state: dict[str, Any]) -> None:
        optimizer = self.model.optimizer
        if not optimizer.built:
            optimizer.build(self.model.trainable_variables)
        _assign(optimizer.variables, state["variables"], "optimizer")


class TrainingClock:
    """Seconds spent training by this run, over every process that worked on it."""

    key = "clock"

    def __init__(self) -> None:
        self.seconds_before = 0.0
        self.session_started: float | None = None

    def start(self) -> None:
        """Training (not data loading or start-up) begins now in this process."""
        self.session_started = time.perf_counter()

    def seconds(self) -> float:
        running = 0.0 if self.session_started is None else (
            time.perf_counter() - self.session_started)
        return self.seconds_before + running

    def state(self) -> dict[str, Any]:
        return {"train_seconds": round(self.seconds(), 4)}

    def load_state(self, state: dict[str, Any]) -> None:
        self.seconds_before = float(state["train_seconds"])


class Checkpointer:
    """Saves every `Stateful`'s state after each completed epoch, and on Ctrl-C within one;
    `restore` gives each its state back before training continues."""

    def __init__(self, run: RunDir, model: Any, states: Sequence[Stateful], *, seed: int,
                 fingerprint: str) -> None:
        keys = [state.key for state in states]
        if len(set(keys)) != len(keys):
            raise ValueError(f"two training states share a key: {keys}")
        self.path = run.checkpoint
        self.model = model
        self.states = list(states)
        self.seed = seed
        self.fingerprint = fingerprint
        # (epochs done, batches of the next epoch done) of the checkpoint on disk, if any.
        self.last_saved: tuple[int, int] | None = None

    def capture(self, epochs_done: int, batches_done: int = 0) -> Checkpoint:
        return Checkpoint(
            epochs_done=epochs_done,
            batches_done=batches_done,
            seed=self.seed,
            data_fingerprint=self.fingerprint,
            states={state.key: state.state() for state in self.states},
            metric_variables=_values(self.model.metrics_variables) if batches_done else [],
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
        """Give every state its part of `checkpoint`."""
        if checkpoint.data_fingerprint != self.fingerprint:
            raise RunDirError(
                f"{self.path}: the training data differs from the data this run started with "
                "(another file, or MNIST_DATA / data.path now points elsewhere); point them at "
                "the copy the run used, or start a new run"
            )
        missing = [state.key for state in self.states if state.key not in checkpoint.states]
        if missing:
            raise RunDirError(f"{self.path}: the checkpoint has no {', '.join(missing)} state; "
                              "delete it to restart this run from its first epoch with --resume")
        for state in self.states:
            try:
                state.load_state(checkpoint.states[state.key])
            except RunDirError as error:
                raise RunDirError(f"{self.path}: {error}") from None
        self.last_saved = (checkpoint.epochs_done, checkpoint.batches_done)

    def restore_metrics(self, checkpoint: Checkpoint) -> None:
        """Put back the metric accumulators of a partly trained epoch (call after the
        engine reset them at the epoch's start)."""
        try:
            _assign(self.model.metrics_variables, checkpoint.metric_variables, "metric")
        except RunDirError as error:
            raise RunDirError(f"{self.path}: {error}") from None

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
    if run.finished:
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
