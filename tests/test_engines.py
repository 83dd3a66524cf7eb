"""The fast engines against Keras's own `model.fit`, and their exact shortcuts.

On JAX both engines start from the same weights and visit the same batches
(`epoch_permutation`), so they must agree to float rounding: the histories to 1e-4, the
test accuracy to a couple of digits of 500. The runs have 1800 training samples in batches
of 64, so each epoch ends with a batch of 8: fit trains it as a smaller batch, the fast
engine as a padded full one whose 56 padding rows weigh 0, and the numbers must not tell.

On TensorFlow `model.fit` shuffles with tf.data, so the two engines see other batches and
can only agree within the noise of training: measured on this tiny run (seeds 0-4, real
MNIST), the test accuracies of the two engines differed by at most 0.038 and the final
training losses by at most 4.2%; the bounds below are 0.05 and 10%. The fast engine's
resume is exact on both backends (JAX: test_resume.py; TensorFlow: here).
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
from conftest import runs_on_jax, write_tiny_config

from mnist_cli.cli import cli
from mnist_cli.config import Config, DataConfig
from mnist_cli.errors import ConfigError, RunDirError
from mnist_cli.runs import read_history
from mnist_cli.runtime import activate_backend
from mnist_cli.training.checkpoints import Checkpoint
from mnist_cli.training.engines import check_resumable, resolve_engine

PROJECT = Path(__file__).resolve().parent.parent
NATIVE_NOISE = ("I0000", "E0000", "W0000", "port.cc", "cudart_stub", "cuda_platform",
                "absl::InitializeLog", "cpu_feature_guard")

on_jax = pytest.mark.skipif(not runs_on_jax(),
                            reason="the in-process engine tests run on the JAX backend")


@pytest.fixture(autouse=True)
def keras_backend() -> str:
    """Choose Keras's backend before any test here imports Keras, as `mnist` does."""
    return activate_backend("auto")


def tiny_config(folder: Path, mnist_path: Path, engine: str, **changes) -> Path:
    """The tiny run, 3 epochs, with the given engine, into `folder/<engine>`."""
    changes["train"] = {"epochs": 3, "engine": engine, **changes.get("train", {})}
    return write_tiny_config(folder / f"{engine}.yaml", mnist_path, folder / engine,
                             name="engines", **changes)


def run_results(output_root: Path) -> tuple[list[dict], dict]:
    (run_dir,) = output_root.iterdir()
    return (read_history(run_dir / "history.csv"),
            json.loads((run_dir / "metrics.json").read_text()))


# ------------------------------------------------------------------ choosing an engine


def test_auto_is_fast_where_there_is_a_fast_engine():
    assert resolve_engine("auto", "jax") == "fast"
    assert resolve_engine("auto", "tensorflow") == "fast"
    assert resolve_engine("auto", "torch") == "fit"
    assert resolve_engine("fit", "jax") == "fit"
    with pytest.raises(ConfigError, match="fast engine runs on the jax and tensorflow"):
        resolve_engine("fast", "torch")


def test_a_mid_epoch_checkpoint_is_not_continued_by_the_fast_engine():
    check_resumable(None)
    whole = Checkpoint(epochs_done=2, seed=0, data_fingerprint="x")
    check_resumable(whole)
    with pytest.raises(RunDirError, match="middle of an epoch by the fit engine"):
        check_resumable(Checkpoint(**{**whole.__dict__, "batches_done": 5}))


# ------------------------------------------------------------- the backend-neutral pieces


def test_batches_pad_the_last_one_with_rows_of_weight_zero():
    from mnist_cli.training.engines.contract import epoch_permutation
    from mnist_cli.training.engines.fast_common import Batches

    batches = Batches(count=10, batch_size=4)
    assert batches.number == 3 and batches.padded_count == 12
    np.testing.assert_array_equal(batches.row_weights().ravel(), [1] * 10 + [0] * 2)
    order = batches.order(seed=3, epoch=5)
    assert order.shape == (3, 4) and order.dtype == np.int32
    np.testing.assert_array_equal(order.ravel()[:10], epoch_permutation(3, 5, 10))
    assert Batches(count=8, batch_size=4).row_weights().all()  # no padding when it divides


