"""A newcomer's first hour, through the CLI: a closed pipe, Ctrl-C and a closed terminal,
errors that name where a value came from, `latest`, the words on screen, the offline
message."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import write_tiny_config

from mnist_cli.cli import cli

SLOW_TRAIN = Path(__file__).with_name("slow_train.py")


def tiny(tmp_path: Path, mnist_path: Path, **sections) -> Path:
    return write_tiny_config(tmp_path / "tiny.yaml", mnist_path, tmp_path / "outputs",
                             **sections)


def training_process(config: Path, epoch_delay: float = 0.0) -> subprocess.Popen:
    """`mnist train -c config` in its own process, stdout and stderr into one pipe."""
    environment = {**os.environ, "MNIST_TEST_EPOCH_DELAY": str(epoch_delay)}
    return subprocess.Popen([sys.executable, str(SLOW_TRAIN), "train", "-c", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=environment)


def read_until(process: subprocess.Popen, text: str) -> None:
    for line in process.stdout:
        if text in line.decode():
            return
    raise AssertionError(f"the output never said {text!r}")


def only_run(output_root: Path) -> Path:
    (run_dir,) = output_root.iterdir()
    return run_dir


# ------------------------------------------------------------------------- robustness


@pytest.mark.slow
def test_training_goes_on_to_the_end_when_the_reader_of_stdout_goes_away(tmp_path,
                                                                           mnist_path):
    """`mnist train ... | head -1`: the pipe closes after the first line."""
    process = training_process(tiny(tmp_path, mnist_path, train={"epochs": 3}))
    process.stdout.readline()
    process.stdout.close()
    assert process.wait(timeout=300) == 0
    run_dir = only_run(tmp_path / "outputs")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs_completed"] == 3
    assert not (run_dir / "checkpoint.npz").exists()


@pytest.mark.slow
@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGHUP],
                         ids=["ctrl-c-with-the-pipe-gone", "closed-terminal"])
def test_a_stop_with_nobody_reading_still_saves_and_exits_130(tmp_path, mnist_path,
                                                              signal_number):
    """Ctrl-C in `mnist train 2>&1 | tee log` kills tee too; a closed SSH session sends
    SIGHUP. Either way the run stops at the epoch's end with its checkpoint, exit 130."""
    process = training_process(tiny(tmp_path, mnist_path, train={"epochs": 6}), 0.5)
    read_until(process, "epoch 1/6")
    process.stdout.close()
    process.send_signal(signal_number)
    assert process.wait(timeout=300) == 130
    run_dir = only_run(tmp_path / "outputs")
    assert (run_dir / "checkpoint.npz").exists()
    assert not (run_dir / "metrics.json").exists()
    assert not [path for path in run_dir.iterdir() if path.name.startswith(".")]


# ---------------------------------------------------------- errors that point the way


@pytest.mark.parametrize("arguments, where", [
    (["--epochs", "0"], "Error: --epochs: train.epochs: must be greater than 0"),
    (["--set", "train.epochs=0"], "Error: --set train.epochs=0: train.epochs: must be"),
    (["--batch-size", "-3"], "Error: --batch-size: train.batch_size: must be greater"),
])
def test_a_bad_value_from_the_command_line_is_reported_as_coming_from_there(
        tmp_path, mnist_path, arguments, where):
    result = CliRunner().invoke(cli, ["train", "-c", str(tiny(tmp_path, mnist_path)),
                                      *arguments, "--dry-run"])
    assert result.exit_code == 2
    assert where in result.output


def test_a_misspelt_key_gets_the_nearest_one_suggested(tmp_path, mnist_path):
    config = tmp_path / "typo.yaml"
    config.write_text("train:\n  learnig_rate: 0.1\n")
    result = CliRunner().invoke(cli, ["train", "-c", str(config), "--dry-run"])
    assert result.exit_code == 2
    assert "train.learnig_rate: unknown key; did you mean train.learning_rate?" in result.output
    result = CliRunner().invoke(cli, ["train", "--set", "trian.epochs=3", "--dry-run"])
    assert "did you mean train?" in result.output


