"""Choosing Keras's backend, which must happen before Keras is first imported.

Keras reads `KERAS_BACKEND` once, at import time, so every command that needs Keras calls
`activate_backend()` first and imports Keras only afterwards (inside the function that needs
it): `mnist --help` and config validation never pay for importing TensorFlow or JAX.
"""

from __future__ import annotations

import importlib.util
import os
import sys

from mnist_cli.errors import ConfigError

BACKENDS = ("tensorflow", "jax", "torch")


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def resolve_backend(requested: str = "auto") -> str:
    """The backend to use: an explicit choice, else `KERAS_BACKEND`, else the fastest installed.

    JAX is preferred when installed because it runs these Dense nets fastest on a CPU and on a
    GPU (see the README's performance table); TensorFlow, which the base package installs,
    is the fallback.
    """
    if requested not in ("auto", *BACKENDS):
        raise ConfigError(f"backend must be one of auto, {', '.join(BACKENDS)} (got {requested!r})")
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


def activate_backend(requested: str = "auto", verbose: bool = False) -> str:
    """Set up the environment for `requested` and return the backend's name.

    Must run before the first `import keras`; if Keras was already imported with another
    backend (possible only when mnist-cli is used as a library), that is an error.
    """
    backend = resolve_backend(requested)
    quiet_native_logs(verbose)
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
    return backend