@pytest.mark.parametrize("settings", [
    {"binarize": True}, {"scale": True}, {"scale": False},
], ids=["binarized", "scaled", "raw"])
def test_uint8_encoding_decodes_to_the_exact_features(settings: dict):
    from mnist_cli.data import pixel_table, preprocess
    from mnist_cli.training.engines.fast_common import encode_features

    data = DataConfig(**settings)
    images = np.random.default_rng(0).integers(0, 256, size=(50, 28, 28), dtype=np.uint8)
    features = preprocess(images, data)
    encoded = encode_features(images.reshape(50, 784), pixel_table(data))
    assert encoded.values.dtype == np.uint8
    decoded = (encoded.values.astype(np.float32) if encoded.table is None
               else encoded.table[encoded.values])
    np.testing.assert_array_equal(decoded, features)  # bit for bit


# -------------------------------------------------------------------------- JAX, in-process


@on_jax
@pytest.mark.parametrize("changes", [
    {},
    {"train": {"loss": "mse", "optimizer": "sgd", "learning_rate": 0.5, "momentum": 0.5}},
    {"train": {"loss": "quadratic", "optimizer": "rmsprop"}, "model": {"dropout": 0.2}},
    {"train": {"optimizer": "adamw", "weight_decay": 0.05}},
    {"train": {"optimizer": "sgd", "learning_rate": 0.5, "clip_norm": 0.3}},
    {"model": {"l2": 0.002}},
    {"model": {"max_norm": 1.0}},
    {"model": {"layers": [784, 32, 16, 10], "batch_norm": True, "dropout": 0.1}},
    {"train": {"label_smoothing": 0.1}},
], ids=["crossentropy-adam", "mse-sgd-momentum", "quadratic-rmsprop-dropout", "adamw",
        "clip-norm", "l2", "max-norm", "batch-norm-dropout", "label-smoothing"])
def test_jax_fast_engine_matches_fit(tmp_path: Path, mnist_path: Path, changes: dict):
    """Each epoch ends with a padded batch of 8 real rows: with batch normalization, its
    moments must be those of the 8 rows alone, as in fit's smaller batch."""
    results = {}
    for engine in ("fit", "fast"):
        config_path = tiny_config(tmp_path, mnist_path, engine, **changes)
        result = CliRunner().invoke(cli, ["train", "-c", str(config_path)])
        assert result.exit_code == 0, result.output
        results[engine] = run_results(tmp_path / engine)
    (fit_history, fit_metrics), (fast_history, fast_metrics) = results["fit"], results["fast"]
    assert fast_metrics["engine"] == "fast" and fit_metrics["engine"] == "fit"
    differences = {key: max(abs(fast[key] - fit[key]) / abs(fit[key])
                            for fast, fit in zip(fast_history, fit_history))
                   for key in ("loss", "accuracy", "val_loss", "val_accuracy")}
    print(f"\nlargest relative difference fast vs fit: {differences}")
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose([row[key] for row in fast_history],
                                   [row[key] for row in fit_history], rtol=1e-4, err_msg=key)
    assert abs(fast_metrics["test_accuracy"] - fit_metrics["test_accuracy"]) <= 2 / 500
    assert fast_metrics["test_loss"] == pytest.approx(fit_metrics["test_loss"], rel=1e-4)


def _data_with_dead_columns(count: int = 600) -> SimpleNamespace:
    """Binarized random digits whose first 100 and last 30 columns are 0 in every
    training sample (not in the validation samples: their kernel rows must still count)."""
    rng = np.random.default_rng(1)
    x_train = (rng.random((count, 784)) < 0.3).astype(np.float32)
    x_train[:, :100] = 0
    x_train[:, -30:] = 0
    y_train = rng.integers(0, 10, count)
    x_train[np.arange(count), 200 + 10 * y_train] = 1  # something to learn
    x_val = (rng.random((100, 784)) < 0.3).astype(np.float32)
    return SimpleNamespace(x_train=x_train, y_train=y_train, x_val=x_val,
                           y_val=rng.integers(0, 10, 100), pixels_train=x_train.astype(np.uint8),
                           pixels_val=x_val.astype(np.uint8),
                           pixel_table=np.arange(256, dtype=np.float32))


@on_jax
@pytest.mark.parametrize(("optimizer", "clip_norm"), [
    ("adam", None), ("sgd", None), ("rmsprop", None), ("adam", 0.05)])