def test_dry_run_checks_the_data_and_says_what_auto_means(tmp_path, mnist_path):
    config = tiny(tmp_path, mnist_path)
    result = CliRunner().invoke(cli, ["train", str(config), "--dry-run", "--no-summary"])
    assert result.exit_code == 0, result.output
    assert "# Data: data.path" in result.output and "1800 train, 200 validation" in result.output
    assert "# Backend: " in result.output and ", engine: " in result.output
    missing = CliRunner().invoke(cli, ["train", str(config), "--dry-run", "--no-summary",
                                       "--set", f"data.path={tmp_path / 'nope.npz'}"])
    assert missing.exit_code == 1 and "nope.npz does not exist" in missing.output
    too_large = CliRunner().invoke(cli, ["train", str(config), "--dry-run",
                                         "--batch-size", "5000"])
    assert too_large.exit_code == 2 and "larger than the 1800 training samples" in too_large.output
    assert not (tmp_path / "outputs").exists()


def test_a_bare_train_says_it_trains_the_defaults(tmp_path, monkeypatch):
    monkeypatch.setenv("MNIST_DATA", str(tmp_path / "absent.npz"))
    result = CliRunner().invoke(cli, ["train", "--out", str(tmp_path / "out")])
    assert "No config given: training the built-in defaults" in result.output
    assert result.exit_code == 1 and "absent.npz: no such file" in result.output


