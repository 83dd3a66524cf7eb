"""What a run's TensorBoard log costs its training: each config trained with the log as it is
by default and with `train.tensorboard=false`, every run in a fresh process, in interleaved
rounds (the order alternates, so a slow minute of a noisy machine does not land on one side);
the medians of metrics.json's `train_seconds` side by side and the log's cost as a share of
the run without it. Prints one JSON object.

Example:
    MNIST_DATA=../shared/data/mnist.npz python bench/tensorboard_cost.py --rounds 3
    python bench/tensorboard_cost.py configs/keras-784-500-10.yaml --set train.histogram_every=5
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
RECIPES = ["softmax-784-10", "nielsen-784-30-10", "keras-784-500-10", "tf2-784-512-256-10"]


def train_seconds(config: Path, overrides: list[str], folder: Path) -> float:
    command = [sys.executable, "-m", "mnist_cli", "train", "-c", str(config), "--out",
               str(folder)]
    for override in overrides:
        command += ["--set", override]
    subprocess.run(command, check=True, capture_output=True, text=True)
    (run,) = [path for path in folder.iterdir() if path.is_dir()]
    return json.loads((run / "metrics.json").read_text())["train_seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("configs", nargs="*", type=Path,
                        default=[PROJECT / "configs" / f"{name}.yaml" for name in RECIPES])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="for both sides, e.g. train.epochs=5")
    arguments = parser.parse_args()

    sides = {"with the log (default)": [], "train.tensorboard=false": ["train.tensorboard=false"]}
    results = []
    for config in arguments.configs:
        seconds: dict[str, list[float]] = {side: [] for side in sides}
        for round_number in range(arguments.rounds):
            order = list(sides) if round_number % 2 == 0 else list(reversed(sides))
            for side in order:
                with tempfile.TemporaryDirectory() as folder:
                    seconds[side].append(train_seconds(
                        config, arguments.overrides + sides[side], Path(folder)))
        with_log, without = (statistics.median(seconds[side]) for side in sides)
        results.append({
            "config": config.name,
            "train_seconds": {side: sorted(values) for side, values in seconds.items()},
            "median_with_log": round(with_log, 3),
            "median_without": round(without, 3),
            "cost_share": round(with_log / without - 1, 4),
        })
    print(json.dumps({"rounds": arguments.rounds, "overrides": arguments.overrides,
                      "results": results}, indent=2))


if __name__ == "__main__":
    main()
