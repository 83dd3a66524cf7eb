"""`mnist train` end to end: a tiny net on a small subset, and every file of its run directory."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import write_tiny_config
from PIL import Image

from mnist_cli.cli import cli
from mnist_cli.config import load_config
from mnist_cli.runs import HISTORY_COLUMNS


def tiny_config(folder: Path, mnist_path: Path, **sections) -> Path:
    return write_tiny_config(folder / "tiny.yaml", mnist_path, folder / "outputs", **sections)


@pytest.fixture(scope="module")
def trained(mnist_path, tmp_path_factory):
    folder = tmp_path_factory.mktemp("train")
    config_path = tiny_config(folder, mnist_path)
    result = CliRunner().invoke(cli, ["train", "--config", str(config_path)])
    assert result.exit_code == 0, result.output
    runs = list((folder / "outputs").iterdir())
    assert len(runs) == 1
    return runs[0], result.output, config_path


def test_run_directory_holds_every_file(trained):
    run_dir, output, _ = trained
    names = {path.name for path in run_dir.iterdir()}
    assert {"config.yaml", "model.keras", "history.csv", "metrics.json",
            "learning_curves.png", "errors.png"} <= names
    assert not [name for name in names if name.startswith(".")], "temporary files left behind"
    assert run_dir.name.startswith("tiny-")
    assert str(run_dir) in output
    assert "Test accuracy" in output


def test_saved_config_is_the_resolved_config(trained):
    run_dir, _, config_path = trained
    saved = load_config(run_dir / "config.yaml")
    original = load_config(config_path)
    assert saved.runtime.backend in {"jax", "tensorflow", "torch"}  # 'auto' resolved
    assert saved.train.engine in {"fit", "fast"}
    assert saved.model == original.model and saved.data == original.data
    assert saved.train.epochs == 2 and saved.seed == 0


def test_history_has_one_row_per_epoch(trained):
    run_dir, _, _ = trained
    with open(run_dir / "history.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0].keys()) == HISTORY_COLUMNS
    assert [int(row["epoch"]) for row in rows] == [1, 2]
    for row in rows:
        assert 0.0 <= float(row["accuracy"]) <= 1.0
        assert 0.0 <= float(row["val_accuracy"]) <= 1.0
        assert float(row["loss"]) > 0 and float(row["seconds"]) > 0
        assert float(row["learning_rate"]) == pytest.approx(0.001)
    assert float(rows[1]["loss"]) < float(rows[0]["loss"])  # it learns


def test_metrics_are_consistent(trained):
    run_dir, output, _ = trained
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["num_test"] == 500
    matrix = np.array(metrics["confusion_matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == 500
    assert metrics["num_errors"] == 500 - np.trace(matrix)
    assert metrics["test_accuracy"] == pytest.approx(np.trace(matrix) / 500)
    assert metrics["test_accuracy"] > 0.5  # far above chance even on the synthetic digits
    for digit, accuracy in metrics["per_class_accuracy"].items():
        row = matrix[int(digit)]
        assert accuracy == pytest.approx(row[int(digit)] / row.sum())
    assert metrics["seed"] == 0 and metrics["epochs_completed"] == 2
    assert metrics["num_train"] == 1800 and metrics["num_validation"] == 200
    assert metrics["train_seconds"] > 0 and metrics["samples_per_second"] > 0
    assert metrics["peak_memory_mib"] > 50  # the process's peak resident memory
    assert {"python", "keras", "backend", "backend_version"} <= set(metrics["versions"])
    assert f"{metrics['test_accuracy']:.4f}" in output


def test_saved_model_reproduces_the_test_accuracy(trained, mnist_path):
    import keras

    from mnist_cli.data import prepare

    run_dir, _, _ = trained
    model = keras.saving.load_model(run_dir / "model.keras", compile=False, safe_mode=True)
    data = prepare(load_config(run_dir / "config.yaml"))
    predicted = np.argmax(model.predict(data.x_test, verbose=0), axis=-1)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert np.mean(predicted == data.y_test) == pytest.approx(metrics["test_accuracy"])


def test_pictures_are_real_pngs(trained):
    run_dir, _, _ = trained
    for name in ("learning_curves.png", "errors.png"):
        with Image.open(run_dir / name) as image:
            assert image.format == "PNG"
            assert image.width > 300 and image.height > 150


def test_a_second_run_never_overwrites_the_first(trained, mnist_path, tmp_path):
    config_path = tiny_config(tmp_path, mnist_path, train={"epochs": 1})
    runner = CliRunner()
    for _ in range(2):
        assert runner.invoke(cli, ["train", "-c", str(config_path)]).exit_code == 0
    runs = sorted((tmp_path / "outputs").iterdir())
    assert len(runs) == 2 and runs[0] != runs[1]


def test_missing_data_is_one_line_and_leaves_no_run(tmp_path, mnist_path):
    config_path = tiny_config(tmp_path, mnist_path)
    result = CliRunner().invoke(cli, [
        "train", "-c", str(config_path), "--set", f"data.path={tmp_path / 'absent.npz'}"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and "absent.npz" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "outputs").exists() or not any((tmp_path / "outputs").iterdir())


def test_flags_override_the_file(trained, mnist_path, tmp_path):
    config_path = tiny_config(tmp_path, mnist_path)
    out = tmp_path / "elsewhere"
    result = CliRunner().invoke(cli, ["train", "-c", str(config_path), "--epochs", "1",
                                      "--batch-size", "100", "--seed", "3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    (run_dir,) = out.iterdir()
    saved = load_config(run_dir / "config.yaml")
    assert (saved.train.epochs, saved.train.batch_size, saved.seed) == (1, 100, 3)


def test_python_dash_m_entry_point():
    result = subprocess.run([sys.executable, "-m", "mnist_cli", "--help"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0 and "Example:" in result.stdout


def test_early_stopping_counts_patience_as_keras_does(tmp_path, mnist_path):
    # min_delta 10: no epoch after the first improves on it, so patience 1 stops after epoch 2.
    config_path = tiny_config(tmp_path, mnist_path, train={"epochs": 5, "early_stopping": {
        "monitor": "val_loss", "patience": 1, "min_delta": 10.0}})
    result = CliRunner().invoke(cli, ["train", "-c", str(config_path)])
    assert result.exit_code == 0, result.output
    (run_dir,) = (tmp_path / "outputs").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    with open(run_dir / "history.csv", newline="") as handle:
        assert [row["epoch"] for row in csv.DictReader(handle)] == ["1", "2"]
    assert metrics["stopped_early"] is True and metrics["best_epoch"] == 1
    assert metrics["stopped_by"] == "early_stopping"
    (line,) = [line for line in result.output.splitlines() if "Early stopping" in line]
    assert "val_loss did not improve by more than 10 for 1 epochs; stopped after epoch 2 of 5" \
        in line and "(best: epoch 1, val_loss " in line


def test_initializer_keras_refuses_is_a_config_error_and_leaves_no_run(tmp_path, mnist_path):
    config_path = tiny_config(tmp_path, mnist_path, model={
        "kernel_initializer": {"name": "random_normal", "stddev": "wide"}})
    result = CliRunner().invoke(cli, ["train", "-c", str(config_path)])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("Error: model") and "Traceback" not in result.output
    assert not (tmp_path / "outputs").exists() or not any((tmp_path / "outputs").iterdir())


def test_learning_curves_mark_the_best_epoch_and_the_schedule():
    import math

    from mnist_cli import plots

    def history(rate):
        return [{"epoch": epoch, "loss": 1 / epoch, "accuracy": 1 - 0.1 / epoch,
                 "val_loss": 1 / epoch, "val_accuracy": 1 - 0.1 / epoch,
                 "learning_rate": rate(epoch)} for epoch in range(1, 31)]

    def vertical_lines(axes):
        return sorted(line.get_xdata()[0] for line in axes.get_lines()
                      if len(set(line.get_xdata())) == 1 and len(line.get_xdata()) == 2)

    stepped = plots.learning_curves_figure(
        history(lambda epoch: 0.1 * 0.1 ** ((epoch - 1) // 10)), "step", best_epoch=17)
    loss_axes, accuracy_axes = stepped.axes
    for axes in (loss_axes, accuracy_axes):
        assert vertical_lines(axes) == [10.5, 17, 20.5]  # two steps and the best epoch
        assert "best epoch (17)" in axes.get_legend_handles_labels()[1]
    # A cosine schedule changes every epoch: a learning-rate panel instead of 29 lines.
    cosine = plots.learning_curves_figure(
        history(lambda epoch: 0.5 * (1 + math.cos(math.pi * epoch / 30))), "cosine")
    assert [axes.get_title() for axes in cosine.axes] == ["Loss", "Accuracy", "Learning rate"]
    assert vertical_lines(cosine.axes[0]) == []
    constant = plots.learning_curves_figure(history(lambda epoch: 0.001), "constant")
    assert len(constant.axes) == 2 and vertical_lines(constant.axes[0]) == []