def test_dropping_dead_columns_changes_nothing(monkeypatch, optimizer: str,
                                               clip_norm: float | None):
    """Training on the live columns only gives the weights, optimizer state and logs of
    training on all of them (to float rounding), and leaves the dead kernel rows and their
    optimizer slots exactly as they were; clipping by the global norm too (the dead rows'
    zero gradients add nothing to the norm)."""
    from mnist_cli.model import build_model, compile_model
    from mnist_cli.runtime import seed_everything
    from mnist_cli.training.engines import jax_fast
    from mnist_cli.training.engines.fast_common import Batches, train_epochs

    config = Config.model_validate({
        "seed": 4, "data": {"binarize": True},
        "model": {"layers": [784, 24, 16, 10], "dropout": 0.1},
        "train": {"optimizer": optimizer, "momentum": 0.9 if optimizer != "adam" else 0.0,
                  "learning_rate": 0.01, "batch_size": 50, "epochs": 3,
                  "clip_norm": clip_norm},
    })
    data = _data_with_dead_columns(610)  # 13 batches, the last one of 10 rows
    batches = Batches(len(data.y_train), config.train.batch_size)
    recorder = SimpleNamespace(epoch_started=lambda epoch: None,
                               epoch_ended=lambda epoch, logs: logs_seen.append(logs))
    trained = {}
    for minimum_epochs in (1, 10**6):  # with, then without dropping dead columns
        monkeypatch.setattr(jax_fast, "DEAD_COLUMNS_MIN_EPOCHS", minimum_epochs)
        seed_everything(config.seed)
        model = compile_model(build_model(config), config)
        model.optimizer.build(model.trainable_variables)
        initial_kernel = np.array(model.trainable_variables[0].numpy())
        program = jax_fast.JaxEpochs(model, config, data, batches)
        assert (program.live is not None) == (minimum_epochs == 1)
        logs_seen: list[dict] = []
        train_epochs(program, recorder, config, 0, batches)
        trained[minimum_epochs] = ([np.array(v.numpy()) for v in model.variables],
                                   [np.array(v.numpy()) for v in model.optimizer.variables],
                                   logs_seen)
        if minimum_epochs == 1:
            dead = np.r_[0:100, 754:784]
            assert program.live.tolist() == sorted(set(range(784)) - set(dead.tolist()))
            kernel = model.trainable_variables[0].numpy()
            np.testing.assert_array_equal(kernel[dead], initial_kernel[dead])
            assert not np.array_equal(kernel, initial_kernel)
            for variable in model.optimizer.variables:
                if tuple(variable.shape) == kernel.shape:
                    assert not np.any(variable.numpy()[dead])  # slots stay exactly 0
    (weights, slots, logs), (plain_weights, plain_slots, plain_logs) = trained.values()
    for ours, theirs in zip(weights + slots, plain_weights + plain_slots):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    for ours, theirs in zip(logs, plain_logs):
        assert ours == pytest.approx(theirs, rel=1e-5)


@on_jax
def test_a_long_epoch_in_pieces_trains_as_one_program_and_reports_its_batches(monkeypatch):
    """An epoch above `PIECE_MULTIPLY_ADDS` runs as several compiled pieces, so a progress
    bar can move inside it: the same weights and logs as the epoch in one program."""
    from mnist_cli.model import build_model, compile_model
    from mnist_cli.runtime import seed_everything
    from mnist_cli.training.engines import jax_fast
    from mnist_cli.training.engines.fast_common import Batches, train_epochs

    config = Config.model_validate({
        "seed": 2, "data": {"binarize": True}, "model": {"layers": [784, 24, 10], "dropout": 0.1},
        "train": {"batch_size": 50, "epochs": 2}})
    data = _data_with_dead_columns(610)
    batches = Batches(len(data.y_train), config.train.batch_size)
    results = {}
    for pieces in (False, True):
        if pieces:  # about 4 batches a piece
            monkeypatch.setattr(jax_fast, "PIECE_MULTIPLY_ADDS", 4 * 3 * 50 * (784 * 24 + 24 + 250))
        seed_everything(config.seed)
        model = compile_model(build_model(config), config)
        model.optimizer.build(model.trainable_variables)
        program = jax_fast.JaxEpochs(model, config, data, batches)
        assert (program.piece_batches < batches.number) == pieces
        seen: list = []
        events = SimpleNamespace(
            epoch_started=lambda epoch: None,
            epoch_ended=lambda epoch, logs, seen=seen: seen.append(logs),
            batch_ended=lambda epoch, done, total, seen=seen: seen.append((epoch, done, total)))
        train_epochs(program, events, config, 0, batches)
        results[pieces] = ([np.array(v.numpy()) for v in model.variables],
                           [entry for entry in seen if isinstance(entry, dict)],
                           [entry for entry in seen if isinstance(entry, tuple)])
    (whole, whole_logs, no_progress), (cut, cut_logs, progress) = results.values()
    assert no_progress == [] and progress[:4] == [(0, 4, 13), (0, 8, 13), (0, 12, 13),
                                                  (0, 13, 13)]
    for ours, theirs in zip(cut, whole):
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-7)
    for ours, theirs in zip(cut_logs, whole_logs):
        assert ours == pytest.approx(theirs, rel=1e-6)


