"""How many 28x28 training digits per second `data/augment.py` distorts, on this machine's
JAX device, for affine alone, affine + elastic and elastic alone. Prints JSON.

Each figure is the best of `--repeats` timed runs of one compiled program (after a run that
compiles):

- `images_per_second`: as the fast JAX engine runs it, a compiled loop over `--steps`
  batches of `--batch` training digits, each batch distorted one step ahead of the step
  that uses it (here the step only sums the features); beside it the same loop with the
  pixels only scaled to features.
- `loop_seconds`: the same loop with a 784x800 product in each step (the first layer of
  configs/dense-augmented.yaml), the digits not distorted, distorted a step ahead (the
  engine's way) and distorted in the step that multiplies them.

    MNIST_DATA=mnist.npz python bench/augment_throughput.py --batch 128 --repeats 10
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

AFFINE = {"rotation": 15.0, "scale": 0.15, "shear": 15.0, "translation": 2.0}
ELASTIC = {"elastic_alpha": 36.0, "elastic_sigma": 6.0}
SETTINGS = {"affine": AFFINE, "affine + elastic": {**AFFINE, **ELASTIC}, "elastic": ELASTIC}


def training_loop(settings: dict | None, batch: int, steps: int, ahead: bool = True,
                  product: bool = False):
    """A compiled loop of `steps` batches over (pixels, epoch); `settings` None: no
    distortion. `ahead`: each step makes the next step's features (the engine's `_scan`);
    `product`: each step sums relu(features x a 784x800 matrix), else the features."""
    import jax
    import jax.numpy as jnp

    from mnist_cli.config import DataConfig
    from mnist_cli.data.augment import augmented_features

    data = DataConfig.model_validate({"augment": settings})

    def features(pixels, rows, epoch):
        if settings is None:
            return pixels[rows].reshape(batch, -1).astype(jnp.float32) / 255
        return augmented_features(pixels[rows], rows, 0, epoch, data)

    weights = jnp.asarray(np.random.default_rng(0).normal(0, 0.05, (784, 800)), jnp.float32)

    def use(inputs):
        return jnp.maximum(inputs @ weights, 0).sum() if product else inputs.sum()

    def program(pixels, epoch):
        order = jnp.arange(steps * batch, dtype=jnp.int32).reshape(steps, batch)
        if not ahead:
            return jax.lax.scan(lambda total, rows: (
                total + use(features(pixels, rows, epoch)), None), jnp.float32(0), order)[0]

        def step(state, following):
            total, inputs = state
            return (total + use(inputs), features(pixels, following, epoch)), None

        following = jnp.concatenate([order[1:], order[-1:]])
        start = (jnp.float32(0), features(pixels, order[0], epoch))
        return jax.lax.scan(step, start, following)[0][0]

    return jax.jit(program)


def best_seconds(run, repeats: int) -> float:
    run(0)
    best = float("inf")
    for repeat in range(repeats):
        started = time.perf_counter()
        run(repeat + 1)
        best = min(best, time.perf_counter() - started)
    return best


def loop_seconds(settings: dict | None, device_pixels, batch: int, steps: int,
                 repeats: int, **options) -> float:
    loop = training_loop(settings, batch, steps, **options)
    return best_seconds(lambda epoch: loop(device_pixels, np.int32(epoch))
                        .block_until_ready(), repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=10)
    arguments = parser.parse_args()
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import jax

    count = arguments.batch * arguments.steps
    path = os.environ.get("MNIST_DATA")
    if path:
        with np.load(path) as archive:
            pixels = archive["x_train"][:count]
    else:  # random strokes stand in for digits: the cost does not depend on the content
        pixels = (np.random.default_rng(0).random((count, 28, 28)) > 0.8).astype(
            np.uint8) * 255
    if len(pixels) < count:
        parser.error(f"--batch x --steps is {count} digits; the data has {len(pixels)}")
    device_pixels = jax.device_put(pixels)
    shape = (arguments.batch, arguments.steps, arguments.repeats)
    images_per_second = {name: round(count / loop_seconds(settings, device_pixels, *shape))
                         for name, settings in {"no distortion": None, **SETTINGS}.items()}
    elastic = SETTINGS["affine + elastic"]
    seconds = {
        "no distortion": loop_seconds(None, device_pixels, *shape, product=True),
        "affine + elastic, a step ahead": loop_seconds(elastic, device_pixels, *shape,
                                                       product=True),
        "affine + elastic, in the step": loop_seconds(elastic, device_pixels, *shape,
                                                      ahead=False, product=True)}
    print(json.dumps({"device": str(jax.devices()[0]), "cpu_count": os.cpu_count(),
                      "jax": jax.__version__, "batch": arguments.batch,
                      "steps": arguments.steps, "images_per_second": images_per_second,
                      "loop_seconds": {name: round(value, 4) for name, value in seconds.items()},
                      "settings": SETTINGS}, indent=2))


if __name__ == "__main__":
    main()
