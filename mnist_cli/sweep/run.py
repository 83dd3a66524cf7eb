"""`mnist sweep`, read top-down: make the sweep folder (or open it again), run a worker
until the sweep has its trials, then write and return what it found."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mnist_cli.errors import UsageError
from mnist_cli.sweep import results, study
from mnist_cli.sweep.folder import SweepFolder, create_sweep_folder, open_sweep_folder
from mnist_cli.sweep.schema import SavedSweep
from mnist_cli.sweep.worker import Worker


@dataclass
class SweepOutcome:
    folder: SweepFolder
    sweep: SavedSweep
    rows: list[results.TrialRow]
    seeds: dict[str, dict[str, float]] | None = None


def start_sweep(sweep: SavedSweep, output_root: str | Path, *, jobs: int = 1,
                storage_url: str | None = None,
                echo: Callable[[str], None] = print) -> SweepOutcome:
    """A new sweep folder under `output_root`, then the sweep in it."""
    study.require_optuna()
    if storage_url is not None:
        sweep = sweep.model_copy(update={"storage": "url"})
        # A database that does not answer is an error before anything is made.
        study.open_study(sweep, study.open_storage(None, storage_url))
    folder = create_sweep_folder(output_root, sweep)
    echo(f"Sweep folder: {folder.path}")
    # The first worker of a journal study draws with the sweep's own seed (a rerun draws the
    # same trials); a worker that may share a database study mixes its identity in.
    seed = sweep.seed if storage_url is None else study.joining_seed(sweep.seed)
    return _work(folder, sweep, storage_url, jobs, echo, seed)


def resume_sweep(path: str | Path, *, jobs: int = 1, storage_url: str | None = None,
                 echo: Callable[[str], None] = print) -> SweepOutcome:
    """Continue (or join, as one more worker) the sweep in the folder `path`."""
    study.require_optuna()
    folder = open_sweep_folder(path)
    sweep = folder.read()
    if sweep.storage == "url" and storage_url is None:
        raise UsageError(f"{folder.path} keeps its study in a database: give its "
                         "--storage URL again")
    if sweep.storage == "journal" and storage_url is not None:
        raise UsageError(f"{folder.path} keeps its study in {folder.journal.name}: "
                         "drop --storage")
    echo(f"Resuming the sweep in {folder.path}")
    return _work(folder, sweep, storage_url, jobs, echo, study.joining_seed(sweep.seed))


def _work(folder: SweepFolder, sweep: SavedSweep, storage_url: str | None, jobs: int,
          echo: Callable[[str], None], seed: int) -> SweepOutcome:
    worker = Worker(folder, sweep, storage_url, jobs, echo, seed)
    try:
        worker.run()
    finally:
        # Whatever stopped the worker, the table and picture show the trials so far.
        rows = results.trial_rows(worker.study)
        results.write_results(folder, sweep, rows)
    seeds = None
    if list(sweep.space) == ["seed"] and sweep.sampler == "grid":
        seeds = results.seed_statistics(folder, rows)
        results.write_seed_statistics(folder, seeds)
    return SweepOutcome(folder, sweep, rows, seeds)
