"""The real MNIST for the reference scripts, from the .npz in Keras's layout.

`--data PATH`, else `$MNIST_DATA`: these scripts run offline, as mnist-cli does.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np


def arguments(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", default=os.environ.get("MNIST_DATA"),
                        help="mnist.npz (default: $MNIST_DATA)")
    options = parser.parse_args()
    if not options.data:
        parser.error("give --data PATH or set MNIST_DATA to the mnist.npz file")
    return options


def load(path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """x_train (60000, 28, 28) uint8, y_train, x_test (10000, 28, 28), y_test."""
    with np.load(path) as archive:
        return archive["x_train"], archive["y_train"], archive["x_test"], archive["y_test"]


def report(test_accuracy: float, seed: int, **extra: object) -> None:
    """One JSON line on stdout: what the comparison reads."""
    print(json.dumps({"test_accuracy": float(test_accuracy), "seed": seed, **extra}))
