"""The sweep folder's layout: its file names, creating and opening one.

```
<root>/<name>-<timestamp>/
  sweep.yaml              the resolved sweep (settings and the whole base config)
  study.journal           the Optuna study (journal storage), unless --storage names a database
  trial-0003.yaml         the config of trial 3 (`mnist train -c` runs it again by hand)
  trial-0003.log          what its training printed
  trial-0003-<timestamp>/ its ordinary run directory
  trials.csv, sweep.png   every trial, and the picture of the sweep
  seeds.json              with --seeds: mean and standard deviation of every metric
```

Trials are run directories directly inside the folder, so `mnist runs SWEEP_DIR` lists them.
"""

from __future__ import annotations

from pathlib import Path

from mnist_cli.atomic_files import write_text_atomic
from mnist_cli.errors import RunDirError
from mnist_cli.runs import RunDir, create_run_dir
from mnist_cli.sweep.schema import SavedSweep, read_saved_sweep

SWEEP_FILE = "sweep.yaml"
JOURNAL_FILE = "study.journal"
TRIALS_TABLE = "trials.csv"
FIGURE = "sweep.png"
SEEDS_SUMMARY = "seeds.json"


def trial_name(number: int) -> str:
    return f"trial-{number:04d}"


class SweepFolder:
    """Paths of one sweep folder."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def sweep(self) -> Path:
        return self.path / SWEEP_FILE

    @property
    def journal(self) -> Path:
        return self.path / JOURNAL_FILE

    @property
    def table(self) -> Path:
        return self.path / TRIALS_TABLE

    @property
    def figure(self) -> Path:
        return self.path / FIGURE

    @property
    def seeds_summary(self) -> Path:
        return self.path / SEEDS_SUMMARY

    def trial_config(self, number: int) -> Path:
        return self.path / f"{trial_name(number)}.yaml"

    def trial_log(self, number: int) -> Path:
        return self.path / f"{trial_name(number)}.log"

    def trial_run(self, number: int) -> RunDir | None:
        """The run directory trial `number` made here, if it got that far."""
        found = sorted(self.path.glob(f"{trial_name(number)}-*/"))
        runs = [RunDir(path) for path in found if RunDir(path).is_run]
        return runs[-1] if runs else None

    def read(self) -> SavedSweep:
        return read_saved_sweep(self.sweep)


def create_sweep_folder(output_root: str | Path, sweep: SavedSweep) -> SweepFolder:
    """A new `<output_root>/<name>-<timestamp>` folder holding `sweep.yaml`."""
    folder = SweepFolder(create_run_dir(output_root, sweep.name))
    write_text_atomic(folder.sweep, sweep.to_yaml())
    return folder


def open_sweep_folder(path: str | Path) -> SweepFolder:
    folder = SweepFolder(path)
    if not folder.path.is_dir():
        raise RunDirError(f"{folder.path}: no such sweep folder")
    if not folder.sweep.is_file():
        raise RunDirError(f"{folder.path}: not a sweep folder (no {SWEEP_FILE}); pass a "
                          "folder made by `mnist sweep`")
    return folder
