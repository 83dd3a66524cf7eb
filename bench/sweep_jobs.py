"""The wall time of one small sweep with `mnist sweep --jobs 1` and with `--jobs N`.

The sweep: the Keras recipe (configs/keras-784-500-10.yaml) on 10000 training images for
3 epochs, its learning rate and hidden width drawn by the random sampler with a fixed seed,
so every run trains the same trials (the printed values show they agree). Each sweep runs
in a fresh temporary folder, without the JAX compilation cache. Prints one JSON line.

Example:
    MNIST_DATA=../shared/data/mnist.npz python bench/sweep_jobs.py --trials 8 --jobs 2
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

PROJECT = Path(__file__).resolve().parent.parent


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=8, help="trials per sweep (default 8)")
    parser.add_argument("--jobs", type=int, default=2, help="the parallel sweep's --jobs")
    parser.add_argument("--subset", type=int, default=10000, help="training images")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per trial")
    return parser.parse_args()


def sweep_seconds(folder: Path, sweep_file: Path, jobs: int) -> tuple[float, dict[int, float]]:
    """The sweep's wall time and each trial's value."""
    environment = dict(os.environ, MNIST_CLI_JAX_CACHE="off")
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mnist_cli", "sweep", str(sweep_file), "--jobs",
                    str(jobs), "--out", str(folder)], check=True, env=environment,
                   stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    (sweep_folder,) = folder.iterdir()
    with open(sweep_folder / "trials.csv", newline="") as handle:
        values = {int(row["trial"]): float(row["value"]) for row in csv.DictReader(handle)}
    return seconds, values


def main() -> None:
    arguments = parse_arguments()
    with tempfile.TemporaryDirectory() as scratch:
        scratch_path = Path(scratch)
        sweep_file = scratch_path / "sweep.yaml"
        sweep_file.write_text(yaml.safe_dump({
            "name": "jobs-bench",
            "base": str(PROJECT / "configs" / "keras-784-500-10.yaml"),
            "set": {"data.subset": arguments.subset, "train.epochs": arguments.epochs},
            "space": {"train.learning_rate": {"low": 1e-4, "high": 3e-2, "log": True},
                      "model.layers.1": {"low": 50, "high": 1000, "step": 50}},
            "sampler": "random", "seed": 1, "trials": arguments.trials,
        }))
        one, one_values = sweep_seconds(scratch_path / "jobs-1", sweep_file, 1)
        many, many_values = sweep_seconds(scratch_path / f"jobs-{arguments.jobs}", sweep_file,
                                          arguments.jobs)
    print(json.dumps({
        "trials": arguments.trials, "subset": arguments.subset, "epochs": arguments.epochs,
        "cpu_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "jobs_1_seconds": round(one, 1), f"jobs_{arguments.jobs}_seconds": round(many, 1),
        "speed_up": round(one / many, 2),
        "same_values": one_values == many_values,
    }))


if __name__ == "__main__":
    main()
