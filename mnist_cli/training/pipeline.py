"""`train(config)`: one run, read top-down in the order it happens.

Set up the runtime, prepare the data, build the model, open the run directory (a new one,
or the stopped run's own), run the engine, write the artifacts. The run directory is
written as training goes: `config.yaml` first (so a run can always be re-evaluated or
resumed), then `history.csv` and `checkpoint.npz` after every epoch, then the model, the
figures and, last, `metrics.json`: a run is finished exactly when it has `metrics.json`
(the checkpoint is then deleted).

Importing this module imports no Keras: `train` starts the runtime itself.
"""

from __future__ import annotations

import contextlib
import platform
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mnist_cli import __version__, artifacts, plots, runtime
from mnist_cli.atomic_files import (
    remove_temporaries,
    save_with,
    write_json_atomic,
    write_text_atomic,
)
from mnist_cli.config import Config
from mnist_cli.data import PreparedData
from mnist_cli.errors import Interrupted
from mnist_cli.runs import RunDir, create_run_dir
from mnist_cli.terminal import Output, ProgressBar
from mnist_cli.training import engines, interrupt, plan
from mnist_cli.training.checkpoints import (
    Checkpoint,
    Checkpointer,
    ResumePoint,
    TrainingClock,
    data_fingerprint,
)
from mnist_cli.training.early_stopping import EarlyStopping
from mnist_cli.training.engines.contract import EngineJob, PartialEpoch
from mnist_cli.training.epochs import EpochEvents, EpochObserver, TrainingState
from mnist_cli.training.history import History
from mnist_cli.training.progress import Progress
from mnist_cli.training.schedules import LearningRateSchedule
from mnist_cli.training.snapshots import EpochProgress, Snapshots
from mnist_cli.training.tensorboard import TensorBoardLog, tensorboard_log


@dataclass
class TrainResult:
    run_dir: Path
    metrics: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)


