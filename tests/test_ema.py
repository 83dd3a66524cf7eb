"""train.ema (Polyak averaging): the saved model is the average of the weights, not the
last ones; the average travels in the checkpoint, so a stopped run resumes to the same
model; and every engine averages the same way."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import runs_on_jax, stop_after_epoch, write_tiny_config

from mnist_cli.cli import cli
from mnist_cli.config import load_config
from mnist_cli.errors import ConfigError


def train(config, *extra) -> object:
    return CliRunner().invoke(cli, ["train", "--config", str(config), *map(str, extra)])


def model_weights(run_dir) -> list[np.ndarray]:
    from mnist_cli.inspection.source import load_model, locate_model

    return [np.asarray(value) for value in load_model(locate_model(run_dir)).get_weights()]


def last_snapshot(run_dir) -> list[np.ndarray]:
    from mnist_cli.training.snapshots import read_snapshot

    return read_snapshot(sorted((run_dir / "snapshots").iterdir())[-1])


@pytest.mark.parametrize("ema", [None, 0.9])
def test_the_saved_model_is_the_average_of_the_weights(mnist_path, tmp_path, ema):
    config = write_tiny_config(tmp_path / "ema.yaml", mnist_path, tmp_path / "outputs",
                               train={"epochs": 2, "ema": ema, "snapshots": True})
    assert train(config).exit_code == 0
    (run,) = (tmp_path / "outputs").iterdir()
    # The snapshot holds the last step's weights (float16); the model the average.
    same = all(np.allclose(saved, raw, atol=2e-3)
               for saved, raw in zip(model_weights(run), last_snapshot(run)))
    assert same is (ema is None)


def test_a_stopped_run_with_ema_resumes_to_the_same_model(mnist_path, tmp_path, monkeypatch):
    if not runs_on_jax():
        pytest.skip("exact resume is a property of the JAX backend")
    config = write_tiny_config(tmp_path / "ema.yaml", mnist_path, tmp_path / "whole",
                               train={"epochs": 3, "ema": 0.9, "engine": "fast"})
    assert train(config).exit_code == 0
    stop_after_epoch(monkeypatch, 0)
    assert train(config, "--out", tmp_path / "stopped").exit_code == 130
    monkeypatch.undo()
    (stopped,) = (tmp_path / "stopped").iterdir()
    assert CliRunner().invoke(cli, ["train", "--resume", str(stopped)]).exit_code == 0
    (whole,) = (tmp_path / "whole").iterdir()
    for resumed, uninterrupted in zip(model_weights(stopped), model_weights(whole)):
        np.testing.assert_allclose(resumed, uninterrupted, rtol=1e-5, atol=1e-6)


def test_the_fit_engine_averages_like_the_fast_one(mnist_path, tmp_path):
    """fit ends each call by replacing the weights with their average: the engine keeps
    the training weights until training's end, as the fast engine does."""
    results = {}
    for engine in ("fit", "fast"):
        config = write_tiny_config(tmp_path / f"{engine}.yaml", mnist_path,
                                   tmp_path / engine, train={"epochs": 2, "ema": 0.9,
                                                             "engine": engine})
        assert train(config).exit_code == 0
        (run,) = (tmp_path / engine).iterdir()
        results[engine] = model_weights(run)
    for fit, fast in zip(results["fit"], results["fast"]):
        np.testing.assert_allclose(fit, fast, atol=2e-4)


def test_ema_and_restoring_the_best_epoch_are_one_choice_too_many(tmp_path, mnist_path):
    config = write_tiny_config(tmp_path / "both.yaml", mnist_path, tmp_path / "outputs",
                               train={"ema": 0.99, "early_stopping": True})
    with pytest.raises(ConfigError, match="both choose the final weights"):
        load_config(config)
