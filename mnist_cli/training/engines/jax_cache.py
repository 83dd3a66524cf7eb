"""The JAX fast engine's persistent compilation cache: a second run of the same config reads
its compiled epoch from disk instead of compiling it again. Called before anything compiles
(`engines.prepare_process`). Import only after `runtime.start()` chose JAX.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

CACHE_VARIABLE = "MNIST_CLI_JAX_CACHE"
CACHE_OFF = ("", "0", "off", "false", "no", "none")
# Compiled programs that took less than this are not written to the cache (JAX's default
# of 1 s would leave out the epoch program itself on a fast CPU).
CACHE_MIN_COMPILE_SECONDS = 0.1


def compile_cache_folder() -> Path | None:
    """Where the fast engine keeps compiled programs: `$MNIST_CLI_JAX_CACHE` (off, 0 or
    empty: no cache), else `$XDG_CACHE_HOME/mnist-cli/jax`, else `~/.cache/mnist-cli/jax`."""
    chosen = os.environ.get(CACHE_VARIABLE)
    if chosen is not None:
        return None if chosen.strip().lower() in CACHE_OFF else Path(chosen).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mnist-cli" / "jax"


def enable_compile_cache() -> Path | None:
    """Turn on JAX's persistent compilation cache; return its folder, or None.

    Call before the first compilation of the process. A folder set by the user for JAX
    itself (`JAX_COMPILATION_CACHE_DIR`) wins unless `MNIST_CLI_JAX_CACHE` is set too. A
    cache that cannot be created or written is skipped: it only saves time, and training
    must not fail for it.
    """
    if os.environ.get("JAX_COMPILATION_CACHE_DIR") and CACHE_VARIABLE not in os.environ:
        return Path(os.environ["JAX_COMPILATION_CACHE_DIR"])
    folder = compile_cache_folder()
    if folder is None:
        return None
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    if not os.access(folder, os.W_OK | os.X_OK):
        return None
    try:
        jax.config.update("jax_compilation_cache_dir", str(folder))
        jax.config.update("jax_persistent_cache_min_compile_time_secs",
                          CACHE_MIN_COMPILE_SECONDS)
    except (AttributeError, ValueError):  # a JAX without these options: run uncached
        return None
    return folder
