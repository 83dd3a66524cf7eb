"""Resume, Ctrl-C, kill -9, a full disk, and determinism: a run that stops, however it stops,
continues to the very numbers an uninterrupted run of the same seed reaches.

Every run here trains one tiny config (784-32-10 with dropout, 6 epochs of 1800 samples,
`runtime.deterministic`), with the `fit` engine (which can stop and continue inside an
epoch) or the `fast` one (which stops at epoch ends); the reference is one uninterrupted
run of the same engine in this process. Runs that must be stopped from outside run in a
subprocess through tests/slow_train.py, which stretches batches, epochs and saves so that a
signal can land inside them; those processes share a JAX compilation cache, so each starts
in about a second instead of compiling for several.

Exact equality after a resume is a property of the JAX backend (see the README); the module
is skipped on the others.
"""

from __future__ import annotations

import copy
import errno
import json
import os
import random
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from conftest import runs_on_jax, stop_after_epoch
from PIL import Image

from mnist_cli.atomic_files import is_temporary
from mnist_cli.cli import cli
from mnist_cli.config import load_config
from mnist_cli.runs import CHECKPOINT_FILE, read_history
from mnist_cli.training.checkpoints import read_checkpoint

pytestmark = pytest.mark.slow  # real trainings in subprocesses, stopped and killed

if not runs_on_jax():
    pytest.skip("exact resume is a property of the JAX backend", allow_module_level=True)

EPOCHS = 6
BATCHES_PER_EPOCH = 29  # 1800 samples in batches of 64
CONFIG = {
    "name": "resume",
    "seed": 7,
    "data": {"subset": {"train": 2000, "test": 500}, "validation_split": 0.1},
    "model": {"layers": [784, 32, 10], "dropout": 0.1},
    "train": {"epochs": EPOCHS, "batch_size": 64, "engine": "fit"},
    "runtime": {"deterministic": True},
}
# Measurements of the process, not results of the training.
TIMING = {"seconds", "train_seconds", "samples_per_second", "peak_memory_mib"}
SLOW_TRAIN = Path(__file__).with_name("slow_train.py")


def numbers(run_dir: Path) -> tuple[list[dict], dict]:
    """Everything in history.csv and metrics.json except the timings."""
    history = [{key: value for key, value in row.items() if key not in TIMING}
               for row in read_history(run_dir / "history.csv")]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return history, {key: value for key, value in metrics.items() if key not in TIMING}


def only_run(output_root: Path) -> Path:
    (run_dir,) = output_root.iterdir()
    return run_dir


def write_config(folder: Path, mnist_path: Path, engine: str) -> Path:
    data = copy.deepcopy(CONFIG)
    data["data"]["path"] = str(mnist_path)
    data["train"]["engine"] = engine
    data["output"] = {"root": str(folder / f"reference-{engine}")}
    config_path = folder / f"resume-{engine}.yaml"
    config_path.write_text(yaml.safe_dump(data))
    return config_path


def train_reference(folder: Path, config_path: Path, engine: str) -> Path:
    """The uninterrupted run, in this process."""
    result = CliRunner().invoke(cli, ["train", "-c", str(config_path)])
    assert result.exit_code == 0, result.output
    return only_run(folder / f"reference-{engine}")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, mnist_path: Path) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("resume")
    return folder, write_config(folder, mnist_path, "fit")


@pytest.fixture(scope="module")
def reference(setup: tuple[Path, Path]) -> Path:
    return train_reference(*setup, "fit")


@pytest.fixture(scope="module")
def fast_setup(setup: tuple[Path, Path], mnist_path: Path) -> tuple[Path, Path]:
    folder, _ = setup
    return folder, write_config(folder, mnist_path, "fast")


@pytest.fixture(scope="module")
def fast_reference(fast_setup: tuple[Path, Path]) -> Path:
    return train_reference(*fast_setup, "fast")


