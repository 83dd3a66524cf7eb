"""Training engines: what runs the epochs, all called the same way through `run`.

- `fit`: Keras's own `model.fit`, the reference, on every backend.
- `fast`: each epoch is one compiled program over training data already on the device, with
  the Keras model's own layers, loss functions and optimizer: `jax_fast` (one `jax.jit`
  with a `jax.lax.scan` over the batches) and `tensorflow_fast` (one
  `tf.function(jit_compile=True)`); `fast_common` holds what the two share.

`contract` states what an engine does and is given (`EngineJob`, `EpochEvents`) and the
shuffling rule every engine follows. A new engine is a module with `train(job)`, named in
`_engine_module` below and in `choices.ENGINES`. `auto` picks `fast` where it exists (JAX,
TensorFlow) and `fit` elsewhere (torch). This module imports nothing heavy: the engine is
resolved before Keras is imported.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from mnist_cli.choices import ENGINES, FAST_BACKENDS
from mnist_cli.errors import ConfigError, RunDirError

if TYPE_CHECKING:
    from mnist_cli.training.checkpoints import Checkpoint
    from mnist_cli.training.engines.contract import Engine, EngineJob


def resolve_engine(requested: str, backend: str) -> str:
    """The engine that trains on `backend`: 'fit' or 'fast'.

    `auto` means the fast engine where this tool has one, because it trains the same
    network to the same accuracy in well under half the time (docs/performance.md);
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


def check_data_parallel(engine: str, devices: int, batch_size: int, train_count: int,
                        validation_count: int) -> None:
    """Data parallel training splits every batch into `devices` equal parts. The fast
    engine pads its last batch to a full one, so only the batch size must divide; `fit`
    also trains and validates on the short last batches, which must divide too."""
    if devices == 1:
        return
    sizes = {"train.batch_size": batch_size}
    if engine == "fit":
        sizes["the last training batch"] = train_count % batch_size
        sizes["the last validation batch"] = validation_count % batch_size
    for what, size in sizes.items():
        if size % devices:
            raise ConfigError(
                f"runtime.devices: {devices} devices split every batch in {devices} equal "
                f"parts, but {what} has {size} samples; choose a batch size (and, with the "
                f"fit engine, data sizes) that {devices} divides, or --engine fast")


def stops_inside_epochs(engine: str) -> bool:
    """Whether Ctrl-C stops `engine` after the current batch (fit) rather than at the end
    of the current epoch (fast: an epoch is one compiled program)."""
    return engine == "fit"


def _engine_module(engine: str, backend: str) -> Engine:
    if engine == "fit":
        name = "fit"
    elif engine == "fast" and backend in FAST_BACKENDS:
        name = f"{backend}_fast"
    else:  # resolve_engine refuses this before any run directory exists
        raise ConfigError(f"train.engine: no {engine} engine on the {backend} backend")
    return importlib.import_module(f"{__name__}.{name}")


def prepare_process(engine: str, backend: str) -> None:
    """What an engine sets up before anything compiles in this process: the JAX fast
    engine's persistent compilation cache. Call once the backend is chosen."""
    if engine == "fast" and backend == "jax":
        from mnist_cli.training.engines.jax_cache import enable_compile_cache

        enable_compile_cache()


def run(engine: str, backend: str, job: EngineJob) -> None:
    """Train `job` with `engine` ('fit' or 'fast', from `resolve_engine`) on `backend`."""
    _engine_module(engine, backend).train(job)