@on_jax
def test_fast_engine_prints_epoch_lines_even_with_a_progress_bar(tmp_path, mnist_path):
    """Keras's progress bar stands in for the per-epoch lines only when Keras trains."""
    from mnist_cli.config import load_config
    from mnist_cli.training.pipeline import train

    config = load_config(tiny_config(tmp_path, mnist_path, "fast", train={"epochs": 2}))
    lines: list[str] = []
    train(config, echo=lines.append, progress_bar=True)
    assert [line.split(" - ")[0] for line in lines if line.startswith("epoch ")] == [
        "epoch 1/2", "epoch 2/2"]


@on_jax
def test_fast_engine_fills_the_compile_cache(tmp_path, mnist_path, jax_compile_cache):
    result = CliRunner().invoke(cli, ["train", "-c", str(tiny_config(
        tmp_path, mnist_path, "fast", train={"epochs": 1}))])
    assert result.exit_code == 0, result.output
    assert any(path.name.startswith("jit__epoch_program")
               for path in jax_compile_cache.iterdir())


@on_jax
def test_compile_cache_folder_and_a_cache_that_cannot_be_made(tmp_path, monkeypatch):
    from mnist_cli.training.engines import jax_cache

    monkeypatch.delenv("MNIST_CLI_JAX_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert jax_cache.compile_cache_folder() == tmp_path / "xdg" / "mnist-cli" / "jax"
    for off in ("off", "0", ""):
        monkeypatch.setenv("MNIST_CLI_JAX_CACHE", off)
        assert jax_cache.compile_cache_folder() is None
        assert jax_cache.enable_compile_cache() is None
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("MNIST_CLI_JAX_CACHE", str(tmp_path / "a-file" / "cache"))
    assert jax_cache.enable_compile_cache() is None  # cannot be created: run uncached


@on_jax
@pytest.mark.parametrize("changes", [
    {"train": {"optimizer": "adamw"}}, {"model": {"l2": 0.01}}, {"model": {"max_norm": 3.0}}])
def test_dead_columns_are_kept_where_dropping_them_would_not_be_exact(changes: dict):
    """Weight decay shrinks the dead rows, L2 gives them a gradient, max-norm counts them
    in each column's norm: the JAX engine then trains on every column."""
    from mnist_cli.model import build_model, compile_model
    from mnist_cli.training.engines import jax_fast
    from mnist_cli.training.engines.fast_common import Batches

    data = _data_with_dead_columns(100)
    for settings, dropped in (({}, True), (changes, False)):
        config = Config.model_validate({
            "data": {"binarize": True}, "model": {"layers": [784, 8, 10], **settings.get(
                "model", {})}, "train": {"epochs": 2, **settings.get("train", {})}})
        model = compile_model(build_model(config), config)
        model.optimizer.build(model.trainable_variables)
        program = jax_fast.JaxEpochs(model, config, data, Batches(100, 32))
        assert (program.live is not None) == dropped


def test_fast_engine_refuses_layers_it_would_train_differently():
    """Padding the last batch with zero-weight rows is exact for row-wise layers and for
    BatchNormalization given the row mask; the fast engines' loss adds the variables'
    regularizers but not activity regularizers. What this tool builds passes."""
    import keras

    from mnist_cli.config import Config
    from mnist_cli.model import build_model
    from mnist_cli.training.engines.fast_common import check_layers

    check_layers(build_model(Config.model_validate({"model": {
        "layers": [784, 16, 8, 10], "batch_norm": True, "dropout": 0.1, "l2": 0.01,
        "max_norm": 2.0}})))
    model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(8),
                              keras.layers.LayerNormalization(), keras.layers.Dense(10)])
    with pytest.raises(ConfigError, match="not LayerNormalization; use --engine fit"):
        check_layers(model)
    renormalised = keras.Sequential([keras.Input((784,)), keras.layers.Dense(8),
                                     keras.layers.BatchNormalization(renorm=True)])
    with pytest.raises(ConfigError, match="renorm"):
        check_layers(renormalised)
    penalised = keras.Sequential([keras.Input((784,)), keras.layers.Dense(
        10, activity_regularizer=keras.regularizers.L2(0.01))])
    with pytest.raises(ConfigError, match="activity_regularizer penalties"):
        check_layers(penalised)


