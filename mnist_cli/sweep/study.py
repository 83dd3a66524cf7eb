"""The Optuna study of a sweep: its storage, sampler and pruner, and which trials are whose.

Every process that works on a sweep (the workers, and the trial processes that report
their epochs) opens the same study: the sweep folder's journal file (Optuna's journal
storage, safe under concurrent processes through its lock file) or a database named by
`--storage URL` (Optuna's RDB storage: PostgreSQL for workers on many machines).

A trial in the RUNNING state belongs to the worker named in its `worker` attribute
(host, process id and the process's start time). A worker that dies (kill -9, a crash)
leaves its trials RUNNING; another worker on the same host, or `mnist sweep --resume`,
sees that their owner is gone and takes them over. Trials of workers on other hosts are
never taken over from here: their own host resumes them.

Optuna is imported inside the functions: importing this module costs nothing.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from typing import Any

from mnist_cli.errors import ConfigError, MnistCliError, describe_error
from mnist_cli.sweep.folder import SweepFolder
from mnist_cli.sweep.schema import SavedSweep

STORAGE_VARIABLE = "MNIST_SWEEP_STORAGE"  # how a trial process is given a --storage URL
SCHEMA_ATTEMPTS = 5  # tries to open a database whose tables another worker is creating
ORPHAN_SECONDS = 60.0  # a RUNNING trial never claimed by a worker after this long is stale


class SweepStorageError(MnistCliError):
    """The study's storage cannot be opened (a database that does not answer, a bad URL)."""


def require_optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise ConfigError('mnist sweep needs Optuna: pip install "mnist-cli[sweep]"') from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def open_storage(folder: SweepFolder | None, url: str | None) -> Any:
    """The study's storage: the database at `url`, else the folder's journal file."""
    optuna = require_optuna()
    if url is None:
        assert folder is not None, "a journal storage lives in a sweep folder"
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(str(folder.journal)))
    import sqlalchemy.exc

    attempt = 0
    while True:
        try:
            return optuna.storages.RDBStorage(_with_driver(url))
        except Exception as error:  # SQLAlchemy's and the driver's errors, of many classes
            # Workers started at once on an empty database all create Optuna's tables and
            # all but one fail (a duplicate row, or PostgreSQL's "relation ... already
            # exists"); once the tables exist, opening them works.
            attempt += 1
            lost_race = isinstance(error, sqlalchemy.exc.IntegrityError) or (
                isinstance(error, sqlalchemy.exc.ProgrammingError)
                and "already exists" in str(error))
            if lost_race and attempt < SCHEMA_ATTEMPTS:
                time.sleep(0.5 * attempt)
                continue
            raise SweepStorageError(
                f"cannot open the study storage {printable_url(url)}: "
                f"{describe_error(error, 300)}") from None


def _with_driver(url: str) -> str:
    """A PostgreSQL URL with the driver the `sweep` extra installs (psycopg 3): SQLAlchemy
    picks psycopg2 or psycopg for a bare `postgresql://` depending on its version."""
    scheme, separator, rest = url.partition("://")
    if separator and scheme in ("postgresql", "postgres"):
        return f"postgresql+psycopg://{rest}"
    return url


def printable_url(url: str) -> str:
    """A database URL as it may be printed: user, host and database, never the password."""
    scheme, separator, rest = url.partition("://")
    credentials, at, place = rest.rpartition("@")
    if not separator or not at:
        return url
    return f"{scheme}://{credentials.split(':', 1)[0]}:***@{place}"


def make_sampler(sweep: SavedSweep, seed: int) -> Any:
    optuna = require_optuna()
    if sweep.sampler == "grid":
        return _grid_sampler(optuna)(sweep.grid(), seed=seed)
    if sweep.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def _grid_sampler(optuna: Any) -> type:
    """Optuna's grid sampler, minus its end-of-grid `study.stop()`: that works only inside
    `study.optimize`, and a sweep's workers (ask and tell) count their trials themselves."""

    class GridSampler(optuna.samplers.GridSampler):
        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            return None

    return GridSampler


def make_pruner(sweep: SavedSweep) -> Any:
    optuna = require_optuna()
    pruning = sweep.pruning
    if pruning is None or pruning.method == "none":
        return optuna.pruners.NopPruner()
    if pruning.method == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=pruning.startup_trials,
                                           n_warmup_steps=pruning.warmup_epochs + 1)
    return optuna.pruners.SuccessiveHalvingPruner(min_resource=pruning.min_epochs,
                                                  reduction_factor=pruning.reduction_factor)


def open_study(sweep: SavedSweep, storage: Any, sampler_seed: int | None = None) -> Any:
    """The sweep's study in `storage`, created the first time (study name: the sweep's)."""
    optuna = require_optuna()
    seed = sweep.seed if sampler_seed is None else sampler_seed
    try:
        return optuna.create_study(
            storage=storage, study_name=sweep.name, direction=sweep.direction,
            sampler=make_sampler(sweep, seed), pruner=make_pruner(sweep), load_if_exists=True)
    except Exception as error:
        if isinstance(error, MnistCliError):
            raise
        raise SweepStorageError(
            f"cannot open the study {sweep.name!r}: {describe_error(error, 300)}") from None


def joining_seed(seed: int) -> int:
    """The sampler seed of a worker joining a study others work on too: the sweep's seed
    mixed with this process's identity, so two workers never draw the same trials."""
    digest = hashlib.sha256(f"{seed}:{worker_id()}".encode()).digest()
    return int.from_bytes(digest[:4], "little") % 2**31


# --------------------------------------------------------------------------------------------
# Who owns a running trial


def _start_ticks(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), which tells a process
    from a later one that reuses its id; None where /proc is not there."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return fields[19]
    except (OSError, IndexError):
        return None


def worker_id(pid: int | None = None) -> str:
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}:{pid}:{_start_ticks(pid) or '-'}"


def owner_alive(owner: str | None) -> bool:
    """Whether the worker `owner` may still be running: True for another host's."""
    if not owner:
        return False
    host, _, rest = owner.partition(":")
    if host != socket.gethostname():
        return True
    pid_text, _, ticks = rest.partition(":")
    try:
        pid = int(pid_text)
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return ticks in ("-", "") or _start_ticks(pid) == ticks


def stale_trials(study: Any) -> list[Any]:
    """The RUNNING trials whose worker is gone, oldest first."""
    from optuna.trial import TrialState

    stale = []
    now = time.time()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = trial.user_attrs.get("worker")
        if owner is None:
            started = trial.datetime_start.timestamp() if trial.datetime_start else now
            if now - started > ORPHAN_SECONDS:  # its worker died between ask and claim
                stale.append(trial)
        elif not owner_alive(owner):
            stale.append(trial)
    return stale


def counted_trials(study: Any) -> list[Any]:
    """The trials that count towards the sweep's number: every trial that did not fail,
    in the order they were created (COMPLETE, PRUNED, RUNNING, WAITING)."""
    from optuna.trial import TrialState

    return [trial for trial in study.get_trials(deepcopy=False)
            if trial.state != TrialState.FAIL]


def within_quota(study: Any, number: int, wanted: int) -> bool:
    """Whether trial `number` is one of the first `wanted` trials that count. Two workers
    can ask for a trial at the same moment; the later one then sees its trial beyond the
    quota and gives it up, so the sweep never ends with more than `wanted` trials."""
    numbers = [trial.number for trial in counted_trials(study)]
    return number in numbers[:wanted]
