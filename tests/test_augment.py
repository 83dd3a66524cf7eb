"""Distortions of the training digits (`data/augment.py`): each one is what its formula
says, they are a function of (seed, epoch, row), they never touch validation or test data,
and the fit and fast engines train on the same distorted digits (JAX; TensorFlow's engines
are tested in test_engines.py, in a TensorFlow process)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import runs_on_jax, write_tiny_config

from mnist_cli.cli import cli
from mnist_cli.config import Augment, DataConfig
from mnist_cli.runs import read_history
from mnist_cli.runtime import activate_backend

on_jax = pytest.mark.skipif(not runs_on_jax(),
                            reason="the distortions are JAX code; these runs use the JAX backend")
DISTORTIONS = {"rotation": 15.0, "scale": 0.1, "shear": 10.0, "translation": 2.0,
               "elastic_alpha": 34.0, "elastic_sigma": 4.0}


@pytest.fixture(autouse=True)
def keras_backend() -> str:
    return activate_backend("auto")


@pytest.fixture
def augment():
    pytest.importorskip("jax")
    from mnist_cli.data import augment

    return augment


def digit(seed: int = 0) -> np.ndarray:
    """A (1, 28, 28) float image with ink in its middle, asymmetric (an 'L' and a dot)."""
    image = np.zeros((1, 28, 28), np.float32)
    image[0, 8:20, 10:13] = 200.0
    image[0, 17:20, 10:18] = 255.0
    image[0, 9, 16] = 100.0
    return image


def no_affine(batch: int = 1):
    return np.broadcast_to(np.eye(2, dtype=np.float32), (batch, 2, 2)), np.zeros((batch, 2),
                                                                                 np.float32)


def test_a_whole_pixel_translation_moves_every_pixel_by_that_much(augment):
    image = digit()
    inverse, _ = no_affine()
    shifted = np.asarray(augment.distort(image, inverse, np.array([[3.0, -2.0]], np.float32)))
    # x (columns) +3, y (rows) -2: output (r, c) is input (r + 2, c - 3).
    expected = np.zeros_like(image)
    expected[0, :-2, 3:] = image[0, 2:, :-3]
    np.testing.assert_allclose(shifted, expected, atol=1e-4)


def test_a_quarter_turn_is_rot90_and_a_symmetric_image_turns_into_itself(augment):
    image = digit()
    draws = np.array([[1.0, 0, 0, 0, 0]], np.float32)  # rotation at its largest: 90 degrees
    inverse, shift = augment.affine_matrices(draws, Augment(rotation=90.0))
    turned = np.asarray(augment.distort(image, inverse, shift))
    candidates = [np.rot90(image[0], k) for k in (1, 3)]
    assert min(np.abs(turned[0] - candidate).max() for candidate in candidates) < 1e-3
    ring = np.zeros((1, 28, 28), np.float32)
    ring[0, 9:19, 9:19] = 255.0
    ring[0, 11:17, 11:17] = 0.0
    np.testing.assert_allclose(np.asarray(augment.distort(ring, inverse, shift)), ring, atol=1e-3)


def test_scale_shear_and_elastic_do_what_their_formulas_say(augment):
    image = digit()
    inverse, shift = augment.affine_matrices(np.array([[0, 1.0, 0, 0, 0]], np.float32),
                                             Augment(scale=0.5))
    # Scale 1.5 about the centre: output pixel q samples c + (q - c) / 1.5.
    np.testing.assert_allclose(np.asarray(inverse)[0], np.eye(2) / 1.5, rtol=1e-6)
    inverse, shift = augment.affine_matrices(np.array([[0, 0, 1.0, 0, 0]], np.float32),
                                             Augment(shear=45.0))
    np.testing.assert_allclose(np.asarray(inverse)[0], [[1, -1], [0, 1]], atol=1e-6)
    # A zero elastic field is the identity; a constant one of 1 pixel a translation.
    identity, none = no_affine()
    still = augment.distort(image, identity, none, np.zeros((1, 2, 28, 28), np.float32))
    np.testing.assert_allclose(np.asarray(still), image, atol=1e-5)
    field = np.ones((1, 2, 28, 28), np.float32)  # samples (x + 1, y + 1): moves ink up-left
    moved = np.asarray(augment.distort(image, identity, none, field))
    np.testing.assert_allclose(moved[0, :-1, :-1], image[0, 1:, 1:], atol=1e-4)


def test_the_elastic_field_has_simards_size_and_alpha_zero_changes_nothing(augment):
    settings = Augment(elastic_alpha=34.0, elastic_sigma=4.0)
    size = augment.elastic_grid_size(4.0)
    noise = np.random.default_rng(0).uniform(-1, 1, (400, 2, size, size)).astype(np.float32)
    field = np.asarray(augment.elastic_displacement(noise, settings))
    assert field.std() == pytest.approx(augment.simard_field_std(34.0, 4.0), rel=0.1)
    # Smooth: neighbouring pixels move almost alike.
    assert np.abs(np.diff(field, axis=-1)).mean() < 0.25 * np.abs(field).mean()
    data = DataConfig(scale=False, flatten=False, augment=Augment(elastic_alpha=0.0))
    pixels = (digit() * 1).astype(np.uint8)
    same = np.asarray(augment.augmented_features(pixels, np.array([5]), 0, 3, data))
    np.testing.assert_allclose(same, pixels.astype(np.float32), atol=1e-4)


def test_the_pen_thickens_thins_and_fades_the_ink(augment):
    image = np.repeat(digit(), 4, axis=0)
    width = np.array([1.0, -1.0, 0.0, 0.5], np.float32)
    fading = np.array([0.0, 0.0, 0.4, 0.0], np.float32)
    changed = np.asarray(augment.restroke(image, width, fading))
    ink = (image[0] > 0).sum()
    assert (changed[0] > 0).sum() > ink and changed[0].max() == image[0].max()  # thicker
    assert 0 < (changed[1] > 0).sum() < ink  # thinner: the 3-wide bar stays, 1-wide parts go
    np.testing.assert_allclose(changed[2], image[2] * 0.6, rtol=1e-6)  # faded
    assert ink < (changed[3] > 0).sum() and changed[3].sum() < changed[0].sum()  # halfway


def test_the_pen_leaves_the_geometry_s_distortions_as_they_were(augment):
    """Turning stroke or contrast on draws from a stream of its own: the affine and
    elastic distortions of every image stay those of a run without them."""
    import jax

    pixels = np.repeat(digit().astype(np.uint8), 3, axis=0)
    rows = np.array([3, 4, 5])

    def features(**pen):
        data = DataConfig(augment=Augment(**DISTORTIONS, **pen), flatten=True)
        function = jax.jit(lambda p, r: augment.augmented_features(p, r, 0, 1, data))
        return np.asarray(function(pixels, rows))

    plain, faded = features(), features(contrast=0.5)
    scale = faded.max(axis=1, keepdims=True) / plain.max(axis=1, keepdims=True)
    np.testing.assert_allclose(faded, plain * scale, atol=1e-5)
    assert (scale < 1).all() and (scale > 0.5 - 1e-6).all()


def test_distortions_are_a_function_of_seed_epoch_and_row(augment):
    data = DataConfig(augment=Augment(**DISTORTIONS), flatten=True)
    pixels = np.repeat(digit().astype(np.uint8), 4, axis=0)
    rows = np.array([7, 8, 9, 10])

    import jax

    compiled = jax.jit(lambda pixels, rows, seed, epoch: augment.augmented_features(
        pixels, rows, seed, epoch, data))

    def features(seed, epoch, rows, pixels=pixels):
        return np.asarray(compiled(pixels, rows, np.int32(seed), np.int32(epoch)))

    first = features(0, 1, rows)
    np.testing.assert_array_equal(first, features(0, 1, rows))
    np.testing.assert_allclose(first[2:3], features(0, 1, rows[2:3], pixels[2:3]), atol=1e-6)
    assert not np.allclose(first[0], first[1])  # another row, another distortion
    assert not np.allclose(first, features(0, 2, rows))  # another epoch
    assert not np.allclose(first, features(1, 1, rows))  # another seed
    assert first.shape == (4, 784) and 0.0 <= first.min() and first.max() <= 1.0 + 1e-6


@pytest.mark.slow
@on_jax
def test_fit_and_fast_train_on_the_same_distortions_and_test_data_is_never_distorted(
        tmp_path: Path, mnist_path: Path):
    """Both engines on JAX, from the same weights: the same history to 1e-4 and the same
    test accuracy; the test metrics are those of the undistorted test digits (evaluate
    agrees with metrics.json); augmentations.png is written."""
    histories, runs = {}, {}
    for engine in ("fit", "fast"):
        config = write_tiny_config(
            tmp_path / f"{engine}.yaml", mnist_path, tmp_path / engine, name=engine,
            data={"augment": DISTORTIONS, "subset": {"train": 1000, "test": 200}},
            train={"epochs": 2, "engine": engine, "tensorboard": False,
                   "schedule": {"name": "exponential", "factor": 0.5}})
        result = CliRunner().invoke(cli, ["train", "-c", str(config)])
        assert result.exit_code == 0, result.output
        (runs[engine],) = (tmp_path / engine).iterdir()
        histories[engine] = read_history(runs[engine] / "history.csv")
    for fit_row, fast_row in zip(histories["fit"], histories["fast"]):
        for key in ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"):
            assert fast_row[key] == pytest.approx(fit_row[key], abs=1e-4)
    assert [row["learning_rate"] for row in histories["fast"]] == [0.001, 0.0005]
    assert (runs["fast"] / "augmentations.png").stat().st_size > 10_000
    evaluation = CliRunner().invoke(cli, ["evaluate", str(runs["fast"]), "--json"])
    assert evaluation.exit_code == 0, evaluation.output
    assert json.loads(evaluation.output)["training_metrics"]["agrees"]


@on_jax
def test_validation_and_test_features_are_the_undistorted_ones(tmp_path, mnist_path):
    """The prepared validation and test sets of an augmented config are those of the same
    config without augmentation (only training batches are distorted)."""
    from mnist_cli.config import load_config
    from mnist_cli.data import prepare

    path = write_tiny_config(tmp_path / "a.yaml", mnist_path, tmp_path, data={
        "augment": DISTORTIONS})
    augmented = load_config(path)
    plain = augmented.model_copy(deep=True)
    plain.data.augment = None
    with_augment, without = prepare(augmented), prepare(plain)
    np.testing.assert_array_equal(with_augment.x_val, without.x_val)
    np.testing.assert_array_equal(with_augment.x_test, without.x_test)
