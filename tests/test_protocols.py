"""The training protocols the tutorials need: the summed squared error, no shuffling, no
validation set, a pooled random split, "pixel > 0" binarization and a step budget; each
through `mnist train`, with the other commands working on the runs they make."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import runs_on_jax, stop_after_epoch, write_tiny_config

from mnist_cli.cli import cli
from mnist_cli.config import DataConfig, load_config
from mnist_cli.data import load_raw, prepare, preprocess
from mnist_cli.metrics import loss_from_probabilities
from mnist_cli.runs import read_history
from mnist_cli.runtime import activate_backend
from mnist_cli.training.checkpoints import Checkpointer


@pytest.fixture(autouse=True)
def keras_backend() -> str:
    return activate_backend("auto")


def train(folder: Path, mnist_path: Path, name: str, **sections) -> Path:
    """`mnist train` of the tiny config changed by `sections`; the run directory."""
    config = write_tiny_config(folder / f"{name}.yaml", mnist_path, folder / name, name=name,
                               **sections)
    result = CliRunner().invoke(cli, ["train", "-c", str(config)])
    assert result.exit_code == 0, result.output
    (run_dir,) = (folder / name).iterdir()
    return run_dir


def metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


# ------------------------------------------------------------------------------ losses


def test_the_three_squared_errors_differ_by_their_constant_factors():
    """sum_squared_error = sum (y - a)^2 = 10 x mse (the mean over 10 outputs) = 2 x quadratic
    (half the sum), in the reported numbers and in the Keras losses that train."""
    import keras

    from mnist_cli.config import TrainConfig
    from mnist_cli.model import per_sample_loss

    rng = np.random.default_rng(0)
    outputs = rng.random((6, 10)).astype(np.float32)
    labels = np.array([0, 3, 9, 2, 2, 7])
    by_name = {name: loss_from_probabilities(name, labels, outputs)
               for name in ("mse", "quadratic", "sum_squared_error")}
    assert by_name["sum_squared_error"] == pytest.approx(10 * by_name["mse"])
    assert by_name["sum_squared_error"] == pytest.approx(2 * by_name["quadratic"])
    expected = np.sum((np.eye(10)[labels] - outputs) ** 2, axis=1)
    per_sample = per_sample_loss(TrainConfig(loss="sum_squared_error"))(
        np.eye(10, dtype=np.float32)[labels], outputs)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(per_sample), expected, rtol=1e-6)


# ---------------------------------------------------------------------------- the data


def test_binarize_threshold_zero_is_every_pixel_above_zero():
    pixels = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
    features = preprocess(pixels, DataConfig(binarize=True, binarize_threshold=0.0))
    np.testing.assert_array_equal(features.ravel(), (np.arange(256) > 0).astype(np.float32))


def test_pooled_split_is_train_test_split_of_the_pooled_digits(mnist_path: Path):
    """All digits pooled in order (training, then test), then scikit-learn's
    train_test_split with the seed: the tutorial's own call, on any dataset."""
    from sklearn.model_selection import train_test_split

    from mnist_cli.config import Config

    config = Config.model_validate({"seed": 3, "data": {
        "path": str(mnist_path), "split": "pooled", "test_fraction": 0.25,
        "validation_split": 0, "scale": False}})
    data = prepare(config)
    raw = load_raw(config.data)
    pool = np.concatenate([raw.x_train, raw.x_test]).reshape(-1, 784)
    labels = np.concatenate([raw.y_train, raw.y_test])
    train_rows, test_rows = train_test_split(np.arange(len(labels)), test_size=0.25,
                                             random_state=3)
    assert len(data.y_test) == len(test_rows) and len(data.y_train) == len(train_rows)
    np.testing.assert_array_equal(data.test_index, test_rows)
    np.testing.assert_array_equal(data.x_test, pool[test_rows])
    np.testing.assert_array_equal(data.y_train, labels[train_rows])
    assert not set(data.test_index) & set(train_rows)


def test_openml_split_of_earlier_configs_still_reads():
    assert DataConfig(openml_split="random").split == "pooled"
    assert DataConfig(openml_split="official").split == "official"


def test_early_stopping_on_validation_needs_a_validation_set(tmp_path, mnist_path):
    config = write_tiny_config(tmp_path / "c.yaml", mnist_path, tmp_path / "out",
                               data={"validation_split": 0},
                               train={"early_stopping": {"monitor": "val_loss"}})
    result = CliRunner().invoke(cli, ["train", "-c", str(config)])
    assert result.exit_code == 2
    assert "val_loss needs a validation set but data.validation_split is 0" in result.output
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------- shuffling and step budgets


def test_without_shuffling_every_epoch_visits_the_same_batches():
    from mnist_cli.training.engines.fast_common import Batches

    batches = Batches(count=10, batch_size=4)
    first, later = (batches.order(seed=1, epoch=epoch, shuffle=False) for epoch in (0, 7))
    np.testing.assert_array_equal(first, later)
    np.testing.assert_array_equal(first.ravel()[:10], np.arange(10))
    assert not np.array_equal(batches.order(1, 0), batches.order(1, 7))  # shuffled: differ


@pytest.mark.parametrize("engine", ["fit", "fast"])
def test_a_step_budget_cuts_the_last_epoch_short(tmp_path, mnist_path, engine):
    """40 steps of 64 from 1800 training images: an epoch of 29 batches, then 11 more."""
    run_dir = train(tmp_path, mnist_path, f"steps-{engine}",
                    train={"steps": 40, "engine": engine, "shuffle": False})
    history = read_history(run_dir / "history.csv")
    assert [row["epoch"] for row in history] == [1, 2]
    saved = load_config(run_dir / "config.yaml")
    assert saved.train.steps == 40 and saved.train.epochs == 2
    assert metrics(run_dir)["epochs_completed"] == 2


