"""Distorting training digits on the fly (`data.augment`): affine and elastic, every epoch anew.

One function, `augmented_features`, turns a batch of uint8 training images into the
float32 features of their distorted versions. It is written in `keras.ops`, so it runs on
every backend: the fast engines (JAX, TensorFlow) call it inside their compiled epoch, on
the device; the `fit` engine calls it on the host for a whole epoch's training array
before `model.fit` sees it. On one backend they all get the same numbers because every
image's distortion is drawn from random numbers made of `(seed, epoch, row)` only (the row
in the training set, not its place in a batch): a resumed run, a run with another batch
size or another engine distorts image `i` of epoch `e` the same way. The random numbers
are JAX's (threefry keys) on JAX and a counter-based hash elsewhere, so a run on another
backend distorts otherwise, as it also draws other initial weights.

The distortion of one image, with `c` the image centre and output pixel `q`:

    source(q) = c + M^-1 (q - c - t) + d(q)

where `M = R(rotation) S(scale) H(shear)` and `t` the translation are drawn uniformly in the
config's ranges, and `d` is the elastic displacement field; the output is the input
bilinearly sampled at `source(q)` (zero outside the image). Then the pen (`stroke`): the
image moves a drawn fraction of the way to its 3x3 dilation (a thicker pen) or erosion (a
thinner one); and the ink (`contrast`): its intensity is scaled down by a drawn factor.
Their random numbers are drawn apart from the geometry's, so turning them on leaves every
other distortion of a run as it was. Simard et al. (2003) make `d` as
alpha times uniform noise in [-1, 1] per pixel smoothed by a Gaussian of width sigma: a
25-tap convolution of two 28x28 fields per image, which is most of the cost of a naive
version. Here the noise is drawn on a coarse grid (spacing sigma), smoothed there by the
same Gaussian (a few taps in grid units) and bilinearly upsampled; smoothing and
upsampling are one fixed (28, grid) matrix per axis, so a field is two small matrix
products. Each pixel's displacement is scaled to the standard deviation of Simard's field,
alpha / (sigma sqrt(12 pi)), so alpha and sigma mean what they mean in the paper.

After the distortion the pixel values (floats 0..255) become features as `prepare.pixel_table`
makes them: divided by 255, or binarized at the threshold, or left as they are.

Import this module only after `runtime.start()`: it imports Keras.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import keras
import numpy as np
from keras import ops

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


Tensor = Any  # a backend's array: jax.Array, tf.Tensor, torch.Tensor


def affine_matrices(draws: Tensor, settings: Augment) -> tuple[Tensor, Tensor]:
    """(B, 2, 2) inverse matrices and (B, 2) translations from (B, 5) draws in [-1, 1].

    Coordinates are (x, y) = (column, row). Rotation and shear are in degrees, scale a
    fraction (0.1: factor 0.9 to 1.1), translation in pixels."""
    draws = ops.convert_to_tensor(draws, "float32")
    angle = ops.deg2rad(settings.rotation) * draws[:, _ROTATION]
    factor = 1.0 + settings.scale * draws[:, _SCALE]
    shear = ops.tan(ops.deg2rad(settings.shear) * draws[:, _SHEAR])
    cosine, sine = ops.cos(angle), ops.sin(angle)
    # M = R S H, with H = [[1, shear], [0, 1]]; its inverse H^-1 S^-1 R^-1 in closed form.
    rotation_inverse = ops.stack([ops.stack([cosine, sine], -1),
                                  ops.stack([-sine, cosine], -1)], -2)
    shear_inverse = ops.stack([ops.stack([ops.ones_like(shear), -shear], -1),
                               ops.stack([ops.zeros_like(shear), ops.ones_like(shear)], -1)], -2)
    inverse = ops.matmul(shear_inverse, rotation_inverse) / factor[:, None, None]
    shift = settings.translation * draws[:, _SHIFT_X:_SHIFT_Y + 1]
    return inverse, shift


def distort(images: Tensor, inverse: Tensor, shift: Tensor,
            displacement: Tensor | None = None) -> Tensor:
    """(B, 28, 28) float images resampled at `c + inverse (q - c - shift) + displacement(q)`
    for every output pixel q (bilinear, zero outside). `displacement`: (B, 2, 28, 28) in
    pixels, (x, y), or None.

    The images get a frame of zeros (one pixel before, two after) and the source points
    are clipped into it, so the four neighbours of every point are plain in-bounds reads
    of one flat array (four simple gathers are the fastest form on a CPU, measured). The
    points are computed as (B, 784) rows, not (B, 28, 28): XLA's CPU code for the gathers
    is faster then (docs/augmentation.md, Throughput)."""
    images = ops.convert_to_tensor(images, "float32")
    inverse, shift = ops.convert_to_tensor(inverse), ops.convert_to_tensor(shift)
    batch, pixels = images.shape[0], IMAGE_SIDE * IMAGE_SIDE
    centre = (IMAGE_SIDE - 1) / 2
    grid = np.arange(pixels)
    x = ops.convert_to_tensor((grid % IMAGE_SIDE - centre).astype(np.float32))[None, :]
    y = ops.convert_to_tensor((grid // IMAGE_SIDE - centre).astype(np.float32))[None, :]
    x, y = x - shift[:, 0, None], y - shift[:, 1, None]
    source_x = inverse[:, 0, 0, None] * x + inverse[:, 0, 1, None] * y + centre
    source_y = inverse[:, 1, 0, None] * x + inverse[:, 1, 1, None] * y + centre
    if displacement is not None:
        displacement = ops.reshape(ops.convert_to_tensor(displacement), (batch, 2, pixels))
        source_x = source_x + displacement[:, 0]
        source_y = source_y + displacement[:, 1]
    side = IMAGE_SIDE + 3
    flat = ops.reshape(ops.pad(images, ((0, 0), (1, 2), (1, 2))), (-1,))
    source_x = ops.clip(source_x, -1.0, float(IMAGE_SIDE))
    source_y = ops.clip(source_y, -1.0, float(IMAGE_SIDE))
    left, top = ops.floor(source_x), ops.floor(source_y)
    fraction_x, fraction_y = source_x - left, source_y - top
    index = ((ops.cast(top, "int32") + 1) * side + ops.cast(left, "int32") + 1
             + (ops.arange(batch, dtype="int32") * side * side)[:, None])

    on_jax = keras.backend.backend() == "jax"

    def pixel(offset: int) -> Tensor:
        # JAX's clipping gather is what the fast JAX engine has always compiled (another
        # gather there changes how XLA fuses the blend, and its last bits).
        return flat.at[index + offset].get(mode="clip") if on_jax else ops.take(
            flat, index + offset)

    top_row = pixel(0) * (1 - fraction_x) + pixel(1) * fraction_x
    bottom_row = pixel(side) * (1 - fraction_x) + pixel(side + 1) * fraction_x
    distorted = top_row * (1 - fraction_y) + bottom_row * fraction_y
    return ops.reshape(distorted, (batch, IMAGE_SIDE, IMAGE_SIDE))


def elastic_displacement(noise: Tensor, settings: Augment) -> Tensor:
    """(B, 2, 28, 28) displacements from (B, 2, grid, grid) noise uniform in [-1, 1]:
    `scale A N^T A^T` per field, the scale in the second product's matrix."""
    matrix = elastic_matrix(float(settings.elastic_sigma)).T
    # Uniform noise in [-1, 1] has variance 1/3; the matrices keep it per pixel.
    scale = simard_field_std(settings.elastic_alpha, settings.elastic_sigma) * math.sqrt(3)
    transposed = ops.convert_to_tensor(matrix)
    scaled = ops.convert_to_tensor((matrix * scale).astype(np.float32))
    noise = ops.convert_to_tensor(noise, "float32")
    batch, size = noise.shape[0], noise.shape[-1]
    # (A N^T A^T is A N A^T transposed: as good a field, with i.i.d. noise N.) Two plain 2-D
    # matrix products with a transpose between them: faster on a CPU than an einsum or
    # batched products, measured. The scale goes into a product, not onto the field: XLA
    # would fuse that multiplication into the resampling in the products' layout, and its
    # CPU code for the gathers is then twice as slow (docs/augmentation.md, Throughput).
    half = ops.reshape(ops.matmul(ops.reshape(noise, (-1, size)), transposed),
                       (batch * 2, size, IMAGE_SIDE))
    field = ops.matmul(ops.reshape(ops.swapaxes(half, 1, 2), (-1, size)), scaled)
    return ops.reshape(field, (batch, 2, IMAGE_SIDE, IMAGE_SIDE))


