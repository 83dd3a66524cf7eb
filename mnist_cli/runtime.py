"""The runtime every command that needs Keras sets up first: backend, determinism, seeds.

Keras reads `KERAS_BACKEND` once, at import time, so a command calls `start()` before its
first `import keras` (inside the function that needs it): `mnist --help` and config checks
never pay for importing TensorFlow or JAX.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

from mnist_cli.choices import BACKEND_CHOICES, BACKENDS
from mnist_cli.errors import ConfigError

XLA_DETERMINISTIC_FLAG = "--xla_gpu_deterministic_ops=true"


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def resolve_backend(requested: str = "auto") -> str:
    """The backend to use: an explicit choice, else `KERAS_BACKEND`, else the fastest installed.

    JAX is preferred when installed (the `jax` extra): the README's performance section says
    why; TensorFlow, which the base package installs, is the fallback.
    """
    if requested not in BACKEND_CHOICES:
        raise ConfigError(
            f"backend must be one of {', '.join(BACKEND_CHOICES)} (got {requested!r})")
    if requested == "auto":
        from_environment = os.environ.get("KERAS_BACKEND", "").strip()
        if from_environment:
            if from_environment not in BACKENDS:
                raise ConfigError(
                    f"KERAS_BACKEND={from_environment!r} is not one of {', '.join(BACKENDS)}"
                )
            requested = from_environment
        else:
            requested = "jax" if _installed("jax") else "tensorflow"
    if not _installed(requested):
        extra = {"jax": ' (pip install "mnist-cli[jax]")', "torch": " (pip install torch)"}
        raise ConfigError(
            f"the {requested} backend is not installed{extra.get(requested, '')}; "
            f"choose another with --backend"
        )
    return requested


def quiet_native_logs(verbose: bool = False) -> None:
    """Silence TensorFlow's and XLA's C++ log noise unless the user asked to see it."""
    if not verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "2")
    else:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"


@contextlib.contextmanager
def native_stderr_captured() -> Iterator[None]:
    """Within the block, whatever is written to file descriptor 2 goes to a temporary file
    instead of the terminal; if the block raises, what it wrote is shown after all.

    TensorFlow 2.21 writes absl log lines ("oneDNN custom operations are on", "Could not
    find cuda drivers", "failed call to cuInit", "All log messages before
    absl::InitializeLog() ...") straight to descriptor 2 while it is imported and while it
    looks for devices, before `TF_CPP_MIN_LOG_LEVEL` is consulted: only redirecting the
    descriptor itself hides them. A failing import still shows its own messages, and the
    Python exception reaches the user as usual once the descriptor is restored.
    """
    with contextlib.suppress(AttributeError, ValueError, OSError):
        sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no descriptor 2 to redirect
        yield
        return
    try:
        with tempfile.TemporaryFile() as captured:
            os.dup2(captured.fileno(), 2)
            try:
                yield
            except BaseException:
                os.dup2(saved, 2)
                captured.seek(0)
                with contextlib.suppress(OSError):
                    os.write(2, captured.read())
                raise
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)


def _import_tensorflow_quietly() -> None:
    """Import Keras on TensorFlow and let TensorFlow find its devices, its log noise hidden."""
    with native_stderr_captured():
        import keras  # noqa: F401  (imports TensorFlow)
        import tensorflow as tf

        tf.config.list_physical_devices()


def activate_backend(requested: str = "auto", verbose: bool = False,
                     deterministic: bool = False) -> str:
    """Set up the environment for `requested` and return the backend's name.

    Must run before the first `import keras`; if Keras was already imported with another
    backend (possible only when mnist-cli is used as a library), that is an error. On
    TensorFlow it imports Keras itself, with TensorFlow's native log noise hidden unless
    `verbose` (`native_stderr_captured`).
    `deterministic` sets what must be set before the backend is imported (XLA's flag for
    deterministic GPU ops under JAX); `enable_determinism` does the rest after import.
    """
    backend = resolve_backend(requested)
    quiet_native_logs(verbose)
    if deterministic and backend == "jax":
        flags = os.environ.get("XLA_FLAGS", "")
        if "xla_gpu_deterministic_ops" not in flags:
            os.environ["XLA_FLAGS"] = f"{flags} {XLA_DETERMINISTIC_FLAG}".strip()
    if "keras" in sys.modules:
        import keras

        current = keras.backend.backend()
        if current != backend:
            raise ConfigError(
                f"Keras is already running on the {current} backend in this process; "
                f"start a new process to use {backend}"
            )
        return backend
    os.environ["KERAS_BACKEND"] = backend
    if backend == "tensorflow" and not verbose and "tensorflow" not in sys.modules:
        _import_tensorflow_quietly()
    return backend


def enable_determinism(enabled: bool) -> None:
    """Make the backend use deterministic kernels (`runtime.deterministic`, `--deterministic`).

    Seeds fix the random numbers; they do not fix the order in which a parallel kernel adds
    up floats, which on a GPU (and in a few TensorFlow CPU kernels) varies from run to run.
    TensorFlow: `enable_op_determinism()`. torch: `use_deterministic_algorithms(True)`.
    JAX: XLA on the CPU is deterministic already; on a GPU the XLA flag set by
    `activate_backend(..., deterministic=True)` before JAX starts. Deterministic kernels can
    be slower, which is why this is not the default. Call after `activate_backend()`.
    """
    if not enabled:
        return
    backend = os.environ.get("KERAS_BACKEND")
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    elif backend == "torch":
        import torch

        torch.use_deterministic_algorithms(True)


def seed_everything(seed: int) -> None:
    """What `keras.utils.set_random_seed` does, without importing TensorFlow needlessly.

    Keras's own function seeds TensorFlow whenever it is installed, which imports it (seconds
    of start-up and hundreds of MB) even on the JAX backend; here TensorFlow is seeded only
    when it is the backend. Call after `activate_backend()`.
    """
    import random

    import numpy as np

    from mnist_cli.keras_compat import reset_global_seed

    reset_global_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
    backend = os.environ.get("KERAS_BACKEND")
    if backend == "tensorflow":
        import tensorflow as tf

        tf.random.set_seed(seed)
    elif backend == "torch":
        import torch

        torch.manual_seed(seed)


def use_devices(requested: int | str) -> dict[str, Any]:
    """Train on `requested` devices (`runtime.devices`: a number or 'all'), each batch split
    across them: Keras's `DataParallel` distribution on JAX, which `model.fit` follows and
    the fast engine reads (`data_parallel_devices`). Returns what metrics.json records:
    the count and the devices' platform. Call after `start()`, before the model is built
    (its variables are then placed on every device)."""
    backend = os.environ.get("KERAS_BACKEND")
    if backend != "jax":
        if requested != 1:
            raise ConfigError(
                f"runtime.devices: data parallel training runs on the JAX backend, not on "
                f"{backend}; use --backend jax or runtime.devices: 1")
        return {"count": 1}
    import jax
    import keras

    available = jax.devices()
    count = len(available) if requested == "all" else int(requested)
    if count > len(available):
        raise ConfigError(
            f"runtime.devices: {count} devices asked for, but JAX sees {len(available)} "
            f"({available[0].platform}); on a CPU, XLA_FLAGS="
            f"--xla_force_host_platform_device_count={count} set before starting makes {count}")
    chosen = available[:count]
    keras.distribution.set_distribution(
        keras.distribution.DataParallel(devices=chosen) if count > 1 else None)
    return {"count": count, "platform": chosen[0].platform}


def data_parallel_devices() -> list[Any] | None:
    """The devices of the current data parallel distribution (`use_devices`), or None when
    training runs on one device."""
    if os.environ.get("KERAS_BACKEND") != "jax":
        return None
    import keras

    distribution = keras.distribution.distribution()
    if not isinstance(distribution, keras.distribution.DataParallel):
        return None
    return list(distribution.device_mesh.devices.ravel())


def keep_tensorflow_unloaded() -> None:
    """On the JAX and torch backends, stop Keras from importing TensorFlow just to look
    (`keras_compat.stop_tensorflow_probe` says why)."""
    if os.environ.get("KERAS_BACKEND") == "tensorflow" or "tensorflow" in sys.modules:
        return
    from mnist_cli.keras_compat import stop_tensorflow_probe

    stop_tensorflow_probe()


def start(backend: str = "auto", *, verbose: bool = False, deterministic: bool = False) -> str:
    """Set up Keras for a command and return the backend's name: choose and import the
    backend (`activate_backend`), keep TensorFlow unloaded where it is not the backend, and
    turn on deterministic kernels when asked. Every command that runs a model calls this
    first; calling it again with the same backend changes nothing."""
    name = activate_backend(backend, verbose, deterministic)
    keep_tensorflow_unloaded()
    enable_determinism(deterministic)
    return name