# -------------------------------------------------------------- TensorFlow, in a subprocess

# Not importorskip: importing TensorFlow into the test process costs seconds and memory.
with_tensorflow = pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None,
                                     reason="TensorFlow is not installed")

# What the backend scripts below share: `mnist(...)` runs the CLI in this process and
# returns its exit code; `stop_after_the_first_epoch_then_resume(...)` trains as Ctrl-C
# would stop it after epoch 1 (exit 130), then resumes the run.
SCRIPT_PRELUDE = """
import sys
from pathlib import Path

from mnist_cli.training import interrupt
from mnist_cli.training.checkpoints import Checkpointer
from mnist_cli.cli import cli

config, out = sys.argv[1], Path(sys.argv[2])


def mnist(*arguments):
    try:
        code = cli.main(list(arguments), prog_name="mnist", standalone_mode=False)
    except SystemExit as exit:
        code = exit.code
    return code or 0


def stop_after_the_first_epoch_then_resume(*arguments):
    save_epoch = Checkpointer.save_epoch

    def stop_after_the_first_epoch(self, epoch):
        save_epoch(self, epoch)
        if epoch == 0:
            interrupt.request_stop()

    Checkpointer.save_epoch = stop_after_the_first_epoch
    try:
        assert mnist("train", *arguments) == 130
    finally:
        Checkpointer.save_epoch = save_epoch
    (run,) = Path(arguments[arguments.index("--out") + 1]).iterdir()
    assert mnist("train", "--resume", str(run)) == 0
"""

TENSORFLOW_RUNS = SCRIPT_PRELUDE + """
common = ["-c", config, "--backend", "tensorflow"]
assert mnist("train", *common, "--engine", "fast", "--out", str(out / "fast")) == 0
assert mnist("train", *common, "--engine", "fit", "--out", str(out / "fit")) == 0
# With dropout: uninterrupted, then stopped after epoch 1 (as Ctrl-C is) and resumed.
dropout = [*common, "--engine", "fast", "--set", "model.dropout=0.1"]
assert mnist("train", *dropout, "--out", str(out / "dropout")) == 0
stop_after_the_first_epoch_then_resume(*dropout, "--out", str(out / "stopped"))
# Distorted training digits on both engines, and an augmented run stopped and resumed.
augment = ["--set", "data.augment={rotation: 10, scale: 0.1, shear: 8, translation: 1.5, "
                    "elastic_alpha: 30, elastic_sigma: 5}"]
for engine in ("fast", "fit"):
    assert mnist("train", *common, *augment, "--engine", engine,
                 "--out", str(out / f"augmented-{engine}")) == 0
stop_after_the_first_epoch_then_resume(*common, *augment, "--engine", "fast",
                                       "--out", str(out / "augmented-stopped"))
# The distortion's formula on TensorFlow, for the test to compare with JAX's.
import numpy as np
from mnist_cli.config import Augment, DataConfig
from mnist_cli.data import augment as distortions
given = np.load(out.parent / "geometry-inputs.npz")
settings = Augment(rotation=20, scale=0.2, shear=10, translation=2, elastic_alpha=34,
                   elastic_sigma=4)
inverse, shift = distortions.affine_matrices(given["draws"], settings)
field = distortions.elastic_displacement(given["noise"], settings)
data = DataConfig(augment=settings)
features = [np.asarray(distortions.augmented_features(given["pixels"], given["rows"], 0, epoch,
                                                      data)) for epoch in (3, 3, 4)]
np.savez(out.parent / "geometry-tensorflow.npz",
         distorted=np.asarray(distortions.distort(given["images"], inverse, shift, field)),
         features=np.stack(features))
"""


