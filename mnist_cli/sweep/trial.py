"""One trial, in its own process: `python -m mnist_cli.sweep.trial SWEEP_DIR NUMBER`.

The worker (`sweep.worker`) starts this for every trial. It trains the trial's config
(`trial-NNNN.yaml`, written by the worker) with the ordinary training pipeline into an
ordinary run directory inside the sweep folder, and reports every epoch's validation metric
to the Optuna trial, whose pruner may end the run there. If the trial's run directory is
already there and unfinished (its worker or this process was killed), it continues it
from its last checkpoint, as `mnist train --resume` does; a run killed before its first
epoch ended starts again from the start. The worker, not this process, records the
trial's result in the study.

Exit codes: 0 the run is finished (complete or pruned), 130 stopped by Ctrl-C (resumable),
anything else a failure, whose reason is the last line on stderr.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from mnist_cli.errors import Interrupted, MnistCliError, describe_error

PRUNED = "pruning"  # metrics.json's stopped_by of a pruned trial


class PruningReporter:
    """Reports each epoch's metric to the trial; asks to stop when its pruner says so."""

    stop_reason = PRUNED

    def __init__(self, trial: Any, metric: str) -> None:
        self.trial = trial
        self.metric = metric

    def epoch_ended(self, row: Mapping[str, Any]) -> bool:
        value = row.get(self.metric)
        if value is None:  # no validation set: nothing to prune on
            return False
        self.trial.report(float(value), int(row["epoch"]))
        return bool(self.trial.should_prune())


def run_trial(sweep_dir: str, number: int) -> None:
    import os

    from mnist_cli.config import load_config
    from mnist_cli.sweep.folder import open_sweep_folder
    from mnist_cli.sweep.study import STORAGE_VARIABLE, open_storage, open_study
    from mnist_cli.training.checkpoints import find_resume_point
    from mnist_cli.training.pipeline import train

    folder = open_sweep_folder(sweep_dir)
    sweep = folder.read()
    storage = open_storage(folder, os.environ.get(STORAGE_VARIABLE))
    study = open_study(sweep, storage)
    import optuna

    try:
        trial_id = storage.get_trial_id_from_study_id_trial_number(
            storage.get_study_id_from_name(sweep.name), number)
    except KeyError:
        raise MnistCliError(f"the study {sweep.name!r} has no trial {number}") from None
    reporter = PruningReporter(optuna.trial.Trial(study, trial_id), sweep.metric)
    run = folder.trial_run(number)
    if run is not None and run.finished:
        return
    if run is not None:
        resume = find_resume_point(run.path)
        train(resume.config, resume=resume, observers=[reporter])
        return
    config = load_config(folder.trial_config(number))
    train(config, observers=[reporter])


def main() -> None:
    if len(sys.argv) != 3 or not sys.argv[2].isdigit():
        sys.exit("usage: python -m mnist_cli.sweep.trial SWEEP_DIR TRIAL_NUMBER")
    try:
        run_trial(sys.argv[1], int(sys.argv[2]))
    except Interrupted as error:
        print(str(error), file=sys.stderr)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        sys.exit(Interrupted.exit_code)
    except MnistCliError as error:
        print(f"Error: {error}", file=sys.stderr)
        sys.exit(error.exit_code)
    except Exception as error:
        print(f"Error: unexpected {describe_error(error, 300)}", file=sys.stderr)
        raise


if __name__ == "__main__":
    main()
