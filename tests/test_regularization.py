"""Each optimizer option and regularizer really acts, on `fit` and on both fast engines.

`test_engines.py` shows that the fast engines match `fit` on JAX with each option; equal
but both wrong would pass there. Here every option is checked against what its formula
says, on tiny random data: the `check_*` functions below train a model with the named
engine on the backend Keras runs on, and assert. On JAX they run in this process for both
engines; on TensorFlow a fresh Python runs them for the fast engine (TensorFlow's own
`fit` is Keras's reference and shuffles with tf.data; these checks do not depend on the
order of the batches).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import runs_on_jax, stop_after_epoch, write_tiny_config

from mnist_cli.config import Config
from mnist_cli.runtime import activate_backend

PROJECT = Path(__file__).resolve().parent.parent

on_jax = pytest.mark.skipif(not runs_on_jax(),
                            reason="the in-process checks run on the JAX backend")


@pytest.fixture(autouse=True)
def keras_backend() -> str:
    return activate_backend("auto")


def random_digits(count: int, validation: int = 40, seed: int = 0) -> SimpleNamespace:
    """Binarized random 784-pixel rows with a pixel that tells the label, as the engines
    take prepared data (features, uint8 pixels, the pixel table)."""
    rng = np.random.default_rng(seed)

    def rows(number: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.integers(0, 10, number)
        features = (rng.random((number, 784)) < 0.2).astype(np.float32)
        features[np.arange(number), 200 + 10 * labels] = 1
        return features, labels

    (x_train, y_train), (x_val, y_val) = rows(count), rows(validation)
    return SimpleNamespace(x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val,
                           pixels_train=x_train.astype(np.uint8),
                           pixels_val=x_val.astype(np.uint8),
                           pixel_table=np.arange(256, dtype=np.float32))


class Recorder:
    """The engine events, keeping each epoch's logs."""

    def __init__(self) -> None:
        self.logs: list[dict] = []

    def epoch_started(self, epoch: int) -> None:
        pass

    def epoch_ended(self, epoch: int, logs: dict) -> bool:
        self.logs.append(dict(logs))
        return False

    def batch_ended(self, epoch: int, batches_done: int, batches: int) -> None:
        pass

    def epoch_interrupted(self, epoch: int, batches_done: int) -> None:
        pass


def train(engine: str, data: SimpleNamespace, model: dict | None = None,
          train: dict | None = None) -> SimpleNamespace:
    """Build, compile and train the config's model with `engine`; return the model, the
    initial values of its trainable variables, its initial outputs on the training and
    validation rows, and the logs of each epoch."""
    import keras

    from mnist_cli.model import build_model, compile_model
    from mnist_cli.runtime import seed_everything
    from mnist_cli.training import engines
    from mnist_cli.training.engines.contract import EngineJob

    config = Config.model_validate({
        "seed": 3, "data": {"binarize": True},
        "model": {"layers": [784, 16, 10], **(model or {})},
        "train": {"batch_size": 32, "epochs": 1, **(train or {})},
    })
    seed_everything(config.seed)
    network = compile_model(build_model(config), config)
    initial = [np.array(variable.numpy()) for variable in network.trainable_variables]
    outputs = [keras.ops.convert_to_numpy(network(x, training=False))
               for x in (data.x_train, data.x_val)]
    recorder = Recorder()
    engines.run(engine, keras.backend.backend(), EngineJob(network, config, data, recorder))
    return SimpleNamespace(model=network, initial=initial, outputs=outputs, logs=recorder.logs)


def kernels(model) -> list[np.ndarray]:
    return [np.array(layer.kernel.numpy()) for layer in model.layers if hasattr(layer, "kernel")]


def crossentropy(labels: np.ndarray, outputs: np.ndarray, smoothing: float = 0.0) -> float:
    """Keras's categorical cross-entropy by hand: targets y (1 - s) + s / 10, the outputs
    clipped to [1e-7, 1 - 1e-7], averaged over the rows."""
    targets = np.eye(10)[labels] * (1 - smoothing) + smoothing / 10
    clipped = np.clip(outputs.astype(np.float64), 1e-7, 1 - 1e-7)
    return float(np.mean(-np.sum(targets * np.log(clipped), axis=-1)))


# The learning rate of runs whose logged loss is read as the loss of the initial weights.
STILL = {"optimizer": "sgd", "learning_rate": 1e-9}