def run_script(script: str, config_path: Path, outputs: Path,
               removed: tuple[str, ...] = ("KERAS_BACKEND",)) -> subprocess.CompletedProcess:
    """Run one of the scripts above in a fresh Python, without the `removed` variables."""
    environment = {key: value for key, value in os.environ.items() if key not in removed}
    result = subprocess.run([sys.executable, "-c", script, str(config_path), str(outputs)],
                            capture_output=True, text=True, env=environment, cwd=PROJECT,
                            check=False, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


def without_timings(history: list[dict], metrics: dict) -> tuple[list[dict], dict]:
    measured = {"seconds", "train_seconds", "samples_per_second", "peak_memory_mib"}
    return ([{key: value for key, value in row.items() if key not in measured}
             for row in history], {key: value for key, value in metrics.items()
                                   if key not in measured})


@pytest.mark.slow
@with_tensorflow
def test_tensorflow_engines_agree_resume_exactly_and_stay_quiet(tmp_path: Path,
                                                                 mnist_path: Path):
    """One process on TensorFlow: the fast and fit engines, then the fast engine with
    dropout uninterrupted and stopped after epoch 1 then resumed (the same numbers: the
    seed generators' states are Keras variables, saved and restored); the same with
    distorted digits (`data.augment`), whose formula gives JAX's numbers; and not one
    native log line from TensorFlow on the way."""
    config_path = tiny_config(tmp_path, mnist_path, "auto")
    generator = np.random.default_rng(0)
    pixels = np.load(mnist_path)["x_train"][:6]
    inputs = {"draws": generator.uniform(-1, 1, (6, 5)).astype(np.float32),
              "noise": generator.uniform(-1, 1, (6, 2, 11, 11)).astype(np.float32),
              "images": pixels.astype(np.float32), "pixels": pixels,
              "rows": np.arange(10, 16, dtype=np.int32)}
    np.savez(tmp_path / "geometry-inputs.npz", **inputs)
    result = run_script(TENSORFLOW_RUNS, config_path, tmp_path / "outputs",
                        removed=("KERAS_BACKEND", "TF_CPP_MIN_LOG_LEVEL"))
    noise = [line for line in result.stderr.splitlines()
             if any(mark in line for mark in NATIVE_NOISE)]
    assert noise == [], "TensorFlow's native log lines reached the terminal"
    (fast_history, fast), (fit_history, fit) = (
        run_results(tmp_path / "outputs" / engine) for engine in ("fast", "fit"))
    assert (fast["engine"], fit["engine"]) == ("fast", "fit")
    assert fast["versions"]["backend"] == "tensorflow"
    print(f"\nTensorFlow, 3 epochs: test accuracy fast {fast['test_accuracy']} / fit "
          f"{fit['test_accuracy']}; final loss fast {fast_history[-1]['loss']:.4f} / fit "
          f"{fit_history[-1]['loss']:.4f}")
    assert abs(fast["test_accuracy"] - fit["test_accuracy"]) <= 0.05
    assert fast_history[-1]["loss"] == pytest.approx(fit_history[-1]["loss"], rel=0.10)
    assert fast_history[-1]["loss"] < fast_history[0]["loss"]
    resumed = without_timings(*run_results(tmp_path / "outputs" / "stopped"))
    assert resumed == without_timings(*run_results(tmp_path / "outputs" / "dropout"))
    # Distortions on TensorFlow: both engines train on them (other numbers than the plain
    # run, close to each other), a stopped run continues exactly, augmentations.png.
    (augmented_history, augmented), (_, augmented_fit) = (
        run_results(tmp_path / "outputs" / f"augmented-{engine}") for engine in ("fast", "fit"))
    assert augmented_history[-1]["loss"] > fast_history[-1]["loss"]  # harder digits
    assert abs(augmented["test_accuracy"] - augmented_fit["test_accuracy"]) <= 0.05
    resumed = without_timings(*run_results(tmp_path / "outputs" / "augmented-stopped"))
    assert resumed == without_timings(augmented_history, augmented)
    (run,) = (tmp_path / "outputs" / "augmented-fast").iterdir()
    assert (run / "augmentations.png").stat().st_size > 10_000
    geometry = np.load(tmp_path / "geometry-tensorflow.npz")
    features = geometry["features"]
    np.testing.assert_array_equal(features[0], features[1])  # a function of (seed, epoch, row)
    assert not np.allclose(features[0], features[2])  # another epoch, other distortions
    assert features.shape == (3, 6, 784) and 0 <= features.min() and features.max() <= 1
    if activate_backend("auto") == "jax":  # the same formula as on JAX, in this process
        from mnist_cli.config import Augment
        from mnist_cli.data import augment as distortions

        settings = Augment(rotation=20, scale=0.2, shear=10, translation=2, elastic_alpha=34,
                           elastic_sigma=4)
        inverse, shift = distortions.affine_matrices(inputs["draws"], settings)
        field = distortions.elastic_displacement(inputs["noise"], settings)
        expected = distortions.distort(inputs["images"], inverse, shift, field)
        np.testing.assert_allclose(geometry["distorted"], np.asarray(expected), atol=1e-3)


# -------------------------------------------------------------------- torch, in a subprocess

with_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                reason="torch is not installed (pip install torch)")

