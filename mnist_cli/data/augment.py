"""Distorting training digits on the fly (`data.augment`): affine and elastic, every epoch anew.

One JAX function, `augmented_features`, turns a batch of uint8 training images into the
float32 features of their distorted versions. The fast JAX engine calls it inside its
compiled epoch, on the device; the `fit` engine calls it on the host for a whole epoch's
training array before `model.fit` sees it. Both get the same numbers because every image's
distortion is drawn from a key made of `(seed, epoch, row)` only (the row in the training
set, not its place in a batch): a resumed run, a run with another batch size or another
engine distorts image `i` of epoch `e` the same way.

The distortion of one image, with `c` the image centre and output pixel `q`:

    source(q) = c + M^-1 (q - c - t) + d(q)

where `M = R(rotation) S(scale) H(shear)` and `t` the translation are drawn uniformly in the
config's ranges, and `d` is the elastic displacement field; the output is the input
bilinearly sampled at `source(q)` (zero outside the image). Simard et al. (2003) make `d` as
alpha times uniform noise in [-1, 1] per pixel smoothed by a Gaussian of width sigma: a
25-tap convolution of two 28x28 fields per image, which is most of the cost of a naive
version. Here the noise is drawn on a coarse grid (spacing sigma), smoothed there by the
same Gaussian (a few taps in grid units) and bilinearly upsampled; smoothing and
upsampling are one fixed (28, grid) matrix per axis, so a field is two small matrix
products. Each pixel's displacement is scaled to the standard deviation of Simard's field,
alpha / (sigma sqrt(12 pi)), so alpha and sigma mean what they mean in the paper.

After the distortion the pixel values (floats 0..255) become features as `prepare.pixel_table`
makes them: divided by 255, or binarized at the threshold, or left as they are.

Import this module only after `runtime.start()`: it imports JAX.
"""

from __future__ import annotations

import math
from functools import lru_cache

import jax
import jax.numpy as jnp
import numpy as np

from mnist_cli.config import IMAGE_SIDE, Augment, DataConfig

# Parameters drawn per image, in this order, each uniform in [-1, 1] then scaled.
_ROTATION, _SCALE, _SHEAR, _SHIFT_X, _SHIFT_Y = range(5)
_AFFINE_DRAWS = 5


def _grid_spacing(sigma: float) -> float:
    return max(1.0, sigma)


def elastic_grid_size(sigma: float) -> int:
    """Points per axis of the coarse noise grid: spacing sigma over the image and a margin
    of 1.5 Gaussian widths each side, so the field near the border is smoothed like the rest."""
    return int(math.ceil((IMAGE_SIDE - 1 + 3 * sigma) / _grid_spacing(sigma))) + 1


@lru_cache(maxsize=8)
def elastic_matrix(sigma: float) -> np.ndarray:
    """(28, grid) float32: coarse noise along one axis -> smoothed field at the 28 pixels.

    The grid point `k` sits at `-1.5 sigma + k * spacing`; the noise is smoothed on the grid
    by a Gaussian of width sigma, then each pixel interpolates the two grid points around
    it. Each row is scaled so that the 2-D field `A N A^T` of unit-variance noise `N` has
    unit variance at every pixel (the row's sum of squares is 1)."""
    spacing = _grid_spacing(sigma)
    size = elastic_grid_size(sigma)
    points = -1.5 * sigma + spacing * np.arange(size)
    smoothing = np.exp(-0.5 * ((points[:, None] - points[None, :]) / sigma) ** 2)
    smoothing /= smoothing.sum(axis=1, keepdims=True)
    upsampling = np.zeros((IMAGE_SIDE, size))
    for pixel in range(IMAGE_SIDE):
        position = (pixel - points[0]) / spacing
        left = min(int(np.floor(position)), size - 2)
        fraction = position - left
        upsampling[pixel, left] = 1 - fraction
        upsampling[pixel, left + 1] = fraction
    matrix = upsampling @ smoothing
    matrix /= np.sqrt((matrix**2).sum(axis=1, keepdims=True))
    return matrix.astype(np.float32)


def simard_field_std(alpha: float, sigma: float) -> float:
    """The standard deviation of Simard's displacement: alpha times uniform [-1, 1] noise
    (variance 1/3) smoothed by a normalized Gaussian of width sigma (sum of squared
    weights 1 / (4 pi sigma^2))."""
    return alpha / (sigma * math.sqrt(12 * math.pi))