class Training:
    """`mnist train ...` in a subprocess (through slow_train.py), its output in a log file."""

    count = 0

    def __init__(self, arguments: list[str], folder: Path, batch_delay: float = 0.0,
                 save_delay: float = 0.0, epoch_delay: float = 0.0) -> None:
        Training.count += 1
        self.log = folder / f"process-{Training.count}.log"
        environment = dict(
            os.environ,
            KERAS_BACKEND="jax",
            PYTHONUNBUFFERED="1",
            MNIST_TEST_BATCH_DELAY=str(batch_delay),
            MNIST_TEST_SAVE_DELAY=str(save_delay),
            MNIST_TEST_EPOCH_DELAY=str(epoch_delay),
            JAX_COMPILATION_CACHE_DIR=str(folder / "jax-cache"),
            JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        )
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(SLOW_TRAIN), "train", *arguments],
                stdout=log, stderr=subprocess.STDOUT, env=environment,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout: float = 180.0) -> bool:
        """Until `pattern` appears in the output: False if the process ended first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if re.search(pattern, self.output()):
                return True
            if self.process.poll() is not None:
                return bool(re.search(pattern, self.output()))
            time.sleep(0.005)
        raise AssertionError(f"no {pattern!r} after {timeout} s:\n{self.output()}")

    def finish(self, timeout: float = 180.0) -> int:
        return self.process.wait(timeout=timeout)


def assert_complete(run_dir: Path) -> int:
    """Every file of the run directory reads back whole; returns how many temporary files
    (of a save cut short) lie beside them."""
    import keras

    temporaries = [path for path in run_dir.iterdir() if is_temporary(path.name)]
    load_config(run_dir / "config.yaml")
    history = read_history(run_dir / "history.csv") if (run_dir / "history.csv").exists() else []
    assert [row["epoch"] for row in history] == list(range(1, len(history) + 1))
    assert all(row["loss"] is not None and row["val_accuracy"] is not None for row in history)
    if (run_dir / CHECKPOINT_FILE).exists():
        checkpoint = read_checkpoint(run_dir / CHECKPOINT_FILE)
        # history.csv is written just before the checkpoint: at most one epoch ahead of it.
        assert checkpoint.epochs_done <= len(history) <= checkpoint.epochs_done + 1
        assert history[:checkpoint.epochs_done] == [
            {key: row[key] for key in history[0]} for row in checkpoint.history]
    if (run_dir / "model.keras").exists():
        keras.saving.load_model(run_dir / "model.keras", compile=False, safe_mode=True)
    for name in ("learning_curves.png", "errors.png"):
        if (run_dir / name).exists():
            with Image.open(run_dir / name) as image:
                image.verify()
    if (run_dir / "metrics.json").exists():
        json.loads((run_dir / "metrics.json").read_text())
    return len(temporaries)


def test_two_runs_give_identical_numbers(setup, reference):
    """Determinism: a second run of the same config, in a fresh process, matches exactly."""
    folder, config_path = setup
    training = Training(["-c", str(config_path), "--out", str(folder / "again")], folder)
    assert training.finish() == 0, training.output()
    again = only_run(folder / "again")
    assert numbers(again) == numbers(reference)
    first, second = (json.loads((run / "metrics.json").read_text())
                     for run in (reference, again))
    print(f"\ndeterminism: metrics.json of two runs: test_accuracy {first['test_accuracy']} / "
          f"{second['test_accuracy']}, test_loss {first['test_loss']} / {second['test_loss']}, "
          f"identical except timings: {numbers(again)[1] == numbers(reference)[1]}")


def test_ctrl_c_in_an_epoch_saves_there_and_the_printed_command_resumes(setup, reference):
    folder, config_path = setup
    training = Training(["-c", str(config_path), "--out", str(folder / "sigint")], folder,
                        batch_delay=0.02)
    assert training.wait_for(r"epoch 2/6")
    time.sleep(0.2)  # into epoch 3: 29 batches of 20 ms
    training.process.send_signal(signal.SIGINT)
    assert training.finish() == 130, training.output()
    output = training.output()
    assert "Traceback" not in output
    command = re.search(r"Resume with: (mnist train --resume .+)", output).group(1)
    run_dir = Path(shlex.split(command)[-1])
    checkpoint = read_checkpoint(run_dir / CHECKPOINT_FILE)
    assert checkpoint.epochs_done == 2
    assert 0 < checkpoint.batches_done < BATCHES_PER_EPOCH, "not stopped inside epoch 3"
    assert f"in epoch 3 after batch {checkpoint.batches_done}" in output
    assert assert_complete(run_dir) == 0

    result = CliRunner().invoke(cli, shlex.split(command)[1:])
    assert result.exit_code == 0, result.output
    assert f"after epoch 2 and {checkpoint.batches_done} batches of epoch 3" in result.output
    assert numbers(run_dir) == numbers(reference)
    assert not (run_dir / CHECKPOINT_FILE).exists()


# Where each kill lands: after an epoch line, at a random moment inside the next epoch;
# inside a save of the checkpoint, of history.csv or of model.keras (the process sleeps
# between writing the temporary file and renaming it); or anywhere after start-up.
KILL_POINTS = ["in an epoch", "saving .checkpoint", "in an epoch", "saving .history",
               "anywhere", "saving .model"]


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(),
                    reason="slow_train.py names the file being saved through /proc")
@pytest.mark.parametrize("engine", ["fit", "fast"])
def test_kill_9_at_random_points_then_resume(engine, request):
    folder, config_path = request.getfixturevalue("setup" if engine == "fit" else "fast_setup")
    reference = request.getfixturevalue("reference" if engine == "fit" else "fast_reference")
    # Stretch what a kill should land in: the batches of `fit`, the epochs of `fast`.
    delays = {"batch_delay": 0.01} if engine == "fit" else {"epoch_delay": 0.1}
    # Not random.randrange: training seeds Python's generator. Set the variable to replay.
    seed = int(os.environ.get("MNIST_TEST_FAULT_SEED") or int.from_bytes(os.urandom(3), "big"))
    rng = random.Random(seed)
    output_root = folder / f"killed-{engine}"
    arguments = ["-c", str(config_path), "--out", str(output_root)]
    tried, survived, temporaries, progress = 0, 0, 0, []
    for point in KILL_POINTS:
        training = Training(arguments, folder, save_delay=0.15, **delays)
        if point == "in an epoch":
            reached = training.wait_for(r"epoch \d/6")
            time.sleep(rng.uniform(0.0, 0.5))
        elif point == "anywhere":
            reached = training.wait_for(r"Run directory|Resuming")
            time.sleep(rng.uniform(0.0, 2.0))
        else:
            reached = training.wait_for("saving " + re.escape(point.split()[1]))
        if not reached or training.process.poll() is not None:
            raise AssertionError(f"(seed {seed}) ended before the kill {point!r}:\n"
                                 f"{training.output()}")
        training.process.kill()
        training.finish()
        tried += 1
        run_dir = only_run(output_root)
        temporaries += assert_complete(run_dir)
        checkpoint_path = run_dir / CHECKPOINT_FILE
        progress.append(read_checkpoint(checkpoint_path).epochs_done
                        if checkpoint_path.exists() else 0)
        survived += 1
        arguments = ["--resume", str(run_dir)]

    result = CliRunner().invoke(cli, ["train", *arguments])
    assert result.exit_code == 0, result.output
    assert not [path for path in run_dir.iterdir() if is_temporary(path.name)]
    assert numbers(run_dir) == numbers(reference), f"seed {seed}"
    print(f"\nfault injection ({engine} engine, seed {seed}): {tried} kill -9 points tried, "
          f"{survived} survived (every file complete, resume finished with the reference's "
          f"numbers); epochs saved at each kill {progress}; {temporaries} half-written "
          "temporary files found and cleaned")


@pytest.mark.parametrize("engine", ["fit", "fast"])
def test_stop_at_an_epoch_end_and_a_full_disk_then_resume(engine, request, monkeypatch):
    """The epoch-boundary stop (Ctrl-C as the fast engine sees it: `request_stop` lands at
    the end of epoch 2), a disk that fills up while a checkpoint is written, and a resume
    against other data; the resumed run ends with the uninterrupted run's very numbers."""
    folder, config_path = request.getfixturevalue("setup" if engine == "fit" else "fast_setup")
    reference = request.getfixturevalue("reference" if engine == "fit" else "fast_reference")
    output_root = folder / f"in-process-{engine}"
    runner = CliRunner()

    stop_after_epoch(monkeypatch, 1)
    result = runner.invoke(cli, ["train", "-c", str(config_path), "--out", str(output_root)])
    assert result.exit_code == 130, result.output
    assert "with epochs 1-2 of 6 saved" in result.output
    run_dir = only_run(output_root)
    assert f"Resume with: mnist train --resume {run_dir}" in result.output
    monkeypatch.undo()

    # The disk fills up while epoch 4's checkpoint is written, half-way through the file.
    real_savez = np.savez

    def full_disk(handle, **arrays):
        if len(read_history(run_dir / "history.csv")) == 4:
            handle.write(b"PK\x03\x04 the first bytes of a checkpoint")
            raise OSError(errno.ENOSPC, "No space left on device")
        real_savez(handle, **arrays)

    monkeypatch.setattr(np, "savez", full_disk)
    result = runner.invoke(cli, ["train", "--resume", str(run_dir)])
    assert result.exit_code == 1, result.output
    assert result.output.strip().splitlines()[-1].startswith("Error: no space left on the device")
    assert "Traceback" not in result.output
    monkeypatch.undo()
    assert assert_complete(run_dir) == 0  # the temporary file was removed
    assert read_checkpoint(run_dir / CHECKPOINT_FILE).epochs_done == 3

    # Resuming against other data is refused, and changes nothing.
    saved_config = (run_dir / "config.yaml").read_text()
    (run_dir / "config.yaml").write_text(saved_config.replace("train: 2000", "train: 1900"))
    result = runner.invoke(cli, ["train", "--resume", str(run_dir)])
    assert result.exit_code == 1 and "the training data differs" in result.output
    (run_dir / "config.yaml").write_text(saved_config)

    result = runner.invoke(cli, ["train", "--resume", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert numbers(run_dir) == numbers(reference)


def test_fast_engine_ctrl_c_ends_the_epoch_saves_and_resumes_exactly(fast_setup, fast_reference):
    """A real SIGINT in the middle of a fast-engine epoch, in another process: the epoch
    runs to its end, its checkpoint is saved, the printed command resumes it, and the run
    ends with the uninterrupted run's numbers (the dropout masks continue from the saved
    seed generator state, the batches from `epoch_permutation`)."""
    folder, config_path = fast_setup
    training = Training(["-c", str(config_path), "--out", str(folder / "fast-sigint")], folder,
                        epoch_delay=0.4)
    assert training.wait_for(r"epoch 2/6")
    time.sleep(0.2)  # inside epoch 3, which takes 0.4 s
    training.process.send_signal(signal.SIGINT)
    assert training.finish() == 130, training.output()
    output = training.output()
    assert "Traceback" not in output
    assert "stopping at the end of the current epoch" in output
    saved = int(re.search(r"with epochs 1-(\d) of 6 saved", output).group(1))
    assert saved in (3, 4)  # epoch 3 finished (4 if the signal came late)
    command = re.search(r"Resume with: (mnist train --resume .+)", output).group(1)
    run_dir = Path(shlex.split(command)[-1])
    assert read_checkpoint(run_dir / CHECKPOINT_FILE).epochs_done == saved
    assert assert_complete(run_dir) == 0

    result = CliRunner().invoke(cli, shlex.split(command)[1:])
    assert result.exit_code == 0, result.output
    assert f"after epoch {saved}" in result.output
    assert numbers(run_dir) == numbers(fast_reference)
    assert numbers(run_dir)[1]["engine"] == "fast"
