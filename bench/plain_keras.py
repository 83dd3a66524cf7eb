"""Plain Keras 3 baseline: the MNIST 784-500-10 recipe as a user would write it.

This is the reference `mnist train` is measured against: no tricks, just
`model.fit` on NumPy arrays.  It prints one JSON line so benchmark runs can be
collected and compared side by side.

Recipe: binarized pixels (x/255 > 0.5), Dense(500, relu) -> Dense(10, softmax),
Adam(1e-3), categorical cross-entropy, batch 300, validation_split=0.1.

Example:
    python bench/plain_keras.py --epochs 5
    python bench/plain_keras.py --epochs 20 --backend jax
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "mnist.npz"


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=5, help="number of epochs (default 5)")
    parser.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA,
        help="MNIST .npz in Keras layout (default ../shared/data/mnist.npz from the repo root)",
    )
    parser.add_argument(
        "--backend",
        choices=["tensorflow", "jax", "torch"],
        default=None,
        help="Keras backend (default: $KERAS_BACKEND, else tensorflow)",
    )
    parser.add_argument(
        "--validation-split",
        type=float,
        default=0.1,
        help="fraction of the training set held out by fit (default 0.1; 0 trains on all 60000)",
    )
    parser.add_argument("--seed", type=int, default=0, help="Keras random seed (default 0)")
    return parser.parse_args()


def peak_rss_mib() -> float:
    """Peak resident set size of this process; ru_maxrss is KiB on Linux, bytes on macOS."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def main() -> None:
    arguments = parse_arguments()
    if arguments.backend:
        os.environ["KERAS_BACKEND"] = arguments.backend
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    import_start = time.perf_counter()
    import keras
    import numpy as np

    import_seconds = time.perf_counter() - import_start

    with np.load(arguments.data) as data:
        x_train, y_train = data["x_train"], data["y_train"]
        x_test, y_test = data["x_test"], data["y_test"]
    x_train = (x_train.reshape(-1, 784) / 255.0 > 0.5).astype("float32")
    x_test = (x_test.reshape(-1, 784) / 255.0 > 0.5).astype("float32")
    y_train = keras.utils.to_categorical(y_train, 10)
    y_test = keras.utils.to_categorical(y_test, 10)

    keras.utils.set_random_seed(arguments.seed)
    model = keras.Sequential(
        [
            keras.Input((784,)),
            keras.layers.Dense(500, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=1e-3),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
    )

    fit_start = time.perf_counter()
    history = model.fit(
        x_train,
        y_train,
        batch_size=300,
        epochs=arguments.epochs,
        validation_split=arguments.validation_split,
        verbose=0,
    )
    fit_seconds = time.perf_counter() - fit_start

    test_loss, test_accuracy = model.evaluate(x_test, y_test, batch_size=300, verbose=0)
    print(
        json.dumps(
            {
                "backend": keras.backend.backend(),
                "epochs": arguments.epochs,
                "fit_seconds": round(fit_seconds, 3),
                "test_accuracy": round(float(test_accuracy), 4),
                "test_loss": round(float(test_loss), 4),
                "validation_split": arguments.validation_split,
                "final_train_accuracy": round(float(history.history["accuracy"][-1]), 4),
                "final_val_accuracy": (
                    round(float(history.history["val_accuracy"][-1]), 4)
                    if "val_accuracy" in history.history
                    else None
                ),
                "peak_rss_mib": round(peak_rss_mib(), 1),
                "import_seconds": round(import_seconds, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