def affine_matrices(draws: jax.Array, settings: Augment) -> tuple[jax.Array, jax.Array]:
    """(B, 2, 2) inverse matrices and (B, 2) translations from (B, 5) draws in [-1, 1].

    Coordinates are (x, y) = (column, row). Rotation and shear are in degrees, scale a
    fraction (0.1: factor 0.9 to 1.1), translation in pixels."""
    angle = jnp.deg2rad(settings.rotation) * draws[:, _ROTATION]
    factor = 1.0 + settings.scale * draws[:, _SCALE]
    shear = jnp.tan(jnp.deg2rad(settings.shear) * draws[:, _SHEAR])
    cosine, sine = jnp.cos(angle), jnp.sin(angle)
    # M = R S H, with H = [[1, shear], [0, 1]]; its inverse H^-1 S^-1 R^-1 in closed form.
    rotation_inverse = jnp.stack([jnp.stack([cosine, sine], -1),
                                  jnp.stack([-sine, cosine], -1)], -2)
    shear_inverse = jnp.stack([jnp.stack([jnp.ones_like(shear), -shear], -1),
                               jnp.stack([jnp.zeros_like(shear), jnp.ones_like(shear)], -1)], -2)
    inverse = shear_inverse @ rotation_inverse / factor[:, None, None]
    shift = settings.translation * draws[:, _SHIFT_X:_SHIFT_Y + 1]
    return inverse, shift


def distort(images: jax.Array, inverse: jax.Array, shift: jax.Array,
            displacement: jax.Array | None = None) -> jax.Array:
    """(B, 28, 28) float images resampled at `c + inverse (q - c - shift) + displacement(q)`
    for every output pixel q (bilinear, zero outside). `displacement`: (B, 2, 28, 28) in
    pixels, (x, y), or None.

    The images get a frame of zeros (one pixel before, two after) and the source points
    are clipped into it, so the four neighbours of every point are plain in-bounds reads
    of one flat array (four simple gathers are the fastest form on a CPU, measured)."""
    batch = images.shape[0]
    centre = (IMAGE_SIDE - 1) / 2
    axis = jnp.arange(IMAGE_SIDE, dtype=jnp.float32) - centre
    x = axis[None, None, :] - shift[:, 0, None, None]
    y = axis[None, :, None] - shift[:, 1, None, None]
    source_x = inverse[:, 0, 0, None, None] * x + inverse[:, 0, 1, None, None] * y + centre
    source_y = inverse[:, 1, 0, None, None] * x + inverse[:, 1, 1, None, None] * y + centre
    if displacement is not None:
        source_x = source_x + displacement[:, 0]
        source_y = source_y + displacement[:, 1]
    side = IMAGE_SIDE + 3
    flat = jnp.pad(images, ((0, 0), (1, 2), (1, 2))).reshape(-1)
    source_x = jnp.clip(source_x, -1.0, float(IMAGE_SIDE))
    source_y = jnp.clip(source_y, -1.0, float(IMAGE_SIDE))
    left, top = jnp.floor(source_x), jnp.floor(source_y)
    fraction_x, fraction_y = source_x - left, source_y - top
    index = ((top.astype(jnp.int32) + 1) * side + left.astype(jnp.int32) + 1
             + (jnp.arange(batch, dtype=jnp.int32) * side * side)[:, None, None])

    def pixel(offset: int) -> jax.Array:
        return flat.at[index + offset].get(mode="clip")

    top_row = pixel(0) * (1 - fraction_x) + pixel(1) * fraction_x
    bottom_row = pixel(side) * (1 - fraction_x) + pixel(side + 1) * fraction_x
    return top_row * (1 - fraction_y) + bottom_row * fraction_y


def elastic_displacement(noise: jax.Array, settings: Augment) -> jax.Array:
    """(B, 2, 28, 28) displacements from (B, 2, grid, grid) noise uniform in [-1, 1]."""
    matrix = jnp.asarray(elastic_matrix(float(settings.elastic_sigma)))
    batch, size = noise.shape[0], noise.shape[-1]
    # (A N^T A^T is A N A^T transposed: as good a field, with i.i.d. noise N.) Two plain 2-D
    # matrix products with a transpose between them: faster on a CPU than an einsum or
    # batched products, measured.
    half = (noise.reshape(-1, size) @ matrix.T).reshape(batch * 2, size, IMAGE_SIDE)
    field = half.swapaxes(1, 2).reshape(-1, size) @ matrix.T
    field = field.reshape(batch, 2, IMAGE_SIDE, IMAGE_SIDE)
    # Uniform noise in [-1, 1] has variance 1/3; the matrices keep it per pixel.
    scale = simard_field_std(settings.elastic_alpha, settings.elastic_sigma) * math.sqrt(3)
    return scale * field


def image_keys(seed: int, epoch: jax.Array | int, rows: jax.Array) -> jax.Array:
    """One key per training row for epoch `epoch`: a function of (seed, epoch, row) only."""
    epoch_key = jax.random.fold_in(jax.random.key(seed, impl="threefry2x32"), epoch)
    return jax.vmap(lambda row: jax.random.fold_in(epoch_key, row))(rows)


