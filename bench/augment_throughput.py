"""How many 28x28 training digits per second `data/augment.py` distorts, on this machine's
JAX device, for affine alone, affine + elastic and elastic alone. Prints JSON.

Each figure is the best of `--repeats` timed runs of one compiled program (after a run that
compiles), measured two ways:

- `in_training`: as the fast JAX engine runs it, a compiled loop over `--steps` batches of
  `--batch` training digits, each batch distorted one step ahead of the step that uses it
  (here the step only sums the features). `reference` is the same loop with the pixels
  only scaled to features, no distortion.
- `per_call`: one batch per call of a compiled function, the call's overhead included.

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


def training_loop(settings: dict | None, batch: int, steps: int):
    """A compiled loop of `steps` batches over (pixels, epoch), features made a step ahead
    (the engine's `_scan`); `settings` None: no distortion."""
    import jax
    import jax.numpy as jnp

    from mnist_cli.config import DataConfig
    from mnist_cli.data.augment import augmented_features

    data = DataConfig.model_validate({"augment": settings})

    def features(pixels, rows, epoch):
        if settings is None:
            return pixels[rows].reshape(batch, -1).astype(jnp.float32) / 255
        return augmented_features(pixels[rows], rows, 0, epoch, data)

    def program(pixels, epoch):
        order = jnp.arange(steps * batch, dtype=jnp.int32).reshape(steps, batch)

        def step(state, following):
            total, inputs = state
            return (total + inputs.sum(), features(pixels, following, epoch)), None

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


def measure(settings: dict | None, pixels: np.ndarray, batch: int, steps: int,
            repeats: int) -> dict:
    import jax

    device_pixels = jax.device_put(pixels[: batch * steps])
    loop = training_loop(settings, batch, steps)
    seconds = best_seconds(lambda epoch: loop(device_pixels, np.int32(epoch))
                           .block_until_ready(), repeats)
    result = {"in_training": round(batch * steps / seconds)}
    if settings is not None:
        from mnist_cli.config import DataConfig
        from mnist_cli.data.augment import augmented_features

        data = DataConfig.model_validate({"augment": settings})
        function = jax.jit(lambda images, rows, epoch: augmented_features(
            images, rows, 0, epoch, data))
        images = jax.device_put(pixels[:batch])
        rows = jax.device_put(np.arange(batch, dtype=np.int32))
        seconds = best_seconds(lambda epoch: function(images, rows, np.int32(epoch))
                               .block_until_ready(), repeats * 4)
        result["per_call"] = round(batch / seconds)
    return result


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
    images_per_second = {"reference (no distortion)": measure(
        None, pixels, arguments.batch, arguments.steps, arguments.repeats)}
    for name, settings in SETTINGS.items():
        images_per_second[name] = measure(settings, pixels, arguments.batch,
                                          arguments.steps, arguments.repeats)
    print(json.dumps({"device": str(jax.devices()[0]), "cpu_count": os.cpu_count(),
                      "jax": jax.__version__, "batch": arguments.batch,
                      "steps": arguments.steps, "images_per_second": images_per_second,
                      "settings": SETTINGS}, indent=2))


if __name__ == "__main__":
    main()
