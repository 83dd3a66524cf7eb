"""Shared fixtures.

MNIST itself is never part of the project. Tests use the real dataset when the environment
variable `MNIST_DATA` points at a copy, and otherwise a small synthetic stand-in made here:
seven-segment digits with soft edges, randomly shifted, dimmed and noised, so a tiny Dense
network learns them well above chance in a couple of epochs (a 784-32-10 net reaches about
85% after 2 epochs on 1800 of them), which is what the training tests need.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

IMAGE_SIDE = 28

# Seven-segment strokes inside a 12x20 box centred in the 28x28 image, as
# (row slice, column slice). Thickness 2, softened by a 3x3 blur; the box leaves 4 pixels of
# margin, so blur plus a shift of 1 pixel never wraps a stroke around the border. (Larger
# shifts make thin strokes stop overlapping and slow a small Dense net down a lot.)
_TOP, _MIDDLE, _BOTTOM, _LEFT, _RIGHT = 4, 13, 22, 8, 18
_SEGMENTS = {
    "a": (slice(_TOP, _TOP + 2), slice(_LEFT, _RIGHT + 2)),
    "b": (slice(_TOP, _MIDDLE + 2), slice(_RIGHT, _RIGHT + 2)),
    "c": (slice(_MIDDLE, _BOTTOM + 2), slice(_RIGHT, _RIGHT + 2)),
    "d": (slice(_BOTTOM, _BOTTOM + 2), slice(_LEFT, _RIGHT + 2)),
    "e": (slice(_MIDDLE, _BOTTOM + 2), slice(_LEFT, _LEFT + 2)),
    "f": (slice(_TOP, _MIDDLE + 2), slice(_LEFT, _LEFT + 2)),
    "g": (slice(_MIDDLE, _MIDDLE + 2), slice(_LEFT, _RIGHT + 2)),
}
_DIGIT_SEGMENTS = [
    "abcdef", "bc", "abged", "abgcd", "fgbc", "afgcd", "afgedc", "abc", "abcdefg", "abcdfg",
]
_MAX_SHIFT = 1


def _digit_templates() -> np.ndarray:
    """(10, 28, 28) float templates in [0, 1]: 1.0 on the strokes, fading at their edges."""
    strokes = np.zeros((10, IMAGE_SIDE, IMAGE_SIDE), dtype=np.float32)
    for digit, segments in enumerate(_DIGIT_SEGMENTS):
        for segment in segments:
            rows, columns = _SEGMENTS[segment]
            strokes[digit, rows, columns] = 1.0
    blurred = sum(
        np.roll(strokes, (row_shift, column_shift), axis=(1, 2))
        for row_shift in (-1, 0, 1)
        for column_shift in (-1, 0, 1)
    )
    return np.minimum(blurred / 4, 1.0)


def _synthetic_split(count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.permutation(np.arange(count) % 10).astype(np.uint8)  # balanced classes
    brightness = rng.uniform(150, 255, size=(count, 1, 1)).astype(np.float32)
    images = _digit_templates()[labels] * brightness
    shifts = rng.integers(-_MAX_SHIFT, _MAX_SHIFT + 1, size=(count, 2))
    for row_shift in range(-_MAX_SHIFT, _MAX_SHIFT + 1):
        for column_shift in range(-_MAX_SHIFT, _MAX_SHIFT + 1):
            chosen = (shifts[:, 0] == row_shift) & (shifts[:, 1] == column_shift)
            images[chosen] = np.roll(images[chosen], (row_shift, column_shift), axis=(1, 2))
    images += rng.normal(0.0, 30.0, size=images.shape).astype(np.float32)
    return np.clip(images, 0, 255).astype(np.uint8), labels


def make_synthetic_mnist(n_train: int, n_test: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A small learnable MNIST stand-in in the Keras layout: x_* uint8 (N, 28, 28), y_* uint8.

    Write it with `np.savez(path, **make_synthetic_mnist(...))`.
    """
    rng = np.random.default_rng(seed)
    x_train, y_train = _synthetic_split(n_train, rng)
    x_test, y_test = _synthetic_split(n_test, rng)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def runs_on_jax() -> bool:
    """Whether training here runs on JAX; for skip conditions, which are evaluated at import:
    where no backend (or a bad KERAS_BACKEND) is set up, the test is skipped, not an error."""
    from mnist_cli.errors import ConfigError
    from mnist_cli.runtime import resolve_backend

    try:
        return resolve_backend("auto") == "jax"
    except ConfigError:
        return False


