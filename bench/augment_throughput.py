"""How many 28x28 training digits per second `data/augment.py` distorts, on this machine's
JAX device, for affine alone and for affine + elastic. Prints JSON.

Each figure is the best of `--repeats` timed calls of one compiled batch (after a call that
compiles), the way the fast engine calls it (one batch of its epoch).

    MNIST_DATA=mnist.npz python bench/augment_throughput.py --batch 4096 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def measure(settings: dict, batch: int, repeats: int, pixels: np.ndarray) -> dict:
    import jax

    from mnist_cli.config import DataConfig
    from mnist_cli.data.augment import augmented_features

    data = DataConfig.model_validate({"augment": settings})
    function = jax.jit(lambda images, rows, epoch: augmented_features(images, rows, 0, epoch,
                                                                      data))
    images = jax.device_put(pixels[:batch])
    rows = jax.device_put(np.arange(batch, dtype=np.int32))
    function(images, rows, np.int32(0)).block_until_ready()
    best = float("inf")
    for repeat in range(repeats):
        started = time.perf_counter()
        function(images, rows, np.int32(repeat + 1)).block_until_ready()
        best = min(best, time.perf_counter() - started)
    return {"settings": settings, "batch": batch, "seconds": round(best, 5),
            "images_per_second": round(batch / best)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=5)
    arguments = parser.parse_args()
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import jax

    path = os.environ.get("MNIST_DATA")
    if path:
        with np.load(path) as archive:
            pixels = archive["x_train"][: arguments.batch]
    else:  # random strokes stand in for digits: the cost does not depend on the content
        pixels = (np.random.default_rng(0).random((arguments.batch, 28, 28)) > 0.8).astype(
            np.uint8) * 255
    affine = {"rotation": 15.0, "scale": 0.15, "shear": 15.0, "translation": 2.0}
    elastic = {**affine, "elastic_alpha": 36.0, "elastic_sigma": 6.0}
    results = [measure(settings, arguments.batch, arguments.repeats, pixels)
               for settings in (affine, elastic, {"elastic_alpha": 36.0, "elastic_sigma": 6.0})]
    print(json.dumps({"device": str(jax.devices()[0]), "cpu_count": os.cpu_count(),
                      "jax": jax.__version__, "results": results}, indent=2))


if __name__ == "__main__":
    main()