def test_offline_without_data_the_message_is_short_and_fits_the_command(
        tmp_path, mnist_path, monkeypatch):
    """No data anywhere and no network: one short message, without Keras's "Downloading"
    line, naming options the command has, and no empty cache folder left behind."""
    from mnist_cli.data import sources

    def offline(dataset):
        print("Downloading data from https://example.invalid/mnist.npz")
        (tmp_path / "keras" / "datasets").mkdir(parents=True)
        raise Exception("URL fetch failure: network unreachable")

    monkeypatch.setattr(sources, "fetch_with_keras", offline)
    monkeypatch.delenv("MNIST_DATA", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    result = CliRunner().invoke(cli, ["train", "--epochs", "1", "--out", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert "Downloading" not in result.output
    error = result.output.split("Error: ", 1)[1]
    assert len(error.replace(str(tmp_path), "~")) < 260 and error.count("\n") <= 1
    assert "MNIST_DATA=/path/to/mnist.npz" in error and "--set data.path=" in error
    assert not (tmp_path / "keras" / "datasets").exists()


# ------------------------------------------------------------------ words and `latest`


@pytest.fixture(scope="module")
def sigmoid_run(mnist_path, tmp_path_factory) -> Path:
    """A finished tiny run with a sigmoid output, in `<folder>/outputs`."""
    folder = tmp_path_factory.mktemp("newcomer")
    config = write_tiny_config(folder / "sigmoid.yaml", mnist_path, folder / "outputs",
                               name="sigmoid", model={"output_activation": "sigmoid"},
                               train={"epochs": 1, "loss": "quadratic"})
    result = CliRunner().invoke(cli, ["train", "-c", str(config)])
    assert result.exit_code == 0, result.output
    run_dir = only_run(folder / "outputs")
    assert f"Next: mnist evaluate {run_dir}" in result.output
    assert f"mnist show-errors {run_dir}" in result.output
    return run_dir


def test_latest_names_the_newest_run(sigmoid_run, monkeypatch):
    monkeypatch.chdir(sigmoid_run.parent.parent)
    result = CliRunner().invoke(cli, ["evaluate", "latest"])
    assert result.exit_code == 0, result.output
    assert str(sigmoid_run.name) in result.output
    monkeypatch.chdir(sigmoid_run.parent)  # no outputs/ here
    result = CliRunner().invoke(cli, ["evaluate", "latest"])
    assert result.exit_code == 1 and "latest: there is no outputs folder here" in result.output


def test_latest_means_the_same_in_every_command(sigmoid_run, tmp_path, monkeypatch):
    """`latest` is the newest finished run under outputs/ for every command that reads a
    model (serve included), and the newest run of any kind for `train --resume`."""
    from mnist_cli.runs import resolve_run
    from mnist_cli.serve.registry import RunRegistry

    root = tmp_path / "outputs"
    shutil.copytree(sigmoid_run, root / sigmoid_run.name)
    unfinished = root / "sigmoid-29990101-000000"  # newer, still training
    shutil.copytree(sigmoid_run, unfinished)
    (unfinished / "metrics.json").unlink()
    monkeypatch.chdir(tmp_path)
    finished = Path("outputs") / sigmoid_run.name
    assert resolve_run("latest") == finished
    assert resolve_run("latest", finished_only=False) == Path("outputs") / unfinished.name
    assert RunRegistry("outputs", ["latest"]).runs()[0].path == finished
    for arguments in (["evaluate", "latest"], ["show-errors", "latest", "--limit", "3"],
                      ["compare", "latest", "--out", "compare.png"]):
        result = CliRunner().invoke(cli, arguments)
        assert result.exit_code == 0, result.output
        assert sigmoid_run.name in result.output and unfinished.name not in result.output
    pytest.importorskip("onnxruntime")
    result = CliRunner().invoke(cli, ["export", "latest", "--format", "onnx"])
    assert result.exit_code == 0, result.output
    assert (finished / "export" / "onnx" / "model.onnx").is_file()


def test_runs_started_in_the_same_second_keep_the_order_they_were_written(tmp_path):
    from mnist_cli.runs import newest_run, runs_under

    for name in ("b-20250101-120000", "a-20250101-120000"):  # b is written first
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.yaml").write_text("{}")
        os.utime(tmp_path / name / "config.yaml",
                 ns=(10**18 + len(runs_under(tmp_path)),) * 2)
    assert [run.path.name for run in runs_under(tmp_path)] == [
        "b-20250101-120000", "a-20250101-120000"]
    with pytest.raises(Exception, match="no run under .* has finished yet"):
        newest_run(tmp_path, finished_only=True)


def test_a_sigmoid_output_is_a_score_not_a_probability(sigmoid_run, tmp_path):
    digit = np.zeros((28, 28), dtype=np.uint8)
    digit[5:23, 12:16] = 255
    from PIL import Image

    Image.fromarray(digit).save(tmp_path / "one.png")
    result = CliRunner().invoke(cli, ["predict", str(sigmoid_run), str(tmp_path / "one.png")])
    assert result.exit_code == 0, result.output
    assert "(score 0." in result.output and "%" not in result.output


def test_validation_predictions_say_what_their_index_counts(sigmoid_run, tmp_path):
    result = CliRunner().invoke(cli, ["evaluate", str(sigmoid_run), "--split", "val",
                                      "--predictions", str(tmp_path / "val.csv")])
    assert result.exit_code == 0, result.output
    assert "index is the row in this run's validation set, 0 to 199" in result.output


def test_mnist_help_shows_each_command_s_first_sentence_whole():
    result = CliRunner().invoke(cli, ["--help"], terminal_width=80)
    text = " ".join(result.output.split())
    assert "Measure a trained model: loss, accuracy, per-digit precision/recall/F1, " \
           "confusion matrix." in text
    commands = result.output.split("Commands:")[1]
    assert "..." not in commands.replace("PNG, JPEG, ...;", "")


def test_the_progress_bar_counts_and_clears_itself():
    from mnist_cli.terminal import ProgressBar

    class Screen:
        def __init__(self):
            self.text = ""

        def write(self, text):
            self.text += text

    screen = Screen()
    bar = ProgressBar(screen, refresh=1e9)
    bar.start()
    for done in (1, 3, 10):
        bar.update("epoch 1/2", done, 10, " batches")
    drawn = screen.text.split("\r")
    assert "epoch 1/2 [##" in drawn[1] and "1/10 batches estimating" in drawn[1]
    assert "3/10 batches" in drawn[2] and " left" in drawn[2]
    assert "[" + "#" * ProgressBar.WIDTH + "] 10/10" in drawn[3]
    bar.clear()
    assert screen.text.endswith("\r\033[K")