def test_fit_and_fast_agree_without_shuffling_with_a_budget_and_no_validation(
        tmp_path, mnist_path):
    if not runs_on_jax():
        pytest.skip("the engines are compared on the JAX backend")
    change = {"data": {"validation_split": 0},
              "train": {"steps": 40, "shuffle": False, "loss": "sum_squared_error",
                        "optimizer": "sgd", "learning_rate": 0.01}}
    histories = {}
    for engine in ("fit", "fast"):
        run_dir = train(tmp_path, mnist_path, engine, **{
            **change, "train": {**change["train"], "engine": engine}})
        histories[engine] = read_history(run_dir / "history.csv")
        assert all(row["val_loss"] is None and row["val_accuracy"] is None
                   for row in histories[engine])
        assert metrics(run_dir)["num_validation"] == 0
    for key in ("loss", "accuracy"):
        np.testing.assert_allclose([row[key] for row in histories["fast"]],
                                   [row[key] for row in histories["fit"]], rtol=1e-4)


def test_a_step_budget_beside_other_epochs_is_refused(tmp_path, mnist_path):
    config = write_tiny_config(tmp_path / "c.yaml", mnist_path, tmp_path / "out",
                               train={"steps": 40, "epochs": 5})
    result = CliRunner().invoke(cli, ["train", "-c", str(config)])
    assert result.exit_code == 2
    assert "train.epochs: 5 does not match train.steps: 40" in result.output


@pytest.mark.parametrize("engine", ["fit", "fast"])
def test_an_unshuffled_budgeted_run_resumes_exactly(tmp_path, mnist_path, monkeypatch, engine):
    """Stopped after its first epoch (as Ctrl-C stops it), then resumed: the very numbers
    of the run that was never stopped."""
    change = {"data": {"validation_split": 0},
              "train": {"steps": 40, "shuffle": False, "engine": engine}}
    reference = read_history(train(tmp_path, mnist_path, "whole", **change) / "history.csv")

    original = stop_after_epoch(monkeypatch, 0)
    config = write_tiny_config(tmp_path / "stopped.yaml", mnist_path, tmp_path / "stopped",
                               name="stopped", **change)
    assert CliRunner().invoke(cli, ["train", "-c", str(config)]).exit_code == 130
    monkeypatch.setattr(Checkpointer, "save_epoch", original)
    (run_dir,) = (tmp_path / "stopped").iterdir()
    result = CliRunner().invoke(cli, ["train", "--resume", str(run_dir)])
    assert result.exit_code == 0, result.output
    resumed = read_history(run_dir / "history.csv")
    for key in ("loss", "accuracy"):
        assert [row[key] for row in resumed] == [row[key] for row in reference]


# ------------------------------------------------ every command on the new protocols


def test_every_command_works_on_a_pooled_unshuffled_run_without_validation(
        tmp_path, mnist_path):
    run_dir = train(tmp_path, mnist_path, "pooled",
                    data={"split": "pooled", "test_fraction": 0.25, "validation_split": 0,
                          "binarize": True, "binarize_threshold": 0.0,
                          "subset": {"train": 2000, "test": 600}},
                    train={"shuffle": False})
    recorded = metrics(run_dir)
    assert recorded["split"] == "pooled" and recorded["test_fraction"] == 0.25
    assert recorded["num_test"] == 600
    runner = CliRunner()

    evaluation = runner.invoke(cli, ["evaluate", str(run_dir), "--json"])
    assert evaluation.exit_code == 0, evaluation.output
    report = json.loads(evaluation.output)
    assert report["num_samples"] == 600 and report["training_metrics"]["agrees"]

    no_validation = runner.invoke(cli, ["evaluate", str(run_dir), "--split", "val"])
    assert no_validation.exit_code == 2 and "no validation set" in no_validation.output

    errors = runner.invoke(cli, ["show-errors", str(run_dir)])
    assert errors.exit_code == 0, errors.output
    rows = (run_dir / "errors.csv").read_text().splitlines()[1:]
    with np.load(mnist_path) as archive:
        pool_size = len(archive["y_train"]) + len(archive["y_test"])
    assert all(0 <= int(row.split(",")[0]) < pool_size for row in rows)

    digit = np.zeros((28, 28), dtype=np.uint8)
    digit[6:22, 12:16] = 255
    from PIL import Image

    Image.fromarray(digit).save(tmp_path / "one.png")
    prediction = runner.invoke(cli, ["predict", str(run_dir), str(tmp_path / "one.png")])
    assert prediction.exit_code == 0, prediction.output

    listing = runner.invoke(cli, ["runs", str(tmp_path / "pooled")])
    assert listing.exit_code == 0 and run_dir.name in listing.output
    comparison = runner.invoke(cli, ["compare", str(run_dir), "--out",
                                     str(tmp_path / "curves.png")])
    assert comparison.exit_code == 0 and (tmp_path / "curves.png").stat().st_size > 0


@pytest.mark.parametrize("engine", ["fit", "fast"])
def test_unflattened_images_train_through_a_flatten_layer(tmp_path, mnist_path, engine):
    run_dir = train(tmp_path, mnist_path, f"images-{engine}", data={"flatten": False},
                    train={"epochs": 1, "engine": engine})
    assert metrics(run_dir)["test_accuracy"] > 0.5
