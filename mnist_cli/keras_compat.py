"""Every use of Keras internals, in one place (checked on Keras 3.15.1).

Each function below reaches past Keras's public API for a reason it states; nothing else in
mnist-cli imports `keras.src` or reads a private attribute. A Keras upgrade that moves one
of these breaks this module alone, and `tests/test_startup.py` and the engine tests say
which. Import this module only after `runtime.start` chose the backend.
"""

from __future__ import annotations

import contextlib
from typing import Any


def reset_global_seed(seed: int) -> None:
    """The Keras half of `keras.utils.set_random_seed`: the global seed and a fresh global
    seed generator. Keras's own function also seeds TensorFlow whenever it is installed,
    which imports it (seconds and hundreds of MB) even on JAX; `runtime.seed_everything`
    seeds the backend itself. (`keras.src.backend.common.global_state`, `keras.src.random.
    seed_generator.GLOBAL_SEED_GENERATOR`, `keras.src.utils.rng_utils.GLOBAL_RANDOM_SEED`.)
    """
    from keras.src.backend.common import global_state
    from keras.src.random import seed_generator
    from keras.src.utils.rng_utils import GLOBAL_RANDOM_SEED

    global_state.set_global_attribute(GLOBAL_RANDOM_SEED, seed)
    global_state.set_global_attribute(seed_generator.GLOBAL_SEED_GENERATOR, None)


def stop_tensorflow_probe() -> None:
    """Tell Keras that TensorFlow is absent, so that its serialization code does not import
    it just to recognise TensorFlow objects (which a model of this tool never holds):
    seconds and a large part of peak memory on the JAX and torch backends. Keras's lazy
    module caches the answer in `keras.src.utils.module_utils.tensorflow._available`."""
    from keras.src.utils import module_utils

    module_utils.tensorflow._available = False


def sync_jax_state(model: Any) -> None:
    """On JAX, `model.fit` keeps the training state outside the Keras variables between
    batches; `Model.jax_state_sync()` (no public equivalent) writes it back, so a checkpoint
    taken in the middle of an epoch saves the current weights. A no-op elsewhere."""
    sync = getattr(model, "jax_state_sync", None)
    if sync is not None:
        sync()


@contextlib.contextmanager
def fit_keeps_training_weights(optimizer: Any):
    """`model.fit` ends by `optimizer.finalize_variable_values`, which with EMA replaces the
    weights by their average. The fit engine calls fit once per epoch (or part of one), so
    that would restart every epoch from the average; training's end does it once instead."""
    finalize = optimizer.finalize_variable_values
    optimizer.finalize_variable_values = lambda variables: None
    try:
        yield
    finally:
        optimizer.finalize_variable_values = finalize


def is_plain_dense(layer: Any) -> bool:
    """A Dense layer whose call is exactly activation(x @ kernel + bias): not quantized
    (`Dense.quantization_mode`) and without LoRA (`Dense.lora_enabled`), which change the
    call. The JAX fast engine computes such a layer's forward pass itself."""
    import keras

    return (isinstance(layer, keras.layers.Dense)
            and getattr(layer, "quantization_mode", None) is None
            and not getattr(layer, "lora_enabled", False))