@pytest.fixture(scope="session", autouse=True)
def jax_compile_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fast engine's JAX compilation cache, for this session only: the tests neither
    read nor fill the user's own (`~/.cache/mnist-cli/jax`), and the training subprocesses
    they start share it, so each compiles only what the others have not."""
    folder = tmp_path_factory.mktemp("jax-cache")
    os.environ["MNIST_CLI_JAX_CACHE"] = str(folder)
    return folder


@pytest.fixture(scope="session")
def mnist_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real MNIST when `MNIST_DATA` points at a copy, else 3000/1000 synthetic digits."""
    from_environment = os.environ.get("MNIST_DATA")
    if from_environment and Path(from_environment).exists():
        return Path(from_environment)
    path = tmp_path_factory.mktemp("synthetic-mnist") / "mnist.npz"
    np.savez(path, **make_synthetic_mnist(3000, 1000, seed=0))
    return path


def tiny_config_data(mnist_path: Path, output_root: Path, **sections) -> dict:
    """The config of a tiny, fast run: 2000 training images, 2 epochs of a 784-32-10 net.

    Each keyword changes one section: a dict updates it, anything else replaces it
    (`train={"epochs": 1}`, `name="engines"`).
    """
    data = {
        "name": "tiny",
        "seed": 0,
        "data": {
            "path": str(mnist_path),
            "subset": {"train": 2000, "test": 500},
            "validation_split": 0.1,
        },
        "model": {"layers": [784, 32, 10]},
        "train": {"epochs": 2, "batch_size": 64},
        "output": {"root": str(output_root)},
    }
    for section, value in sections.items():
        if isinstance(value, dict):
            data.setdefault(section, {}).update(value)
        else:
            data[section] = value
    return data


def write_tiny_config(path: Path, mnist_path: Path, output_root: Path, **sections) -> Path:
    """`tiny_config_data(...)` written as YAML to `path`."""
    path.write_text(yaml.safe_dump(tiny_config_data(mnist_path, output_root, **sections)))
    return path


@pytest.fixture
def small_config_dict(mnist_path: Path, tmp_path: Path) -> dict:
    return tiny_config_data(mnist_path, tmp_path / "outputs")


def start_mnist_serve(output_root: Path, *arguments: str) -> tuple[subprocess.Popen, str]:
    """`mnist serve --out OUTPUT_ROOT --port 0 ...` in a subprocess, as a user starts it;
    returns the process and the page's address once it is printed (stop it with SIGINT)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "mnist_cli", "serve", "--out", str(output_root), "--port", "0",
         *arguments],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.monotonic() + 120
    for line in process.stdout:
        if line.startswith("Open "):
            return process, line.split()[1]
        if time.monotonic() > deadline:
            break
    process.kill()
    raise AssertionError(f"mnist serve did not start: {process.stderr.read()}")


def stop_after_epoch(monkeypatch: pytest.MonkeyPatch, last: int):
    """Make training stop, as a first Ctrl-C does, once epoch `last` (0-based) is
    checkpointed. Returns the real `Checkpointer.save_epoch`, to put back before a resume."""
    from mnist_cli.training import interrupt
    from mnist_cli.training.checkpoints import Checkpointer

    save_epoch = Checkpointer.save_epoch

    def save_then_stop(self, epoch):
        save_epoch(self, epoch)
        if epoch == last:
            interrupt.request_stop()

    monkeypatch.setattr(Checkpointer, "save_epoch", save_then_stop)
    return save_epoch