def train(config: Config, *, echo: Callable[[str], None] = print, progress_bar: bool = False,
          resume: ResumePoint | None = None, verbose: bool = False,
          observers: Sequence[EpochObserver] = ()) -> TrainResult:
    """Train `config` into a new run directory and return its path and test metrics.

    With `resume` (from `checkpoints.find_resume_point`), continue that stopped run instead,
    in its own folder, from its checkpoint (or from scratch when it stopped before its first
    epoch ended); `config` is then the run's own config.yaml. `progress_bar` draws a bar
    with the time left in each epoch where the engine reports its batches (for a terminal,
    `terminal.ProgressBar`); every completed epoch's line goes to `echo`.
    `verbose` shows the backend's native log messages. `observers` are told of every saved
    epoch and may end the run there (`epochs.EpochObserver`: a sweep's pruner).

    Ctrl-C stops training at the next batch or epoch end, and raises `Interrupted` (exit 130)
    with the resume command once the checkpoint is saved; a second Ctrl-C, or one after
    training, raises it at once (the last epoch's checkpoint is on disk).
    """
    checkpoint = resume.checkpoint if resume is not None else None

    # The runtime: backend, deterministic kernels, the engine, then the seeds.
    backend = runtime.start(config.runtime.backend, verbose=verbose,
                            deterministic=config.runtime.deterministic)
    engine = engines.resolve_engine(config.train.engine, backend)
    if engine == "fast":
        engines.check_resumable(checkpoint)
    engines.prepare_process(engine, backend)  # before anything compiles
    runtime.seed_everything(config.seed)
    devices = runtime.use_devices(config.runtime.devices)  # before the model is built

    # The data, then the model: both before the run directory, so that a config error
    # found there (a batch larger than the data, an initializer's arguments) leaves no
    # empty run behind.
    data, config = plan.prepare_for_training(config)
    engines.check_data_parallel(engine, devices["count"], config.train.batch_size,
                                len(data.y_train), len(data.y_val))
    from mnist_cli.model import build_model, compile_model

    model = compile_model(build_model(config), config)
    resolved = config.model_copy(deep=True)
    resolved.runtime.backend = backend
    resolved.train.engine = engine

    # The run directory. From here on, Ctrl-C always ends with the resume command.
    run = _open_run(config, resolved, resume, echo)
    checkpointer: Checkpointer | None = None
    tensorboard: TensorBoardLog | None = None
    on_disk = (checkpoint.epochs_done, checkpoint.batches_done) if checkpoint else None
    try:
        echo(f"Data: {data.source} - {len(data.y_train)} train, {len(data.y_val)} validation, "
             f"{len(data.y_test)} test")
        if config.data.augment is not None and not run.augmentations.exists():
            _write_augmentations(run, config, data)
        state = TrainingState(
            model=model,
            history=History(run.history),
            progress=Progress(config.train.epochs, echo=echo,
                              bar=ProgressBar(Output()) if progress_bar else None),
            early_stopping=EarlyStopping(config.train.early_stopping, model),
            schedule=LearningRateSchedule(config.train.schedule, config.train.learning_rate,
                                          config.train.epochs, model.optimizer),
            clock=TrainingClock(),
        )
        checkpointer = Checkpointer(run, model, state.registry(), seed=config.seed,
                                    fingerprint=data_fingerprint(
                                        data.pixels_train, data.pixel_table, data.y_train))
        if checkpoint is not None:
            checkpointer.restore(checkpoint)
        else:
            state.history.write()
        initial_epoch = checkpoint.epochs_done if checkpoint is not None else 0
        tensorboard = tensorboard_log(resolved, run.path, model, data, initial_epoch, echo)
        events = EpochEvents(state, checkpointer, tensorboard, observers,
                             Snapshots(run, model) if config.train.snapshots else None,
                             EpochProgress(run))
        job = EngineJob(
            model=model, config=config, data=data, events=events,
            initial_epoch=initial_epoch,
            partial=_partial_epoch(checkpoint, checkpointer),
        )

        # The engine. Its clock covers its whole work: putting the data on the device,
        # compiling, the epochs, and the per-epoch history and checkpoint writes.
        notice = (interrupt.NOTICE_BATCH if engines.stops_inside_epochs(engine)
                  else interrupt.NOTICE_EPOCH)
        with interrupt.stop_on_sigint(notice):
            state.clock.start()
            if not events.training_done(config.train.epochs):
                engines.run(engine, backend, job)
            train_seconds = state.clock.seconds()
        if interrupt.stop_requested() and not events.training_done(config.train.epochs):
            raise _interrupted(run, checkpointer.last_saved, config)

        # The artifacts, metrics.json last.
        if state.early_stopping.stopped_early:
            echo(state.early_stopping.summary(len(state.history), config.train.epochs))
        state.early_stopping.finish()
        if config.train.ema is not None:
            model.optimizer.finalize_variable_values(model.trainable_variables)
        return _finish(_Finished(run, config, data, state, engine, train_seconds,
                                 events.stopped_by(), devices),
                       checkpointer, tensorboard, echo)
    except KeyboardInterrupt:
        saved = checkpointer.last_saved if checkpointer is not None else None
        raise _interrupted(run, saved or on_disk, config) from None
    finally:
        if tensorboard is not None:
            tensorboard.close()  # the events so far stay readable, whatever stopped the run


def _open_run(config: Config, resolved: Config, resume: ResumePoint | None,
              echo: Callable[[str], None]) -> RunDir:
    """A new run directory holding the resolved config.yaml, or the stopped run's own."""
    if resume is not None:
        remove_temporaries(resume.run.path)  # left by a process killed in the middle of a save
        checkpoint = resume.checkpoint
        echo(f"Resuming {resume.run.path} after "
             + (checkpoint.describe() if checkpoint else "no completed epoch: from the start"))
        return resume.run
    run = RunDir(create_run_dir(config.output.root, config.name))
    try:
        write_text_atomic(run.config, resolved.to_yaml())
    except BaseException:
        with contextlib.suppress(OSError):  # still empty: leave no run that is not one
            run.path.rmdir()
        raise
    echo(f"Run directory: {run.path}")
    return run


def _write_augmentations(run: RunDir, config: Config, data: PreparedData) -> None:
    """augmentations.png: a few training digits and their distortions in the first epochs,
    so the user sees what the network is trained on."""
    from mnist_cli.data.augment import preview

    grid = preview(data.pixels_train, config.seed, config.data)
    variants = grid.shape[1] - 1
    captions = [f"digit {data.y_train[row]}" if column == 0 else f"epoch {column}"
                for row in range(grid.shape[0]) for column in range(grid.shape[1])]
    figure = plots.digit_grid_figure(
        grid.reshape(-1, 28, 28), captions, per_row=variants + 1,
        title=f"{config.name}: training digits and their distortions",
        note="Each row: a training digit, then how it is distorted in epochs 1-"
             f"{variants} (data.augment); validation and test digits are never distorted.")
    save_with(run.augmentations, figure.savefig)