TORCH_RUNS = SCRIPT_PRELUDE + """
common = ["-c", config, "--backend", "torch"]
assert mnist("train", *common, "--engine", "fast", "--out", str(out / "refused")) == 2
assert mnist("train", *common, "--out", str(out / "first")) == 0
assert mnist("train", *common, "--out", str(out / "second")) == 0
(run,) = (out / "first").iterdir()
assert mnist("evaluate", str(run)) == 0
stop_after_the_first_epoch_then_resume(*common, "--out", str(out / "stopped"))
"""


@with_torch
def test_torch_backend_trains_repeatably_evaluates_and_resumes(tmp_path: Path,
                                                               mnist_path: Path):
    """One process on torch: `--engine fast` is refused (exit 2, no run left), `auto` is
    `fit` and is recorded; two seeded runs give the same numbers; `evaluate` works from the
    run directory; a run stopped after epoch 1 resumes to all its epochs. (torch shuffles
    with its own generator, so the resumed epochs see other batches than an uninterrupted
    run: the README says so; epoch 1, trained before the stop, is the same.)"""
    config_path = tiny_config(tmp_path, mnist_path, "auto")
    run_script(TORCH_RUNS, config_path, tmp_path / "outputs")
    outputs = tmp_path / "outputs"
    assert not (outputs / "refused").exists() or not any((outputs / "refused").iterdir())
    (first_history, first), (second_history, second) = (
        run_results(outputs / name) for name in ("first", "second"))
    assert (first["engine"], first["versions"]["backend"]) == ("fit", "torch")
    assert without_timings(first_history, first) == without_timings(second_history, second)
    assert first_history[-1]["loss"] < first_history[0]["loss"]
    (run,) = (outputs / "first").iterdir()
    evaluation = json.loads((run / "evaluation.json").read_text())
    assert evaluation["backend"] == "torch"
    assert evaluation["accuracy"] == pytest.approx(first["test_accuracy"], abs=1e-9)
    resumed_history, resumed = run_results(outputs / "stopped")
    assert [row["epoch"] for row in resumed_history] == [1, 2, 3]
    assert without_timings(resumed_history[:1], {}) == without_timings(first_history[:1], {})
    assert resumed["engine"] == "fit"


@pytest.mark.slow
def test_verbose_shows_tensorflows_native_log_lines(tmp_path: Path):
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("KERAS_BACKEND", "TF_CPP_MIN_LOG_LEVEL")}
    arguments = [sys.executable, "-m", "mnist_cli", "train", "-c",
                 str(PROJECT / "configs" / "quickstart.yaml"), "--backend", "tensorflow",
                 "--dry-run"]
    verbose = subprocess.run([*arguments, "--verbose"], capture_output=True, text=True,
                             env=environment, check=False, timeout=300)
    assert verbose.returncode == 0, verbose.stderr
    assert "Total params" in verbose.stdout  # the summary, which imports Keras
    if not any(mark in verbose.stderr for mark in NATIVE_NOISE):
        pytest.skip("TensorFlow writes no native log lines on this machine")
