"""`mnist sweep`: grid and random sweeps, pruning, kill -9 of the sweep and of a trial then
resume, two workers on one journal and on one PostgreSQL study, `--seeds`, and the study
read back with Optuna's own API.

Every trial is a tiny run (784-16-10 or so, 1000-2000 images, 1-6 epochs) trained in its own
process, as `mnist sweep` always does; those processes share the session's JAX compilation
cache. The PostgreSQL test starts its own server in a temporary folder, and is skipped where
PostgreSQL is not installed.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from conftest import write_tiny_config

from mnist_cli.cli import cli
from mnist_cli.runs import read_history
from mnist_cli.training.checkpoints import read_checkpoint

optuna = pytest.importorskip("optuna", reason='mnist sweep needs the sweep extra: '
                                              'pip install -e ".[sweep]"')

PROJECT = Path(__file__).resolve().parent.parent


def write_sweep(folder: Path, mnist_path: Path, config: dict | None = None, **settings) -> Path:
    """A sweep file beside a tiny base config (`config` changes its sections)."""
    write_tiny_config(folder / "base.yaml", mnist_path, folder / "unused",
                      **({"train": {"epochs": 2, "batch_size": 100},
                          "data": {"subset": {"train": 1000, "test": 200}},
                          "model": {"layers": [784, 16, 10]}} | (config or {})))
    sweep = {"name": "tiny-sweep", "base": "base.yaml"} | settings
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return path


def sweep_command(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "mnist_cli", "sweep", *arguments]


def only_sweep_folder(output_root: Path) -> Path:
    (folder,) = [path for path in output_root.iterdir() if path.is_dir()]
    return folder


def load_study(folder: Path, storage: str | None = None):
    """The study as Optuna itself reads it."""
    if storage is None:
        from optuna.storages.journal import JournalFileBackend

        storage = optuna.storages.JournalStorage(JournalFileBackend(str(folder / "study.journal")))
    return optuna.load_study(study_name="tiny-sweep", storage=storage)


def trial_runs(folder: Path) -> dict[int, list[Path]]:
    """The run directories in a sweep folder, by trial number."""
    runs: dict[int, list[Path]] = {}
    for path in folder.iterdir():
        if path.is_dir() and path.name.startswith("trial-"):
            runs.setdefault(int(path.name.split("-")[1]), []).append(path)
    return runs


def assert_complete_and_unique(folder: Path, study, wanted: int) -> None:
    """Exactly `wanted` finished trials, numbered 0..wanted-1, each one finished run
    directory whose config holds the trial's parameters."""
    states = optuna.trial.TrialState
    finished = [trial for trial in study.get_trials() if trial.state in
                (states.COMPLETE, states.PRUNED)]
    assert sorted(trial.number for trial in finished) == list(range(wanted))
    assert not [trial for trial in study.get_trials() if trial.state == states.RUNNING]
    runs = trial_runs(folder)
    for trial in finished:
        (run,) = runs[trial.number]
        assert (run / "metrics.json").is_file()
        config = yaml.safe_load((run / "config.yaml").read_text())
        if "train.learning_rate" in trial.params:
            assert config["train"]["learning_rate"] == trial.params["train.learning_rate"]