def _partial_epoch(checkpoint: Checkpoint | None,
                   checkpointer: Checkpointer) -> PartialEpoch | None:
    if checkpoint is None or not checkpoint.batches_done:
        return None
    return PartialEpoch(checkpoint.batches_done,
                        restore_metrics=lambda: checkpointer.restore_metrics(checkpoint))


def _interrupted(run: RunDir, saved: tuple[int, int] | None, config: Config) -> Interrupted:
    """The message after Ctrl-C: where training stopped, what is saved (`saved`: epochs and
    batches of the checkpoint on disk), how to go on."""
    if saved is None:
        where = "before the first epoch ended (nothing saved but the config)"
    elif saved[1]:
        where = f"in epoch {saved[0] + 1} after batch {saved[1]}; saved there"
    else:
        done = "epoch 1" if saved[0] == 1 else f"epochs 1-{saved[0]}"
        where = f"with {done} of {config.train.epochs} saved"
    return Interrupted(
        f"Interrupted {where} in {run.path}.\n"
        f"Resume with: mnist train --resume {shlex.quote(str(run.path))}"
    )


@dataclass
class _Finished:
    """A run whose training is over, before its artifacts are written. `stopped_by` names
    what ended it before its last epoch (early stopping, a sweep's pruner), if anything."""

    run: RunDir
    config: Config
    data: PreparedData
    state: TrainingState
    engine: str
    train_seconds: float
    stopped_by: str | None
    devices: dict[str, Any]


def _finish(done: _Finished, checkpointer: Checkpointer, tensorboard: TensorBoardLog | None,
            echo: Callable[[str], None]) -> TrainResult:
    """Write the model, the figures and, last, metrics.json, which marks the run finished."""
    run, config, data, state = done.run, done.config, done.data, done.state
    model, history, early_stopping = state.model, state.history, state.early_stopping
    train_seconds = done.train_seconds
    save_with(run.model, model.save)
    metrics, outputs = artifacts.test_metrics(model, config.train.loss, data.x_test, data.y_test)
    epochs_run = len(history)
    metrics.update({
        "train_seconds": round(train_seconds, 3),
        "samples_per_second": round(
            plan.samples_trained(config, len(data.y_train), epochs_run) / train_seconds, 1)
        if train_seconds > 0 else None,
        "epochs_completed": epochs_run,
        "stopped_early": done.stopped_by is not None,
        "stopped_by": done.stopped_by,
        "best_epoch": early_stopping.best_epoch,
        "num_train": int(len(data.y_train)),
        "num_validation": int(len(data.y_val)),
        "split": config.data.split,
        "test_fraction": config.data.test_fraction if config.data.split == "pooled" else None,
        "seed": config.seed,
        "engine": done.engine,
        "devices": done.devices,
        "peak_memory_mib": _peak_memory_mib(),
        "data_source": data.source,
        "versions": _versions(),
    })
    save_with(run.curves, plots.learning_curves_figure(
        history.rows, f"{config.name}: {'-'.join(map(str, config.model.stack()))}",
        best_epoch=early_stopping.best_epoch).savefig)
    artifacts.write_error_grid(
        run.errors, data.x_test, data.y_test, outputs, data.test_index, config.name,
        score=artifacts.score_word(config),
        index_of=artifacts.index_words(config))
    if tensorboard is not None:
        tensorboard.finish(epochs_run, run.errors, metrics)
    write_json_atomic(run.metrics, metrics)
    checkpointer.remove()
    run.progress.unlink(missing_ok=True)  # the page's view of an epoch under way
    echo(f"Test accuracy: {metrics['test_accuracy']:.4f} "
         f"({metrics['num_errors']} errors in {metrics['num_test']})")
    echo(f"Saved to {run.path}")
    return TrainResult(run.path, metrics, history.rows)


def _versions() -> dict[str, str]:
    import keras

    backend = keras.backend.backend()
    backend_version = getattr(sys.modules.get(backend), "__version__", "unknown")
    return {
        "mnist_cli": __version__,
        "python": platform.python_version(),
        "keras": keras.__version__,
        "backend": backend,
        "backend_version": backend_version,
        "numpy": np.__version__,
        "platform": platform.platform(),
    }


def _peak_memory_mib() -> float | None:
    """The peak resident memory of this process so far, in MiB (None where unknown)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is in KiB on Linux, in bytes on macOS.
    return round(peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024, 1)
