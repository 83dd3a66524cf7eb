"""What a run's TensorBoard log costs per epoch: the scalars of one epoch, and the weight and
gradient histograms the first time (which compiles the gradient program) and after. Uses a
finished run's model and data, writes into a temporary folder, prints one JSON object.

Example:
    MNIST_DATA=../shared/data/mnist.npz python bench/tensorboard_cost.py \
        outputs/keras-784-500-10-20250101-120000
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--repeats", type=int, default=5)
    arguments = parser.parse_args()

    from mnist_cli import runtime
    from mnist_cli.config import load_config

    config = load_config(arguments.run_dir / "config.yaml")
    backend = runtime.start(config.runtime.backend)
    from mnist_cli.data import prepare
    from mnist_cli.inspection.source import load_model
    from mnist_cli.training.tensorboard import GRADIENT_BATCH, TensorBoardLog

    data = prepare(config)
    model = load_model(arguments.run_dir / "model.keras")
    row = {"epoch": 2, "loss": 0.1, "accuracy": 0.9, "val_loss": 0.1, "val_accuracy": 0.9,
           "learning_rate": 0.001, "seconds": 1.0}
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        log = TensorBoardLog(config, Path(folder), model, data.x_train[:GRADIENT_BATCH],
                             data.y_train[:GRADIENT_BATCH], 0)
        opened = time.perf_counter() - started
        started = time.perf_counter()
        log.epoch_ended(row)  # epoch 2: scalars only
        scalars = time.perf_counter() - started
        histograms = []
        for step in range(arguments.repeats):
            started = time.perf_counter()
            log.write_histograms(step + 1)
            log.writer.flush()
            histograms.append(round(time.perf_counter() - started, 4))
        log.close()
        size = sum(path.stat().st_size for path in Path(folder).iterdir())
    print(json.dumps({
        "run": str(arguments.run_dir), "backend": backend,
        "layers": "-".join(str(size) for size in config.model.stack()),
        "open_seconds": round(opened, 4), "scalars_seconds": round(scalars, 4),
        "histograms_first_seconds": histograms[0], "histograms_later_seconds": histograms[1:],
        "event_bytes_per_histogram_epoch": round(size / len(histograms)),
    }, indent=2))


if __name__ == "__main__":
    main()