@pytest.mark.slow
def test_grid_sweep_tries_every_point_once_and_agrees_with_optuna(tmp_path, mnist_path):
    sweep_file = write_sweep(tmp_path, mnist_path, sampler="grid", space={
        "train.learning_rate": {"choices": [0.003, 0.03]},
        "model.layers.1": {"choices": [8, 16]},
    })
    result = CliRunner().invoke(cli, ["sweep", str(sweep_file), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    folder = only_sweep_folder(tmp_path / "out")
    study = load_study(folder)
    assert_complete_and_unique(folder, study, 4)
    points = {(trial.params["train.learning_rate"], trial.params["model.layers.1"])
              for trial in study.trials}
    assert points == {(0.003, 8), (0.003, 16), (0.03, 8), (0.03, 16)}
    for trial in study.trials:  # each trial's run has the width the sweep gave it
        (run,) = trial_runs(folder)[trial.number]
        layers = yaml.safe_load((run / "config.yaml").read_text())["model"]["layers"]
        assert layers == [784, trial.params["model.layers.1"], 10]
        # Its value is the last epoch's validation accuracy, never a test-set number.
        assert trial.value == read_history(run / "history.csv")[-1]["val_accuracy"]

    # trials.csv and the printed table say what the study says.
    with open(folder / "trials.csv", newline="") as handle:
        table = {int(row["trial"]): row for row in csv.DictReader(handle)}
    assert set(table) == {trial.number for trial in study.trials}
    for trial in study.trials:
        row = table[trial.number]
        assert float(row["value"]) == trial.value
        assert float(row["train.learning_rate"]) == trial.params["train.learning_rate"]
        assert int(row["model.layers.1"]) == trial.params["model.layers.1"]
        metrics = json.loads((folder / row["run_dir"] / "metrics.json").read_text())
        assert float(row["test_accuracy"]) == metrics["test_accuracy"]
    best = study.best_trial
    first_row = [line for line in result.output.splitlines()
                 if line.startswith("trial-") and ":" not in line][0]  # the table's rows
    assert first_row.split()[0] == f"trial-{best.number:04d}"
    assert f"{best.value:.4f}" in first_row
    assert (folder / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Every trial is an ordinary run: `mnist runs SWEEP_DIR` lists them, complete.
    listing = CliRunner().invoke(cli, ["runs", str(folder), "--json"])
    assert listing.exit_code == 0, listing.output
    listed = json.loads(listing.output)
    assert len(listed) == 4 and all(run["status"] == "complete" for run in listed)


@pytest.mark.slow
def test_random_sweep_prunes_bad_learning_rates(tmp_path, mnist_path):
    sweep_file = write_sweep(
        tmp_path, mnist_path, config={"train": {"epochs": 4, "batch_size": 100}},
        sampler="random", seed=3, trials=5,
        space={"train.learning_rate": {"low": 1e-5, "high": 3e-2, "log": True}},
        pruning={"method": "median", "startup_trials": 2, "warmup_epochs": 0},
    )
    result = CliRunner().invoke(cli, ["sweep", str(sweep_file), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    folder = only_sweep_folder(tmp_path / "out")
    study = load_study(folder)
    assert_complete_and_unique(folder, study, 5)
    pruned = [trial for trial in study.trials
              if trial.state == optuna.trial.TrialState.PRUNED]
    assert pruned, result.output
    for trial in pruned:
        (run,) = trial_runs(folder)[trial.number]
        metrics = json.loads((run / "metrics.json").read_text())
        # Pruned at an epoch end: fewer epochs than asked, and the run says why it stopped.
        assert metrics["stopped_by"] == "pruning"
        assert metrics["epochs_completed"] < 4
        assert len(read_history(run / "history.csv")) == metrics["epochs_completed"]
        completed = [other for other in study.trials if other.state.name == "COMPLETE"]
        epoch = metrics["epochs_completed"]
        median = statistics.median(other.intermediate_values[epoch] for other in completed
                                   if other.number < trial.number) if completed else None
        assert median is None or trial.intermediate_values[epoch] <= median
    assert "pruned" in result.output


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _trial_processes(folder: Path) -> list[int]:
    """The ids of the live trial processes of a sweep folder (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            arguments = (entry / "cmdline").read_bytes().split(b"\0")
            if b"mnist_cli.sweep.trial" in arguments and str(folder).encode() in arguments:
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    found.append(int(entry.name))
    return found


def _mid_trial(folder: Path, number: int) -> bool:
    """Whether trial `number` has saved an epoch but not finished."""
    runs = trial_runs(folder).get(number, [])
    return bool(runs) and not (runs[0] / "metrics.json").exists() and (
        (runs[0] / "checkpoint.npz").exists() and len(read_history(runs[0] / "history.csv")))


SLOW_TRIALS = {"train": {"epochs": 6, "batch_size": 16, "engine": "fit"},
               "data": {"subset": {"train": 2000, "test": 200}}}
SLOW_SPACE = {"train.learning_rate": {"choices": [0.001, 0.002, 0.004]}}


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the trial processes in /proc")
def test_kill_9_of_the_sweep_then_resume_ends_with_exactly_the_trials_asked(tmp_path,
                                                                             mnist_path):
    sweep_file = write_sweep(tmp_path, mnist_path, config=SLOW_TRIALS, sampler="grid",
                             space=SLOW_SPACE)
    out = tmp_path / "out"
    process = subprocess.Popen(sweep_command(str(sweep_file), "--out", str(out)),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=PROJECT)
    try:
        _wait_for(lambda: out.is_dir() and any(out.iterdir())
                  and _mid_trial(only_sweep_folder(out), 1), 240, "trial 1 to save an epoch")
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    folder = only_sweep_folder(out)
    # The trial process died with its worker: nothing trains on in the background.
    _wait_for(lambda: not _trial_processes(folder), 10, "the trial process to die")
    # What the resume starts from: the checkpoint (history.csv may be one epoch ahead when
    # the kill fell between the two saves).
    epochs_saved = read_checkpoint(trial_runs(folder)[1][0] / "checkpoint.npz").epochs_done

    resumed = subprocess.run(sweep_command("--resume", str(folder)), capture_output=True,
                             text=True, cwd=PROJECT, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "trial-0001: its worker stopped; continuing it" in resumed.stdout
    assert_complete_and_unique(folder, load_study(folder), 3)
    # Trial 1 continued in its own run directory from its checkpoint, not from scratch.
    (run,) = trial_runs(folder)[1]
    log = (folder / "trial-0001.log").read_text()
    after_resume = log.split(f"Resuming {run} after epoch {epochs_saved}", 1)[1]
    assert f"epoch {epochs_saved + 1}/6" in after_resume and "epoch 1/6" not in after_resume
    assert [row["epoch"] for row in read_history(run / "history.csv")] == list(range(1, 7))


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the trial processes in /proc")
def test_kill_9_of_a_trial_is_continued_by_its_worker(tmp_path, mnist_path):
    sweep_file = write_sweep(tmp_path, mnist_path, config=SLOW_TRIALS, sampler="grid",
                             space={"train.learning_rate": {"choices": [0.001, 0.002]}})
    out = tmp_path / "out"
    process = subprocess.Popen(sweep_command(str(sweep_file), "--out", str(out)),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               cwd=PROJECT)
    try:
        _wait_for(lambda: out.is_dir() and any(out.iterdir())
                  and _mid_trial(only_sweep_folder(out), 0), 240, "trial 0 to save an epoch")
        folder = only_sweep_folder(out)
        (trial_process,) = _trial_processes(folder)
        os.kill(trial_process, signal.SIGKILL)
        output, _ = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output
    assert "trial-0000: its process was stopped (killed by SIGKILL); continuing it" in output
    assert_complete_and_unique(folder, load_study(folder), 2)
    assert "Resuming" in (folder / "trial-0000.log").read_text()


@pytest.mark.slow
def test_two_workers_share_one_journal(tmp_path, mnist_path):
    sweep_file = write_sweep(tmp_path, mnist_path, sampler="random", trials=3,
                             config={"train": {"epochs": 3, "batch_size": 50}},
                             space={"train.learning_rate": {"low": 1e-3, "high": 1e-2}})
    out = tmp_path / "out"
    first = subprocess.Popen(sweep_command(str(sweep_file), "--out", str(out)),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             cwd=PROJECT)
    _wait_for(lambda: out.is_dir() and any(out.iterdir())
              and (only_sweep_folder(out) / "study.journal").exists(), 60, "the study")
    folder = only_sweep_folder(out)
    second = subprocess.run(sweep_command("--resume", str(folder)), capture_output=True,
                            text=True, cwd=PROJECT, timeout=300)
    first_output, _ = first.communicate(timeout=300)
    assert first.returncode == 0 and second.returncode == 0, first_output + second.stdout
    study = load_study(folder)
    assert_complete_and_unique(folder, study, 3)
    assert "started" in first_output and "started" in second.stdout  # both worked
    workers = {trial.user_attrs["worker"] for trial in study.trials}
    assert len(workers) == 2


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _postgres_program(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(candidates[-1]) if candidates else None


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server of its own in a temporary folder, on a loopback port. PostgreSQL
    refuses to run as root, so as root it runs as the `postgres` user."""
    initdb, pg_ctl = _postgres_program("initdb"), _postgres_program("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    pytest.importorskip("psycopg", reason='the PostgreSQL driver: pip install -e ".[sweep]"')
    as_user: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="mnist-cli-postgres-"))
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser: cannot start PostgreSQL")
        try:
            shutil.chown(folder, user="postgres")
        except (LookupError, PermissionError):
            pytest.skip("running as root and there is no `postgres` user to run PostgreSQL")
        as_user = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    data = folder / "data"
    try:
        created = subprocess.run([*as_user, initdb, "-D", str(data), "-A", "trust", "-U",
                                  "postgres", "--no-sync"], capture_output=True, text=True)
        if created.returncode != 0:
            pytest.skip(f"initdb failed: {created.stderr.strip()[-300:]}")
        started = subprocess.run(
            [*as_user, pg_ctl, "-D", str(data), "-l", str(folder / "server.log"), "-w", "-o",
             f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off", "start"],
            capture_output=True, text=True)
        if started.returncode != 0:
            pytest.skip(f"PostgreSQL did not start: {started.stderr.strip()[-300:]}")
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
def test_two_workers_share_one_postgresql_study(tmp_path, mnist_path, postgres_url):
    sweep_file = write_sweep(tmp_path, mnist_path, sampler="random", trials=3,
                             config={"train": {"epochs": 3, "batch_size": 50}},
                             space={"train.learning_rate": {"low": 1e-3, "high": 1e-2}})
    workers = [subprocess.Popen(
        sweep_command(str(sweep_file), "--storage", postgres_url, "--out",
                      str(tmp_path / f"machine-{index}")),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=PROJECT)
        for index in range(2)]
    outputs = [worker.communicate(timeout=300)[0] for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], "\n".join(outputs)
    study = load_study(tmp_path, storage=postgres_url.replace("postgresql://",
                                                              "postgresql+psycopg://"))
    finished = [trial for trial in study.trials if trial.state.name == "COMPLETE"]
    assert sorted(trial.number for trial in finished) == [0, 1, 2]
    # Each trial's run lives in the folder of the worker that ran it, and in no other.
    by_folder = {index: trial_runs(only_sweep_folder(tmp_path / f"machine-{index}"))
                 for index in range(2)}
    assert all(by_folder.values()), outputs  # both workers ran trials
    numbers = sorted(number for runs in by_folder.values() for number in runs)
    assert numbers == [0, 1, 2]
    # The worker that finishes last prints the whole study: 3 complete trials.
    assert any("3 complete trials" in output for output in outputs), outputs


@pytest.mark.slow
def test_seeds_reports_mean_and_standard_deviation(tmp_path, mnist_path):
    """Also for a config that holds out no validation set (the record config's case): its
    trials record the training accuracy."""
    config = write_tiny_config(tmp_path / "config.yaml", mnist_path, tmp_path / "unused",
                               train={"epochs": 1, "batch_size": 100}, seed=5,
                               model={"layers": [784, 16, 10]},
                               data={"subset": {"train": 1000, "test": 200},
                                     "validation_split": 0})
    result = CliRunner().invoke(cli, ["sweep", "--seeds", "2", "-c", str(config),
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    folder = only_sweep_folder(tmp_path / "out")
    summary = json.loads((folder / "seeds.json").read_text())
    runs = [run for (run,) in trial_runs(folder).values()]
    seeds = sorted(yaml.safe_load((run / "config.yaml").read_text())["seed"] for run in runs)
    assert seeds == [5, 6]
    accuracies = [json.loads((run / "metrics.json").read_text())["test_accuracy"]
                  for run in runs]
    assert summary["test_accuracy"]["mean"] == pytest.approx(statistics.fmean(accuracies))
    assert summary["test_accuracy"]["std"] == pytest.approx(statistics.stdev(accuracies))
    assert summary["test_accuracy"]["count"] == 2
    assert "test_accuracy" in result.output and "±" in result.output
    assert yaml.safe_load((folder / "sweep.yaml").read_text())["metric"] == "accuracy"


@pytest.mark.parametrize(("settings", "message"), [
    ({"space": {"train.learnig_rate": {"choices": [0.1]}}, "sampler": "grid"},
     "train.learnig_rate: unknown key"),
    ({"space": {"train.learning_rate": {"low": 0.1, "high": 0.01}}, "trials": 2},
     "low (0.1) must be below high (0.01)"),
    ({"space": {"train.learning_rate": {"low": 0.001, "high": 0.1, "log": True}},
      "sampler": "grid"}, "a grid needs choices"),
    ({"space": {"train.learning_rate": {"choices": [0.1]}}, "metric": "test_accuracy",
      "trials": 1}, "metric: must be one of"),
    # Refused before trial 0 trains, not after it: no validation set to optimise on.
    ({"space": {"train.learning_rate": {"choices": [0.1]}}, "sampler": "grid",
      "set": {"data.validation_split": 0}}, "metric: val_accuracy needs a validation set"),
])
def test_bad_sweep_files_are_one_error_line(tmp_path, mnist_path, settings, message):
    sweep_file = write_sweep(tmp_path, mnist_path, **settings)
    result = CliRunner().invoke(cli, ["sweep", str(sweep_file), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()  # nothing made for a sweep that cannot run


def test_grid_points_of_ranges_stay_inside_them():
    from mnist_cli.sweep.schema import Parameter

    assert Parameter(low=0.1, high=1.5, step=0.5).grid_values("k") == [0.1, 0.6, 1.1]
    assert Parameter(low=0.0, high=0.3, step=0.1).grid_values("k") == [0.0, 0.1, 0.2, 0.3]
    assert Parameter(low=2, high=10, step=4).grid_values("k") == [2, 6, 10]
    assert Parameter(low=1, high=3).grid_values("k") == [1, 2, 3]


@pytest.mark.slow
@pytest.mark.parametrize("bundled", sorted((PROJECT / "sweeps").glob("*.yaml")),
                         ids=lambda path: path.stem)
def test_every_bundled_sweep_runs_to_its_end(tmp_path, mnist_path, bundled):
    """Each sweep file as shipped (its base config, space, sampler, metric and pruning), on
    600 digits for 2 epochs and 2 trials, so that one which cannot finish is found here. A
    sweep whose space and set leave the model alone trains a small net: the record net's 12
    million weights would only slow this down."""
    sweep = yaml.safe_load(bundled.read_text())
    sweep["base"] = str((bundled.parent / sweep["base"]).resolve())
    base = yaml.safe_load(Path(sweep["base"]).read_text())
    shrink = {"data.path": str(mnist_path), "data.subset": {"train": 600, "test": 200},
              "train.epochs": 2}
    if base.get("train", {}).get("schedule", {}).get("warmup_epochs"):
        shrink["train.schedule.warmup_epochs"] = 1
    if not any(key.startswith("model.") for key in [*sweep["space"], *sweep.get("set", {})]):
        shrink["model.layers"] = [784, 32, 10]
    sweep["set"] = {**sweep.get("set", {}), **shrink}
    sweep["trials"] = 2
    path = tmp_path / bundled.name
    path.write_text(yaml.safe_dump(sweep))
    result = CliRunner().invoke(cli, ["sweep", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "2 complete trials" in result.output, result.output
    folder = only_sweep_folder(tmp_path / "out")
    assert len(trial_runs(folder)) == 2 and (folder / "trials.csv").is_file()


@pytest.mark.parametrize("lost", ["duplicate row", "relation already exists"])
def test_a_worker_that_loses_the_race_to_create_the_tables_opens_them(monkeypatch, lost):
    """Two workers on an empty database both create Optuna's tables; the loser sees a
    duplicate row (IntegrityError) or PostgreSQL's DuplicateTable (ProgrammingError) and
    opens the tables the winner made."""
    import optuna
    import sqlalchemy.exc

    from mnist_cli.sweep import study

    error = (sqlalchemy.exc.IntegrityError("INSERT", {}, Exception("duplicate key"))
             if lost == "duplicate row" else
             sqlalchemy.exc.ProgrammingError("CREATE TABLE", {}, Exception(
                 'relation "studies" already exists')))
    calls = []

    def storage(url):
        calls.append(url)
        if len(calls) == 1:
            raise error
        return "opened"

    monkeypatch.setattr(optuna.storages, "RDBStorage", storage)
    monkeypatch.setattr(study.time, "sleep", lambda seconds: None)
    assert study.open_storage(None, "postgresql://u:p@host/db") == "opened"
    assert len(calls) == 2


def test_other_database_errors_are_one_line_at_once(monkeypatch):
    import optuna
    import sqlalchemy.exc

    from mnist_cli.sweep import study

    def storage(url):
        raise sqlalchemy.exc.ProgrammingError("SELECT", {}, Exception("permission denied"))

    monkeypatch.setattr(optuna.storages, "RDBStorage", storage)
    with pytest.raises(study.SweepStorageError, match="permission denied"):
        study.open_storage(None, "postgresql://u:secret@host/db")