def check_max_norm(engine: str) -> None:
    """After training, every unit's incoming weight vector (a kernel column) has an L2 norm
    of at most `max_norm`; without the constraint some exceed it."""
    data = random_digits(200)
    bound = 0.5
    constrained = train(engine, data, {"max_norm": bound}, {"learning_rate": 0.01, "epochs": 2})
    free = train(engine, data, {}, {"learning_rate": 0.01, "epochs": 2})
    for kernel in kernels(constrained.model):
        assert np.linalg.norm(kernel, axis=0).max() <= bound * (1 + 1e-5)
    assert max(np.linalg.norm(kernel, axis=0).max() for kernel in kernels(free.model)) > bound


def check_l2(engine: str) -> None:
    """The logged losses are the data loss plus l2 * sum(kernel^2) (read at a learning rate
    too small to move the weights); and L2 shrinks the kernels against the same run
    without it."""
    data = random_digits(200)
    l2 = 0.01
    still = train(engine, data, {"l2": l2}, STILL)
    penalty = l2 * sum(float(np.sum(value.astype(np.float64) ** 2))
                       for value in still.initial if value.ndim == 2)
    (logs,) = still.logs
    assert logs["loss"] == pytest.approx(crossentropy(data.y_train, still.outputs[0]) + penalty,
                                         rel=1e-5)
    assert logs["val_loss"] == pytest.approx(crossentropy(data.y_val, still.outputs[1])
                                             + penalty, rel=1e-5)
    moving = {"learning_rate": 0.05, "epochs": 2}
    shrunk, plain = train(engine, data, {"l2": l2}, moving), train(engine, data, {}, moving)
    squares = [sum(float(np.sum(kernel ** 2)) for kernel in kernels(run.model))
               for run in (shrunk, plain)]
    assert squares[0] < 0.9 * squares[1]


def check_label_smoothing(engine: str) -> None:
    """The logged training loss is the cross-entropy against the smoothed targets
    y (1 - s) + s / 10, and visibly not the plain one."""
    data = random_digits(200)
    smoothing = 0.2
    still = train(engine, data, {}, {**STILL, "label_smoothing": smoothing})
    (logs,) = still.logs
    expected = crossentropy(data.y_train, still.outputs[0], smoothing)
    assert logs["loss"] == pytest.approx(expected, rel=1e-5)
    assert abs(crossentropy(data.y_train, still.outputs[0]) - expected) > 1e-3


def check_clip_norm(engine: str) -> None:
    """One SGD step at learning rate 1 with `clip_norm` c moves all the variables together
    by exactly c (the gradient's global norm is larger); without clipping, by more."""
    data = random_digits(64)
    clip = 0.1
    step = {"optimizer": "sgd", "learning_rate": 1.0, "steps": 1}

    def update_norm(run: SimpleNamespace) -> float:
        return float(np.sqrt(sum(np.sum((np.array(variable.numpy()) - before) ** 2)
                                 for variable, before in zip(run.model.trainable_variables,
                                                             run.initial))))

    assert update_norm(train(engine, data, {}, {**step, "clip_norm": clip})) == pytest.approx(
        clip, rel=1e-4)
    assert update_norm(train(engine, data, {}, step)) > 2 * clip


def check_adamw(engine: str) -> None:
    """AdamW's decay is decoupled from the gradient: after one step, AdamW's weights are
    Adam's minus learning_rate * weight_decay * the initial weights."""
    data = random_digits(64)
    rate, decay = 0.01, 0.5
    adam = train(engine, data, {}, {"optimizer": "adam", "learning_rate": rate, "steps": 1})
    adamw = train(engine, data, {}, {"optimizer": "adamw", "learning_rate": rate, "steps": 1,
                                     "weight_decay": decay})
    for plain, decayed, initial in zip(adam.model.trainable_variables,
                                       adamw.model.trainable_variables, adam.initial):
        np.testing.assert_allclose(np.array(plain.numpy()) - np.array(decayed.numpy()),
                                   rate * decay * initial, atol=1e-7)