def uniform_draws(seed: Tensor | int, epoch: Tensor | int, rows: Tensor,
                  count: int) -> Tensor:
    """(B, count) numbers uniform in [-1, 1) on a grid of 2^-15 for training rows `rows` in
    epoch `epoch` of a run seeded `seed`: a function of (seed, epoch, row) only. Each 32
    random bits make two 16-bit numbers (half the random bits of `jax.random.uniform`,
    which is most of the cost of the elastic field)."""
    if keras.backend.backend() == "jax":
        bits = _threefry_bits(seed, epoch, rows, (count + 1) // 2)
    else:
        bits = _hashed_bits(seed, epoch, rows, (count + 1) // 2)
    halves = ops.concatenate([bits // 65536, bits % 65536], axis=-1)[:, :count]
    return ops.cast(halves, "float32") * (2.0 / 65536) - 1.0


def _threefry_bits(seed: Any, epoch: Any, rows: Any, words: int) -> Any:
    """(B, words) uint32: JAX's threefry, one key per row folded from (seed, epoch, row)."""
    import jax

    epoch_key = jax.random.fold_in(jax.random.key(seed, impl="threefry2x32"), epoch)
    keys = jax.vmap(lambda row: jax.random.fold_in(epoch_key, row))(rows)
    return jax.vmap(lambda key: jax.random.bits(key, (words,), "uint32"))(keys)


_WORD = 2**32


def _times(values: Tensor, constant: int) -> Tensor:
    """`values * constant mod 2^32` for int64 values below 2^32, in 16-bit halves so that no
    product leaves int64 (every backend has int64; not every one multiplies uint32)."""
    low, high = values % 65536, values // 65536
    return (low * constant + ((high * constant) % 65536) * 65536) % _WORD


def _mix(values: Tensor) -> Tensor:
    """MurmurHash3's 32-bit finalizer on int64 values below 2^32: every input bit flips
    about half the output bits."""
    values = _times(ops.bitwise_xor(values, values // 65536), 0x85EBCA6B)
    values = _times(ops.bitwise_xor(values, values // 8192), 0xC2B2AE35)
    return ops.bitwise_xor(values, values // 65536)


def _hashed_bits(seed: Any, epoch: Any, rows: Any, words: int) -> Tensor:
    """(B, words) int64 below 2^32, a counter-based generator: each row's word hashes
    (seed, epoch, row), and its k-th random word hashes that word plus k."""
    golden = 0x9E3779B9

    def word(value: Any) -> Tensor:
        return ops.cast(ops.convert_to_tensor(value), "int64") % _WORD

    run = _mix((_mix(ops.bitwise_xor(word(seed), word(np.int64(golden)))) + word(epoch))
               % _WORD)
    row = _mix(ops.bitwise_xor(run, _mix(_times(word(rows), 0x27D4EB2F))))
    counters = _times(ops.arange(words, dtype="int64"), golden)
    return _mix((row[:, None] + counters[None, :]) % _WORD)


def distort_rows(images: Tensor, seed: Tensor | int, epoch: Tensor | int, rows: Tensor,
                 settings: Augment) -> Tensor:
    """(B, 28, 28) float pixel images, training rows `rows`, distorted for `epoch`."""
    elastic = settings.elastic_alpha > 0
    size = elastic_grid_size(float(settings.elastic_sigma))
    draws = uniform_draws(seed, epoch, rows, _AFFINE_DRAWS + (2 * size * size if elastic else 0))
    inverse, shift = affine_matrices(draws[:, :_AFFINE_DRAWS], settings)
    displacement = None
    if elastic:
        noise = ops.reshape(draws[:, _AFFINE_DRAWS:], (-1, 2, size, size))
        displacement = elastic_displacement(noise, settings)
    distorted = distort(images, inverse, shift, displacement)
    if settings.stroke > 0 or settings.contrast > 0:
        pen = uniform_draws(seed + _PEN_SEED_OFFSET, epoch, rows, 2)
        distorted = restroke(distorted, pen[:, 0] * settings.stroke,
                             (pen[:, 1] + 1) / 2 * settings.contrast)
    return distorted


_PEN_SEED_OFFSET = 7919  # the pen's draws: their own stream, apart from the geometry's


def _largest_around(images: Tensor) -> Tensor:
    """Each pixel's largest value in its 3x3 neighbourhood (outside the image ignored): as
    rows then columns of shifted maxima, five times faster than a max-pool on a CPU."""
    padded = ops.pad(images, ((0, 0), (1, 1), (1, 1)), constant_values=float("-inf"))
    rows = ops.maximum(ops.maximum(padded[:, :-2], padded[:, 1:-1]), padded[:, 2:])
    return ops.maximum(ops.maximum(rows[:, :, :-2], rows[:, :, 1:-1]), rows[:, :, 2:])


def restroke(images: Tensor, width: Tensor, fading: Tensor) -> Tensor:
    """(B, 28, 28) images with the pen changed: `width` in [-1, 1] per image moves it that
    fraction of the way to its 3x3 dilation (> 0) or erosion (< 0); then the ink is scaled
    by 1 - `fading`."""
    dilated, eroded = _largest_around(images), -_largest_around(-images)
    width = width[:, None, None]
    target = ops.where(width > 0, dilated, eroded)
    return (images + ops.abs(width) * (target - images)) * (1.0 - fading[:, None, None])


def pixels_to_features(pixels: Tensor, data: DataConfig) -> Tensor:
    """Float pixel values 0..255 -> features, the rules of `prepare.pixel_table`."""
    if data.binarize:
        return ops.cast(pixels / 255.0 > data.binarize_threshold, "float32")
    return pixels / np.float32(255) if data.scale else pixels


def augmented_features(pixels: Tensor, rows: Tensor, seed: Tensor | int,
                       epoch: Tensor | int, data: DataConfig) -> Tensor:
    """The features of distorted training images: `pixels` (B, 28, 28) or (B, 784) uint8
    rows `rows` of the training set, distorted for epoch `epoch` of a run seeded `seed`,
    shaped as the model takes them ((B, 784) with `data.flatten`)."""
    pixels = ops.convert_to_tensor(pixels)
    batch = pixels.shape[0]
    images = ops.cast(ops.reshape(pixels, (batch, IMAGE_SIDE, IMAGE_SIDE)), "float32")
    distorted = distort_rows(images, seed, epoch, rows, data.augment)
    features = pixels_to_features(distorted, data)
    return ops.reshape(features, (batch, -1)) if data.flatten else features


def augment_epoch_on_host(pixels: np.ndarray, seed: int, epoch: int, data: DataConfig,
                          chunk: int = 4096) -> np.ndarray:
    """Every training image distorted for epoch `epoch`, as float32 features (for `fit`):
    the very function the fast engines run, in chunks of `chunk` rows."""
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
        features = function(block, rows, np.asarray(epoch, np.int32))
        parts.append(ops.convert_to_numpy(features)[: stop - start])
    return np.concatenate(parts) if parts else np.zeros((0, *pixels.shape[1:]), np.float32)


def compiled(function: Any) -> Any:
    """`function` compiled by the backend: `jax.jit`, an XLA `tf.function`, or as it is."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.jit(function)
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(function, jit_compile=True)
    return function


@lru_cache(maxsize=4)
def _host_function(data_json: str, seed: int):
    """One compiled function per data config (given as JSON: pydantic models do not hash)
    and seed."""
    data = DataConfig.model_validate_json(data_json)
    return compiled(lambda pixels, rows, epoch: augmented_features(
        pixels, rows, seed, epoch, data))


def preview(pixels: np.ndarray, seed: int, data: DataConfig, digits: int = 6,
            variants: int = 7) -> np.ndarray:
    """(digits, 1 + variants, 28, 28) float pixels 0..255 for `augmentations.png`: the first
    `digits` training images, each followed by its distortions in epochs 0..variants-1
    (what the network is trained on, before preprocessing)."""
    function = compiled(lambda images, rows, epoch: distort_rows(
        images, seed, epoch, rows, data.augment))
    chosen = np.asarray(pixels[:digits], dtype=np.float32).reshape(-1, IMAGE_SIDE, IMAGE_SIDE)
    rows = np.arange(len(chosen), dtype=np.int32)
    columns = [chosen] + [ops.convert_to_numpy(function(chosen, rows, np.asarray(epoch, np.int32)))
                          for epoch in range(variants)]
    return np.stack(columns, axis=1)
