"""Training engines: what runs the epochs of `train()`.

- `fit`: Keras's own `model.fit` (`train.fit_with_keras`), the reference, on every backend.
- `fast`: each epoch is one compiled program over training data already on the device, with
  the Keras model's own layers, loss functions and optimizer: `jax_fast` (Keras's stateless
  API inside one `jax.jit` with a `jax.lax.scan` over the batches) and `tensorflow_fast` (one
  `tf.function(jit_compile=True)` looping over the batches). `fast_common` holds what the
  two share: the per-epoch loop of the engine contract (see `train.py`), the batches and
  their row weights, the compact uint8 copy of the features.

`auto` picks `fast` where it exists (JAX, TensorFlow) and `fit` elsewhere (torch).

This module imports nothing heavy: the engine is resolved before Keras is imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mnist_cli.errors import ConfigError, RunDirError

if TYPE_CHECKING:
    from mnist_cli.checkpoints import Checkpoint

ENGINES = ("auto", "fit", "fast")
FAST_BACKENDS = ("jax", "tensorflow")


def resolve_engine(requested: str, backend: str) -> str:
    """The engine that trains on `backend`: 'fit' or 'fast'.

    `auto` means the fast engine where this tool has one, because it trains the same
    network to the same accuracy in well under half the time (README, Performance);
    `fast` on a backend without one is a config error rather than a silent fallback.
    """
    if requested not in ENGINES:
        raise ConfigError(f"train.engine must be one of {', '.join(ENGINES)} (got {requested!r})")
    if requested == "auto":
        return "fast" if backend in FAST_BACKENDS else "fit"
    if requested == "fast" and backend not in FAST_BACKENDS:
        raise ConfigError(
            f"train.engine: the fast engine runs on the {' and '.join(FAST_BACKENDS)} backends, "
            f"not on {backend}; use --engine fit (or auto) there"
        )
    return requested


def check_resumable(checkpoint: Checkpoint | None) -> None:
    """The fast engine continues from epoch ends only. A checkpoint saved in the middle of
    an epoch comes from the fit engine, whose run's config.yaml says `engine: fit`: it was
    edited since."""
    if checkpoint is not None and checkpoint.batches_done:
        raise RunDirError(
            "the checkpoint was saved in the middle of an epoch by the fit engine, but "
            "config.yaml now says train.engine: fast; set it back to fit to resume this run"
        )
