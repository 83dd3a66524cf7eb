"""What training a long epoch in pieces (so a progress bar moves inside it) costs the fast
JAX engine, side by side with the same epoch as one compiled program, on the real MNIST.

Each candidate trains the same config in a fresh process (`whole`: one program per epoch;
`pieces`: the engine's default, `PIECE_MULTIPLY_ADDS` of work a piece); the figure is the
median of the epochs after the first (which compiles). Prints JSON.

    MNIST_DATA=mnist.npz python bench/progress_overhead.py --epochs 3 --train 20000
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

LAYERS = [784, 2500, 2000, 1500, 1000, 500, 10]  # epochs of several seconds on a laptop


def train_once(mode: str, epochs: int, train: int) -> dict:
    os.environ.setdefault("KERAS_BACKEND", "jax")
    from mnist_cli.config import Config
    from mnist_cli.training.engines import jax_fast
    from mnist_cli.training.pipeline import train as run_training

    if mode == "whole":
        jax_fast.PIECE_MULTIPLY_ADDS = 1e30  # every epoch one program
    with tempfile.TemporaryDirectory() as output:
        config = Config.model_validate({
            "name": f"overhead-{mode}",
            "data": {"subset": {"train": train}, "validation_split": 0},
            "model": {"layers": LAYERS},
            "train": {"epochs": epochs, "batch_size": 300, "engine": "fast",
                      "tensorboard": False},
            "output": {"root": output}, "runtime": {"backend": "jax"}})
        result = run_training(config, echo=lambda line: None)
    seconds = [row["seconds"] for row in result.history]
    return {"mode": mode, "epoch_seconds": seconds,
            "median_after_first": statistics.median(seconds[1:])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train", type=int, default=20000, help="training images")
    parser.add_argument("--mode", choices=["whole", "pieces"], help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.mode:
        print(json.dumps(train_once(options.mode, options.epochs, options.train)))
        return
    environment = {**os.environ, "MNIST_CLI_JAX_CACHE": "off"}
    results = {}
    for mode in ("whole", "pieces"):
        output = subprocess.run(
            [sys.executable, str(Path(__file__)), "--mode", mode, "--epochs",
             str(options.epochs), "--train", str(options.train)],
            capture_output=True, text=True, env=environment, check=True).stdout
        results[mode] = json.loads(output.strip().splitlines()[-1])
    whole = results["whole"]["median_after_first"]
    pieces = results["pieces"]["median_after_first"]
    print(json.dumps({"layers": LAYERS, "train_images": options.train, "batch_size": 300,
                      **results, "overhead": round(pieces / whole - 1, 4)}, indent=2))


if __name__ == "__main__":
    main()