def check_batch_norm(engine: str) -> None:
    """One step on 10 rows in batches of 16 (the fast engines pad 6 rows of weight 0):
    the moving mean and variance move towards the moments of the 10 real rows' hidden
    activations alone (Keras's momentum 0.99, biased variance), and the fit engine, which
    trains a batch of 10, agrees."""
    data = random_digits(10)
    run = train(engine, data, {"batch_norm": True}, {"batch_size": 16})
    kernel, bias = run.initial[0], run.initial[1]
    hidden = np.maximum(data.x_train.astype(np.float64) @ kernel + bias, 0)
    layer = run.model.get_layer("batch_norm_1")
    np.testing.assert_allclose(layer.moving_mean.numpy(), 0.01 * hidden.mean(axis=0),
                               rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(layer.moving_variance.numpy(), 0.99 + 0.01 * hidden.var(axis=0),
                               rtol=1e-5)


CHECKS = (check_max_norm, check_l2, check_label_smoothing, check_clip_norm, check_adamw,
          check_batch_norm)


@on_jax
@pytest.mark.parametrize("engine", ["fit", "fast"])
@pytest.mark.parametrize("check", CHECKS, ids=[check.__name__[6:] for check in CHECKS])
def test_each_option_acts_on_jax(check, engine: str):
    check(engine)


# A 2-epoch fast run with every option at once.
EVERY_OPTION = {
    "model": {"layers": [784, 16, 10], "batch_norm": True, "dropout": 0.1, "l2": 0.001,
              "max_norm": 2.0},
    "train": {"epochs": 2, "engine": "fast", "optimizer": "adamw", "clip_norm": 1.0,
              "label_smoothing": 0.1},
}


def without_timings(run_dir: Path) -> tuple[str, dict]:
    measured = {"seconds", "train_seconds", "samples_per_second", "peak_memory_mib"}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    history = (run_dir / "history.csv").read_text().splitlines()
    header = history[0].split(",")
    kept = [index for index, name in enumerate(header) if name not in measured]
    rows = "\n".join(",".join(line.split(",")[index] for index in kept) for line in history)
    return rows, {key: value for key, value in metrics.items() if key not in measured}


@on_jax
def test_a_run_with_every_option_stopped_after_an_epoch_resumes_exactly(tmp_path: Path,
                                                               mnist_path: Path, monkeypatch):
    """The moving statistics are non-trainable variables: written back after each epoch,
    checkpointed, and continued on resume (val_loss reads them), on the JAX fast engine."""
    from mnist_cli.cli import cli
    from mnist_cli.training.checkpoints import Checkpointer

    config_path = write_tiny_config(tmp_path / "bn.yaml", mnist_path, tmp_path / "unused",
                                    name="bn", **EVERY_OPTION)
    runner = CliRunner()
    whole = runner.invoke(cli, ["train", "-c", str(config_path), "--out", str(tmp_path / "a")])
    assert whole.exit_code == 0, whole.output
    save_epoch = stop_after_epoch(monkeypatch, 0)
    stopped = runner.invoke(cli, ["train", "-c", str(config_path), "--out", str(tmp_path / "b")])
    assert stopped.exit_code == 130, stopped.output
    monkeypatch.setattr(Checkpointer, "save_epoch", save_epoch)
    (run_dir,) = (tmp_path / "b").iterdir()
    resumed = runner.invoke(cli, ["train", "--resume", str(run_dir)])
    assert resumed.exit_code == 0, resumed.output
    (reference,) = (tmp_path / "a").iterdir()
    assert without_timings(run_dir) == without_timings(reference)


with_tensorflow = pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None,
                                     reason="TensorFlow is not installed")

TENSORFLOW_CHECKS = """
sys.path.insert(0, "tests")
from mnist_cli.runtime import activate_backend
activate_backend("tensorflow")
import test_regularization as checks
for check in checks.CHECKS:
    check("fast")
    print("passed", check.__name__)
common = ["-c", config, "--backend", "tensorflow", "--engine", "fast"]
assert mnist("train", *common, "--out", str(out / "whole")) == 0
stop_after_the_first_epoch_then_resume(*common, "--out", str(out / "stopped"))
"""


@pytest.mark.slow
@with_tensorflow
def test_each_option_acts_on_the_tensorflow_fast_engine_and_resumes_exactly(
        tmp_path: Path, mnist_path: Path):
    """One fresh Python on TensorFlow: every check above with the fast engine, then a run
    with every option uninterrupted, and stopped after epoch 1 and resumed: the same
    numbers (the moving statistics and seed states are Keras variables, checkpointed)."""
    from test_engines import SCRIPT_PRELUDE

    config_path = write_tiny_config(tmp_path / "all.yaml", mnist_path, tmp_path / "unused",
                                    name="all", **EVERY_OPTION)
    environment = {key: value for key, value in os.environ.items() if key != "KERAS_BACKEND"}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT_PRELUDE + TENSORFLOW_CHECKS, str(config_path),
         str(tmp_path / "outputs")], capture_output=True, text=True, env=environment,
        cwd=PROJECT, check=False, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert result.stdout.count("passed") == len(CHECKS)
    (whole,), (stopped,) = ((tmp_path / "outputs" / name).iterdir()
                            for name in ("whole", "stopped"))
    assert without_timings(stopped) == without_timings(whole)
