"""The whole `mnist train -c configs/quickstart.yaml` against a plain Keras script that does the
same job (bench/plain_quickstart.py: import, load, fit 3 epochs, evaluate, save), each a fresh
process timed from start to exit, in interleaved rounds (the order rotates, so a slow minute
of a noisy machine does not land on one candidate). The plain script runs on TensorFlow (what
a Keras user gets by default) and on JAX; `mnist train` as a user runs it (its defaults: JAX,
the fast engine, the TensorBoard log, every file of the run directory). Prints medians and
ratios as JSON.

Example:
    MNIST_DATA=../shared/data/mnist.npz python bench/whole_run.py --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
QUICKSTART = PROJECT / "configs" / "quickstart.yaml"
PLAIN = PROJECT / "bench" / "plain_quickstart.py"


def command(candidate: str, data: Path, folder: Path) -> list[str]:
    if candidate == "mnist train":
        return [sys.executable, "-m", "mnist_cli", "train", "-c", str(QUICKSTART),
                "--set", f"data.path={data}", "--out", str(folder)]
    backend = candidate.rsplit(" ", 1)[-1]
    return [sys.executable, str(PLAIN), "--data", str(data), "--backend", backend,
            "--out", str(folder / "model.keras")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--data", type=Path, default=os.environ.get("MNIST_DATA"))
    arguments = parser.parse_args()
    if arguments.data is None:
        parser.error("give --data or set MNIST_DATA")
    candidates = ["plain Keras, tensorflow", "plain Keras, jax", "mnist train"]
    seconds: dict[str, list[float]] = {candidate: [] for candidate in candidates}
    for round_number in range(arguments.rounds):
        shift = round_number % len(candidates)
        for candidate in candidates[shift:] + candidates[:shift]:
            with tempfile.TemporaryDirectory() as folder:
                started = time.perf_counter()
                subprocess.run(command(candidate, arguments.data.resolve(), Path(folder)),
                               check=True, capture_output=True)
                seconds[candidate].append(round(time.perf_counter() - started, 3))
    medians = {candidate: statistics.median(values) for candidate, values in seconds.items()}
    print(json.dumps({
        "rounds": arguments.rounds,
        "seconds": {candidate: sorted(values) for candidate, values in seconds.items()},
        "median_seconds": medians,
        "mnist_train_x_plain_tensorflow": round(
            medians["mnist train"] / medians["plain Keras, tensorflow"], 3),
        "mnist_train_x_plain_jax": round(medians["mnist train"] / medians["plain Keras, jax"], 3),
    }, indent=2))


if __name__ == "__main__":
    main()
