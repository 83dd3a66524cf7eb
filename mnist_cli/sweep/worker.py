"""A sweep worker: asks the study for trials and trains each in its own process, `jobs` at
a time, until the sweep has its number of trials.

Each trial process (`python -m mnist_cli.sweep.trial`) gets its share of the CPU cores (its
affinity, and the thread counts of OpenMP, XLA and TensorFlow), and dies with its worker
(Linux's parent-death signal), so a `kill -9` of the worker leaves no orphan training on.
What a killed worker leaves is trials in the RUNNING state with their checkpoints: the
next worker on this host (`mnist sweep --resume SWEEP_DIR`) takes them over and continues
each from its checkpoint. A trial process killed on its own is continued the same way by
its worker, at most `MAX_RESTARTS` times.

A trial counts once: the study numbers it when it is asked for, and it keeps that number
however often it is continued; a trial asked for beyond the sweep's number (two workers
asking at the same moment) is given up unrun.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from mnist_cli.atomic_files import write_text_atomic
from mnist_cli.errors import ConfigError, Interrupted, MnistCliError, RunDirError
from mnist_cli.runs import read_history, read_json
from mnist_cli.sweep import study as studies
from mnist_cli.sweep.folder import SweepFolder, trial_name
from mnist_cli.sweep.schema import SavedSweep
from mnist_cli.sweep.trial import PRUNED

MAX_RESTARTS = 2  # continuations of a trial whose process was killed, per worker
POLL_SECONDS = 0.2
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "TF_NUM_INTRAOP_THREADS")


class SweepTrialError(MnistCliError):
    """A trial failed for a reason of its own (a config value its training refuses)."""


@dataclass
class RunningTrial:
    number: int
    process: subprocess.Popen
    log: IO[bytes]
    slot: int
    started: float
    restarts: int = 0


def core_slots(jobs: int) -> list[list[int] | None]:
    """The cores of each of `jobs` parallel trials: this process's cores split into `jobs`
    groups (shared round-robin when there are fewer cores than jobs); None: all of them."""
    if jobs == 1 or not hasattr(os, "sched_getaffinity"):
        return [None] * jobs
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < jobs:
        return [[cores[slot % len(cores)]] for slot in range(jobs)]
    size = len(cores) // jobs
    return [cores[slot * size:(slot + 1) * size] for slot in range(jobs)]


def _trial_environment(cores: list[int] | None, storage_url: str | None) -> dict[str, str]:
    # Unbuffered: the trial's log shows each epoch as it ends (and keeps it on a kill -9).
    environment = dict(os.environ, PYTHONUNBUFFERED="1")
    if storage_url is not None:
        environment[studies.STORAGE_VARIABLE] = storage_url
    if cores is not None:
        count = str(len(cores))
        for variable in THREAD_VARIABLES:
            environment[variable] = count
        environment["TF_NUM_INTEROP_THREADS"] = "1"
        flags = environment.get("XLA_FLAGS", "")
        if "intra_op_parallelism_threads" not in flags:
            environment["XLA_FLAGS"] = f"{flags} --xla_cpu_multi_thread_eigen=false " \
                                       f"intra_op_parallelism_threads={count}".strip()
    return environment


def _child_setup(cores: list[int] | None, parent: int) -> Callable[[], None]:
    """What the trial process does before it starts: take its cores, and ask the kernel to
    kill it when its worker dies (Linux: PR_SET_PDEATHSIG)."""

    def setup() -> None:
        if cores is not None:
            os.sched_setaffinity(0, cores)
        with contextlib.suppress(OSError, AttributeError):
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the worker died before prctl took effect
            os._exit(1)

    return setup


@contextlib.contextmanager
def _takeover_lock(folder: SweepFolder) -> Iterator[None]:
    """One worker at a time decides which stale trials it takes (workers of this folder)."""
    with open(folder.path / ".takeover.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class Worker:
    def __init__(self, folder: SweepFolder, sweep: SavedSweep, storage_url: str | None,
                 jobs: int, echo: Callable[[str], None], sampler_seed: int | None) -> None:
        self.folder = folder
        self.sweep = sweep
        self.storage_url = storage_url
        self.jobs = jobs
        self.echo = echo
        self.storage = studies.open_storage(folder, storage_url)
        self.study = studies.open_study(sweep, self.storage, sampler_seed)
        self.wanted = sweep.trial_count()
        self.me = studies.worker_id()
        self.slots = core_slots(jobs)
        self.running: dict[int, RunningTrial] = {}

    # The loop ---------------------------------------------------------------------------

    def run(self) -> None:
        try:
            while True:
                for job in list(self.running.values()):
                    code = job.process.poll()
                    if code is not None:
                        self._finished(job, code)
                while len(self.running) < self.jobs:
                    number = self._next_trial()
                    if number is None:
                        break
                    self._start(number, self._free_slot())
                if not self.running:
                    return
                time.sleep(POLL_SECONDS)
        except KeyboardInterrupt:
            self._stop_all()
            raise Interrupted(self._interrupted_message()) from None
        except BaseException:
            self._stop_all()
            raise

    def _free_slot(self) -> int:
        taken = {job.slot for job in self.running.values()}
        return next(slot for slot in range(self.jobs) if slot not in taken)

    def _stop_all(self) -> None:
        """Ctrl-C reached the trial processes too (one process group); stop any that did
        not get it, and wait for each to save its checkpoint."""
        for job in self.running.values():
            if job.process.poll() is None:
                with contextlib.suppress(OSError):
                    job.process.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 60
        for job in self.running.values():
            try:
                job.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                job.process.kill()
                job.process.wait()
            except KeyboardInterrupt:  # a second Ctrl-C: do not wait any longer
                job.process.kill()
            job.log.close()

    def _interrupted_message(self) -> str:
        storage = (f" --storage {studies.printable_url(self.storage_url)}"
                   if self.storage_url else "")
        return (f"Interrupted; the running trials saved their checkpoints in {self.folder.path}."
                f"\nResume with: mnist sweep --resume {self.folder.path}{storage}")

    # Choosing the next trial ----------------------------------------------------------

    def _next_trial(self) -> int | None:
        """A trial whose worker died (continued), else a new one while the sweep needs
        more, else None."""
        taken = self._take_over()
        if taken is not None:
            return taken
        if len(studies.counted_trials(self.study)) >= self.wanted:
            return None
        trial = self.study.ask()
        self._claim(trial.number)
        if not studies.within_quota(self.study, trial.number, self.wanted):
            self._give_up(trial.number)
            return None
        params = {key: self._suggest(trial, key, parameter)
                  for key, parameter in self.sweep.space.items()}
        self._write_trial_config(trial.number, params)
        return trial.number

    def _suggest(self, trial: Any, key: str, parameter: Any) -> Any:
        if self.sweep.sampler == "grid":
            return trial.suggest_categorical(key, parameter.grid_values(key))
        if parameter.kind == "choices":
            return trial.suggest_categorical(key, parameter.choices)
        if parameter.kind == "int":
            return trial.suggest_int(key, int(parameter.low), int(parameter.high),
                                     step=int(parameter.step or 1), log=parameter.log)
        return trial.suggest_float(key, float(parameter.low), float(parameter.high),
                                   step=parameter.step, log=parameter.log)

    def _claim(self, number: int) -> None:
        trial_id = self._trial_id(number)
        self.storage.set_trial_user_attr(trial_id, "worker", self.me)
        self.storage.set_trial_user_attr(trial_id, "sweep_folder", str(self.folder.path.resolve()))

    def _trial_id(self, number: int) -> int:
        return self.storage.get_trial_id_from_study_id_trial_number(
            self.storage.get_study_id_from_name(self.sweep.name), number)

    def _take_over(self) -> int | None:
        here = str(self.folder.path.resolve())
        with _takeover_lock(self.folder):
            for trial in studies.stale_trials(self.study):
                if trial.number in self.running:
                    continue
                if trial.user_attrs.get("sweep_folder", here) != here:
                    continue  # its run directory is in another folder: its own host resumes it
                self._claim(trial.number)
                # Beyond the sweep's number, or its worker died before it had all its
                # parameters: give it up unrun (a new trial is asked for instead).
                if (not studies.within_quota(self.study, trial.number, self.wanted)
                        or set(trial.params) != set(self.sweep.space)):
                    self._give_up(trial.number)
                    continue
                if not self.folder.trial_config(trial.number).is_file():
                    self._write_trial_config(trial.number, trial.params)
                self.echo(f"{trial_name(trial.number)}: its worker stopped; continuing it")
                return trial.number
        return None

    def _give_up(self, number: int) -> None:
        """End a trial that was never trained; it counts for nothing and is not listed."""
        self.storage.set_trial_user_attr(self._trial_id(number), "surplus", True)
        self.study.tell(number, state=_states().FAIL, skip_if_finished=True)

    def _write_trial_config(self, number: int, params: dict[str, Any]) -> None:
        try:
            config = self.sweep.trial_config(params, trial_name(number), str(self.folder.path))
        except ConfigError as error:
            self.study.tell(number, state=_states().FAIL)
            raise SweepTrialError(f"{trial_name(number)}: {error}") from None
        write_text_atomic(self.folder.trial_config(number), config.to_yaml())

    # Running one ------------------------------------------------------------------------

    def _start(self, number: int, slot: int, restarts: int = 0) -> None:
        cores = self.slots[slot]
        log = open(self.folder.trial_log(number), "ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "mnist_cli.sweep.trial", str(self.folder.path), str(number)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=_trial_environment(cores, self.storage_url),
            preexec_fn=_child_setup(cores, os.getpid()),
        )
        params = self._params(number)
        if restarts == 0:
            self.echo(f"{trial_name(number)} started: {params}")
        self.running[number] = RunningTrial(number, process, log, slot, time.monotonic(),
                                            restarts)

    def _params(self, number: int) -> str:
        params = self.storage.get_trial(self._trial_id(number)).params
        return ", ".join(f"{key}={_short(value)}" for key, value in params.items())

    def _finished(self, job: RunningTrial, code: int) -> None:
        del self.running[job.number]
        job.log.close()
        name = trial_name(job.number)
        if code == 0:
            self._record(job)
            return
        if code < 0 or code == Interrupted.exit_code:
            if job.restarts < MAX_RESTARTS:
                self.echo(f"{name}: its process was stopped ({_exit_reason(code)}); "
                          "continuing it from its last checkpoint")
                self._start(job.number, job.slot, job.restarts + 1)
                return
        reason = _last_error(self.folder.trial_log(job.number)) or _exit_reason(code)
        self.storage.set_trial_user_attr(self._trial_id(job.number), "error", reason)
        self.study.tell(job.number, state=_states().FAIL, skip_if_finished=True)
        raise SweepTrialError(f"{name} failed: {reason} (its output: "
                              f"{self.folder.trial_log(job.number)})")

    def _record(self, job: RunningTrial) -> None:
        """Tell the study how the finished trial did, from its run directory."""
        name = trial_name(job.number)
        run = self.folder.trial_run(job.number)
        if run is None or not run.finished:
            raise RunDirError(f"{name}: its process ended without a finished run directory "
                              f"(see {self.folder.trial_log(job.number)})")
        metrics = read_json(run.metrics)
        value = final_metric(read_history(run.history), metrics, self.sweep.metric)
        trial_id = self._trial_id(job.number)
        for key, attribute in (("run_dir", run.path.name),
                               ("test_accuracy", metrics.get("test_accuracy")),
                               ("train_seconds", metrics.get("train_seconds")),
                               ("epochs", metrics.get("epochs_completed"))):
            self.storage.set_trial_user_attr(trial_id, key, attribute)
        states = _states()
        if metrics.get("stopped_by") == PRUNED:
            self.study.tell(job.number, state=states.PRUNED, skip_if_finished=True)
            self.echo(f"{name} pruned after epoch {metrics.get('epochs_completed')} "
                      f"({self.sweep.metric} {_short(value)})")
            return
        if value is None:
            self.study.tell(job.number, state=states.FAIL, skip_if_finished=True)
            raise SweepTrialError(f"{name}: no {self.sweep.metric} to optimise: the sweep's "
                                  "base config needs a validation split "
                                  "(data.validation_split), or the sweep metric: accuracy "
                                  "(the training accuracy)")
        self.study.tell(job.number, value, skip_if_finished=True)
        self.echo(f"{name}: {self.sweep.metric} {value:.4f}, test accuracy "
                  f"{metrics.get('test_accuracy', float('nan')):.4f}, "
                  f"{metrics.get('train_seconds', 0):.1f} s")


def final_metric(history: list[dict[str, Any]], metrics: dict[str, Any],
                 metric: str) -> float | None:
    """The trial's value: the metric of the epoch whose weights the model kept (the best
    epoch when early stopping restored it), else of the last epoch."""
    if not history:
        return None
    row = history[-1]
    best = metrics.get("best_epoch")
    if metrics.get("stopped_early") and best is not None:
        row = next((candidate for candidate in history if candidate["epoch"] == best), row)
    value = row.get(metric)
    return None if value is None else float(value)


def _states() -> Any:
    from optuna.trial import TrialState

    return TrialState


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _exit_reason(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exit status {code}"


def _last_error(log: Path) -> str | None:
    with contextlib.suppress(OSError):
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
        for line in reversed(lines):
            if line.startswith("Error: "):
                return line[len("Error: "):]
    return None
