"""`mnist` with training slowed down, for the tests that stop or kill it at chosen moments.

Usage: python tests/slow_train.py train -c config.yaml   (any `mnist` arguments)

A tiny network trains an epoch in a few milliseconds, too fast to be caught in the middle
of an epoch or of a save. Two environment variables stretch those moments, without
changing what is computed:

- MNIST_TEST_BATCH_DELAY: seconds to sleep after every training batch (fit engine);
- MNIST_TEST_EPOCH_DELAY: seconds to sleep inside every epoch of the fast JAX engine, after
  its compiled program ran and before the epoch ends;
- MNIST_TEST_SAVE_DELAY: seconds to sleep inside every atomic save, after the temporary
  file is written and before it is renamed into place (in `os.fsync`); the line
  `saving <name>` is printed to stderr first, so a test can kill the process mid-save.

The backend is chosen before Keras is imported, as `mnist` itself does.
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import mnist_cli.training.engines.fit as fit_engine  # noqa: E402
from mnist_cli.cli import main  # noqa: E402

BATCH_DELAY = float(os.environ.get("MNIST_TEST_BATCH_DELAY", "0"))
SAVE_DELAY = float(os.environ.get("MNIST_TEST_SAVE_DELAY", "0"))
EPOCH_DELAY = float(os.environ.get("MNIST_TEST_EPOCH_DELAY", "0"))

if BATCH_DELAY:
    original_batch_end = fit_engine._EpochCallback.on_train_batch_end

    def slow_batch_end(self, batch, logs=None):
        time.sleep(BATCH_DELAY)
        return original_batch_end(self, batch, logs)

    fit_engine._EpochCallback.on_train_batch_end = slow_batch_end

if EPOCH_DELAY:
    from mnist_cli.training.engines import jax_fast

    original_run_epoch = jax_fast.JaxEpochs.run_epoch

    def slow_run_epoch(self, order, *arguments):
        logs = original_run_epoch(self, order, *arguments)
        time.sleep(EPOCH_DELAY)
        return logs

    jax_fast.JaxEpochs.run_epoch = slow_run_epoch

if SAVE_DELAY:
    real_fsync = os.fsync

    def slow_fsync(descriptor: int) -> None:
        try:
            name = os.path.basename(os.readlink(f"/proc/self/fd/{descriptor}"))
        except OSError:
            name = "?"
        if name.startswith("."):  # a temporary file of an atomic save, not the directory
            sys.stderr.write(f"saving {name}\n")
            sys.stderr.flush()
            time.sleep(SAVE_DELAY)
        real_fsync(descriptor)

    os.fsync = slow_fsync

if __name__ == "__main__":
    sys.argv[0] = "mnist"
    main()