def uniform_draws(keys: jax.Array, count: int) -> jax.Array:
    """(B, count) numbers uniform in [-1, 1) on a grid of 2^-15, `count` per key: each
    32 random bits make two 16-bit numbers (half the random bits of `jax.random.uniform`,
    which is most of the cost of the elastic field)."""
    words = (count + 1) // 2
    bits = jax.vmap(lambda key: jax.random.bits(key, (words,), jnp.uint32))(keys)
    halves = jnp.concatenate([bits >> 16, bits & 0xFFFF], axis=-1)[:, :count]
    return halves.astype(jnp.float32) * (2.0 / 65536) - 1.0


def distort_rows(images: jax.Array, keys: jax.Array, settings: Augment) -> jax.Array:
    """(B, 28, 28) float pixel images, each distorted with its own key (`image_keys`)."""
    elastic = settings.elastic_alpha > 0
    size = elastic_grid_size(float(settings.elastic_sigma))
    draws = uniform_draws(keys, _AFFINE_DRAWS + (2 * size * size if elastic else 0))
    inverse, shift = affine_matrices(draws[:, :_AFFINE_DRAWS], settings)
    displacement = None
    if elastic:
        noise = draws[:, _AFFINE_DRAWS:].reshape(-1, 2, size, size)
        displacement = elastic_displacement(noise, settings)
    return distort(images, inverse, shift, displacement)


def pixels_to_features(pixels: jax.Array, data: DataConfig) -> jax.Array:
    """Float pixel values 0..255 -> features, the rules of `prepare.pixel_table`."""
    if data.binarize:
        return (pixels / 255.0 > data.binarize_threshold).astype(jnp.float32)
    return pixels / jnp.float32(255) if data.scale else pixels


def augmented_features(pixels: jax.Array, rows: jax.Array, seed: int, epoch: jax.Array | int,
                       data: DataConfig) -> jax.Array:
    """The features of distorted training images: `pixels` (B, 28, 28) or (B, 784) uint8
    rows `rows` of the training set, distorted for epoch `epoch` of a run seeded `seed`,
    shaped as the model takes them ((B, 784) with `data.flatten`)."""
    settings = data.augment
    batch = pixels.shape[0]
    images = pixels.reshape(batch, IMAGE_SIDE, IMAGE_SIDE).astype(jnp.float32)
    distorted = distort_rows(images, image_keys(seed, epoch, rows), settings)
    features = pixels_to_features(distorted, data)
    return features.reshape(batch, -1) if data.flatten else features


def augment_epoch_on_host(pixels: np.ndarray, seed: int, epoch: int, data: DataConfig,
                          chunk: int = 4096) -> np.ndarray:
    """Every training image distorted for epoch `epoch`, as float32 features (for `fit`):
    the very function the fast engine runs, in chunks of `chunk` rows."""
    function = _host_function(data.model_dump_json(), seed)
    parts = []
    for start in range(0, len(pixels), chunk):
        stop = min(len(pixels), start + chunk)
        rows = np.arange(start, stop, dtype=np.int32)
        block = pixels[start:stop]
        if len(block) < chunk:  # one compiled shape: pad the last chunk
            block = np.concatenate([block, np.zeros((chunk - len(block), *block.shape[1:]),
                                                    dtype=block.dtype)])
            rows = np.concatenate([rows, np.zeros(chunk - len(rows), dtype=np.int32)])
        parts.append(np.asarray(function(block, rows, np.int32(epoch)))[: stop - start])
    return np.concatenate(parts) if parts else np.zeros((0, *pixels.shape[1:]), np.float32)


@lru_cache(maxsize=4)
def _host_function(data_json: str, seed: int):
    """One compiled function per data config (given as JSON: pydantic models do not hash)
    and seed."""
    data = DataConfig.model_validate_json(data_json)
    return jax.jit(lambda pixels, rows, epoch: augmented_features(
        pixels, rows, seed, epoch, data))


def preview(pixels: np.ndarray, seed: int, data: DataConfig, digits: int = 6,
            variants: int = 7) -> np.ndarray:
    """(digits, 1 + variants, 28, 28) float pixels 0..255 for `augmentations.png`: the first
    `digits` training images, each followed by its distortions in epochs 0..variants-1
    (what the network is trained on, before preprocessing)."""
    function = jax.jit(lambda images, rows, epoch: distort_rows(
        images, image_keys(seed, epoch, rows), data.augment))
    chosen = np.asarray(pixels[:digits], dtype=np.float32).reshape(-1, IMAGE_SIDE, IMAGE_SIDE)
    rows = np.arange(len(chosen), dtype=np.int32)
    columns = [chosen] + [np.asarray(function(chosen, rows, np.int32(epoch)))
                          for epoch in range(variants)]
    return np.stack(columns, axis=1)
