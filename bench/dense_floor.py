"""The matrix-multiply floor of a Dense network's training epoch on this machine, beside
the epoch time `mnist train` measures for it. Prints JSON.

The floor: for every layer of the config's stack, the three products of a training step
(forward `X W`, backward `G W^T` and `X^T G`; the first layer's `G W^T` is not needed), each
timed on the step's own shapes (float32, best of `--repeats`) with NumPy's matmul and with
XLA's (what the JAX engine calls), the faster of the two counted, summed over the epoch's
batches. Nothing else a step does (activations, the loss, the optimizer,
distorting the batch) is counted: it is the time below which no engine can go on this CPU.
The measured epoch is the second one (the first compiles) of a run on `--train` digits.

    MNIST_DATA=mnist.npz python bench/dense_floor.py --config configs/dense-record.yaml \
        --train 6000 --epochs 2
    MNIST_DATA=mnist.npz python bench/dense_floor.py --config configs/dense-record.yaml \
        --train 12000 --epochs 2 --set train.ema=0.9998   # the epoch with weight averaging
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def matmul_seconds(shape_a: tuple[int, int], shape_b: tuple[int, int],
                   repeats: int) -> dict[str, float]:
    """The best time of one float32 product of these shapes by NumPy and by XLA (JAX)."""
    import jax

    rng = np.random.default_rng(0)
    a = rng.standard_normal(shape_a, dtype=np.float32)
    b = rng.standard_normal(shape_b, dtype=np.float32)
    product = jax.jit(lambda a, b: a @ b)
    device_a, device_b = jax.device_put(a), jax.device_put(b)
    runners = {"numpy": lambda: a @ b,
               "xla": lambda: product(device_a, device_b).block_until_ready()}
    best = {}
    for name, runner in runners.items():
        runner()
        best[name] = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            runner()
            best[name] = min(best[name], time.perf_counter() - started)
    return best


def floor(stack: list[int], batch: int, repeats: int) -> dict:
    """The step's products, each at the speed of the faster of NumPy and XLA."""
    step_seconds, step_flop = 0.0, 0.0
    by_library = {"numpy": 0.0, "xla": 0.0}
    for position, (inputs, outputs) in enumerate(zip(stack, stack[1:])):
        products = [((batch, inputs), (inputs, outputs)),       # forward X W
                    ((inputs, batch), (batch, outputs))]        # kernel gradient X^T G
        if position > 0:
            products.append(((batch, outputs), (outputs, inputs)))  # input gradient G W^T
        for shape_a, shape_b in products:
            seconds = matmul_seconds(shape_a, shape_b, repeats)
            for name, value in seconds.items():
                by_library[name] += value
            step_seconds += min(seconds.values())
            step_flop += 2 * shape_a[0] * shape_a[1] * shape_b[1]
    return {"step_seconds": step_seconds, "flop_per_image": step_flop / batch,
            "gflop_per_second": step_flop / step_seconds / 1e9,
            "gflop_per_second_by_library": {name: round(step_flop / value / 1e9, 1)
                                            for name, value in by_library.items()}}


def measured_epoch(config: str, train: int, epochs: int, overrides: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as root:
        command = [sys.executable, "-m", "mnist_cli", "train", "-c", config,
                   *(part for override in overrides for part in ("--set", override)),
                   "--set", f"data.subset.train={train}", "--set", f"train.epochs={epochs}",
                   "--set", "data.subset.test=1000", "--set", "train.tensorboard=false",
                   "--set", f"output.root={root}"]
        subprocess.run(command, check=True, capture_output=True, text=True,
                       env={**os.environ, "MNIST_CLI_JAX_CACHE": "off"})
        (run,) = Path(root).iterdir()
        lines = (run / "history.csv").read_text().splitlines()
        header = lines[0].split(",")
        seconds = [float(line.split(",")[header.index("seconds")]) for line in lines[1:]]
    return {"train_images": train, "epoch_seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/dense-record.yaml")
    parser.add_argument("--train", type=int, default=6000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-run", action="store_true", help="The floor only.")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="A config override for the measured run.")
    arguments = parser.parse_args()
    from mnist_cli.config import load_config

    config = load_config(arguments.config, arguments.overrides)
    batch = config.train.batch_size
    result = floor(config.model.stack(), batch, arguments.repeats)
    batches = math.ceil(arguments.train / batch)
    report = {"stack": config.model.stack(), "batch_size": batch, "overrides": arguments.overrides,
              "cpu_count": os.cpu_count(),
              "numpy": np.__version__, "load_average": os.getloadavg()[0],
              "mflop_per_image_per_step": round(result["flop_per_image"] / 1e6, 2),
              "matmul_gflop_per_second": round(result["gflop_per_second"], 1),
              "matmul_gflop_per_second_by_library": result["gflop_per_second_by_library"],
              "floor_epoch_seconds": round(result["step_seconds"] * batches, 3),
              "floor_images_per_second": round(batch / result["step_seconds"])}
    if not arguments.no_run:
        run = measured_epoch(arguments.config, arguments.train, arguments.epochs,
                             arguments.overrides)
        report.update(run)
        report["ratio_to_floor"] = round(run["epoch_seconds"][-1]
                                         / report["floor_epoch_seconds"], 2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
