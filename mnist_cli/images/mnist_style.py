"""Turn a user's own digit image into a 28x28 MNIST-style array for `mnist predict`.

A Dense network trained on MNIST only knows MNIST's conventions, so a photo or a drawing must be
made to look like an MNIST digit before it is classified. LeCun et al. describe how MNIST was
made: each digit was fitted into a 20x20 box keeping its aspect ratio (anti-aliasing produced
the grey levels), then placed in a 28x28 field so that its centre of mass lies at the centre.
The real data confirm it: the bounding box of every digit has 20 pixels on its longer side and
the intensity-weighted centre of mass is (13.99, 14.00) on average in row/column indices, with
the spread (0.29 px) of an integer shift. This module does the same, in order:

1. decode the file to grey levels (`decoding.read_greyscale`, `load_digit_image` only);
2. crop away strips along the edges that are not the paper (a table, a dark frame), then find
   the background level from the border and the polarity of the ink, so that the ink is
   light on black like MNIST whatever the user drew with;
3. subtract the background and a noise floor, drop isolated specks, crop to the ink;
4. thicken strokes that would be far thinner than MNIST's after the fit (a 3-pixel pen on a
   1000-pixel canvas), because the network has never seen hairlines;
5. fit the digit into 20x20 keeping its aspect ratio, with anti-aliased resampling;
6. place it in 28x28 with its centre of mass at (14, 14), scale the ink to a peak of 255.

The result is uint8, as in the raw MNIST files; the run's own preprocessing (dividing by 255,
binarizing) is applied afterwards by the caller, exactly as for the training data.

This module imports neither Keras nor TensorFlow: preparing an image must stay instant.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from mnist_cli.errors import ImageError
from mnist_cli.images.decoding import WORKING_SIDE, decode_greyscale_bytes, read_greyscale

MNIST_SIDE = 28
"""Side of an MNIST image, in pixels."""

DIGIT_BOX_SIDE = 20
"""MNIST fitted each digit into a 20x20 box (aspect ratio kept) before centring it."""

CENTRE_OF_MASS_TARGET = 14.0
"""Where MNIST's centres of mass lie, in row/column indices (measured mean 13.99, 14.00)."""

BORDER_FRACTION = 0.02
"""The background is estimated from a band this fraction of the shorter side wide (at least
one pixel) around the edge: a single outermost row can be a scanner or JPEG artefact."""

MINIMUM_CONTRAST_FRACTION = 0.1
"""Ink must differ from the background by at least this fraction of the full grey range
(25 of 255 levels), or the image is considered blank rather than turning noise into a digit."""

EDGE_OFF_PAPER_FRACTION = 0.8
"""A row or column at the image's edge with at least this share of its pixels far from the
paper's level (a table, a scanner lid, a dark frame) is not paper: such lines are cropped
away before the background is fitted, or the table would be taken for the digit."""

EDGE_CROP_LIMIT = 0.45
"""At most this share of each side is cropped as off the paper."""

MINIMUM_CONTRAST_NOISE_SIGMAS = 6.0
"""... and by at least this many standard deviations of the background noise."""

NOISE_FLOOR_SIGMAS = 3.0
"""Grey levels within this many noise standard deviations of the background are background."""

RELATIVE_NOISE_FLOOR = 0.05
"""Levels below this fraction of the ink's contrast are background too (JPEG ringing, faint
paper texture), so that cropping finds the digit, not the noise around it."""

SPECK_MASS_FRACTION = 0.03
"""A connected blob of ink whose total intensity is below this fraction of the largest blob's
is a speck (dust, a JPEG block) and is dropped: left in, it would stretch the bounding box and
shrink the digit. Real pieces of a digit drawn in several strokes are far heavier than this."""

MINIMUM_STROKE_WIDTH = 1.25
"""If the strokes would be thinner than this (pixels, after the 20x20 fit) they are thickened.
Measured the same way (`_stroke_width` on 1000 MNIST test digits upscaled to 200x200), MNIST's
strokes are 1.36 to 3.9 pixels wide (minimum to 95th percentile, median 2.6): no real MNIST
digit is touched, a hairline drawing always is."""

TARGET_STROKE_WIDTH = 2.5
"""The width thin strokes are thickened to, close to MNIST's median."""

THICKENING_RESOLUTION = 8
"""Thickening is done at this many times the final resolution (a 160-pixel digit): fine enough
for smooth, anti-aliased strokes, small enough for the distance transform to be instant."""


def load_digit_image(path: str | Path) -> np.ndarray:
    """Read an image file holding one digit and return it as MNIST would have it.

    Any format and size Pillow decodes is accepted, dark ink on light paper or light ink on
    dark, with or without transparency. Returns a uint8 (28, 28) array: a light digit on a
    black background, fitted into 20x20 and centred by its centre of mass.

    Raises `ImageError` (one line naming the file) when the file is missing, is not an image,
    is truncated or corrupt, is too large to decode safely, or holds no digit.
    """
    path = Path(path)
    grey = read_greyscale(path)
    return _prepare_digit(grey, source_name=str(path))


def load_digit_bytes(data: bytes, source_name: str = "the upload") -> np.ndarray:
    """`load_digit_image` for an image file's bytes held in memory (an upload): the same
    safe decoding and the same MNIST preparation, nothing written to disk."""
    return _prepare_digit(decode_greyscale_bytes(data, source_name), source_name=source_name)


def prepare_digit(image: np.ndarray) -> np.ndarray:
    """Run the MNIST preprocessing on a 2-D grey-level array instead of a file.

    `image` may be uint8 (0..255), another integer type, bool, or float (taken as 0..1 when its
    maximum is at most 1, else as 0..255). Either polarity is accepted. Returns uint8 (28, 28),
    light digit on black. Raises `ImageError` for an array that is not a 2-D grey image or
    holds no digit. Tests and callers that already hold pixels use this to skip the file.
    """
    return _prepare_digit(image, source_name="the image")


# --------------------------------------------------------------------------------------------
# The MNIST pipeline on grey levels


def _as_grey_levels(image: np.ndarray, source_name: str) -> np.ndarray:
    """Validate a 2-D grey image and return it as float32 levels 0..255."""
    array = np.asarray(image)
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageError(
            f"{source_name}: expected a 2-D grey-level image (height, width), "
            f"got an array of shape {array.shape}"
        )
    if array.dtype == np.bool_:
        return array.astype(np.float32) * 255.0
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise ImageError(f"{source_name}: grey levels must be numbers, got dtype {array.dtype}")
    values = array.astype(np.float32)
    if not np.all(np.isfinite(values)):
        raise ImageError(f"{source_name}: the image holds NaN or infinite grey levels")
    minimum, maximum = float(values.min()), float(values.max())
    if minimum < 0.0:
        raise ImageError(f"{source_name}: grey levels must not be negative (minimum {minimum})")
    if np.issubdtype(array.dtype, np.integer):
        full_scale = 255.0 if maximum <= 255.0 else float(np.iinfo(array.dtype).max)
    elif maximum <= 1.0:
        full_scale = 1.0
    else:
        full_scale = max(255.0, maximum)
    return values * np.float32(255.0 / full_scale)


def _reduce_array(values: np.ndarray) -> np.ndarray:
    """Box-average an array whose longer side exceeds `WORKING_SIDE` (arrays given directly)."""
    factor = math.ceil(max(values.shape) / WORKING_SIDE)
    if factor <= 1:
        return values
    return np.asarray(Image.fromarray(values).reduce(factor), dtype=np.float32)


def _border_mask(shape: tuple[int, int]) -> np.ndarray:
    """True on a band around the edge, where a centred digit's background shows."""
    height, width = shape
    band = max(1, int(min(height, width) * BORDER_FRACTION))
    mask = np.ones(shape, dtype=bool)
    if 2 * band < min(height, width):
        mask[band:-band, band:-band] = False
    return mask


def _crop_to_paper(values: np.ndarray) -> np.ndarray:
    """The image without the strips along its edges that are not the paper.

    The paper's level is the median of the image (the paper is most of a photo of a digit);
    from each edge inwards, the lines mostly unlike it are cut, then the lines of the
    blurred or shadowed boundary beside them, then a margin of 1% of the side."""
    off_paper = np.abs(values - np.median(values)) > MINIMUM_CONTRAST_FRACTION * 255.0
    by_row, by_column = off_paper.mean(axis=1), off_paper.mean(axis=0)
    top, bottom = _off_paper_lines(by_row), _off_paper_lines(by_row[::-1])
    left, right = _off_paper_lines(by_column), _off_paper_lines(by_column[::-1])
    height, width = values.shape
    return values[top : height - bottom, left : width - right]


def _off_paper_lines(fractions: np.ndarray) -> int:
    """How many lines from the start of `fractions` (each line's share of off-paper pixels)
    lie off the paper: none unless the first is almost wholly off it."""
    limit = int(EDGE_CROP_LIMIT * len(fractions))
    count = 0
    while count < limit and fractions[count] >= EDGE_OFF_PAPER_FRACTION:
        count += 1
    if count == 0:
        return 0
    while count < limit and fractions[count] >= 0.5:
        count += 1
    return min(limit, count + max(1, len(fractions) // 100))


def _background_surface(values: np.ndarray) -> tuple[np.ndarray, float]:
    """The paper's level at every pixel and the noise's standard deviation around it.

    The paper of a photo is rarely evenly lit: its level is fitted to the border band as a
    bilinear surface `a + b x + c y + d x y`, twice, the second time without the border
    pixels far from the first fit (a digit touching the edge). The noise is the robust
    spread (median absolute deviation) of the border around the surface. An evenly lit
    page gives a flat surface at the border's level."""
    height, width = values.shape
    rows, columns = np.nonzero(_border_mask(values.shape))
    y = rows / max(height - 1, 1) - 0.5
    x = columns / max(width - 1, 1) - 0.5
    design = np.stack([np.ones_like(x), x, y, x * y], axis=1)
    levels = values[rows, columns].astype(np.float64)
    keep = np.ones(len(levels), dtype=bool)
    for _ in range(2):
        coefficients = np.linalg.lstsq(design[keep], levels[keep], rcond=None)[0]
        residuals = levels - design @ coefficients
        spread = 1.4826 * float(np.median(np.abs(residuals[keep] - np.median(residuals[keep]))))
        keep = np.abs(residuals) <= max(3.0 * spread, 1.0)
    grid_y = (np.arange(height) / max(height - 1, 1) - 0.5)[:, None]
    grid_x = (np.arange(width) / max(width - 1, 1) - 0.5)[None, :]
    a, b, c, d = coefficients
    surface = a + b * grid_x + c * grid_y + d * grid_x * grid_y
    return surface.astype(np.float32), spread


def _ink_above_background(values: np.ndarray, source_name: str) -> np.ndarray:
    """Background to 0 and ink positive, whatever the polarity; raise if there is no ink.

    The background is the paper's level fitted to the border band (`_background_surface`:
    uneven lighting is not mistaken for ink or for noise), robust to a digit touching the
    edge, and its noise is estimated from the same pixels. The ink's polarity is the side
    of the background that holds more intensity beyond the noise: more robust than
    comparing with mid-grey (a dim photo of white paper is below mid-grey) or with the
    darkest and lightest pixel (a single glint of glare would win).
    """
    background, noise_sigma = _background_surface(values)
    noise_floor = NOISE_FLOOR_SIGMAS * noise_sigma
    deviation = values - background
    light_mass = float(np.clip(deviation - noise_floor, 0.0, None).sum())
    dark_mass = float(np.clip(-deviation - noise_floor, 0.0, None).sum())
    ink = -deviation if dark_mass > light_mass else deviation
    np.clip(ink, 0.0, None, out=ink)
    contrast = float(ink.max())
    minimum_contrast = max(
        MINIMUM_CONTRAST_FRACTION * 255.0, MINIMUM_CONTRAST_NOISE_SIGMAS * noise_sigma
    )
    if contrast < minimum_contrast:
        raise ImageError(
            f"{source_name}: is blank: no digit found (the darkest and lightest marks differ "
            f"from the background by at most {contrast:.0f} of 255 grey levels)"
        )
    floor = max(noise_floor, RELATIVE_NOISE_FLOOR * contrast)
    # Subtracting the floor (rather than zeroing what is below it) keeps the anti-aliased
    # edges continuous: no step at the threshold.
    ink -= np.float32(floor)
    np.clip(ink, 0.0, None, out=ink)
    return ink


def _drop_specks(ink: np.ndarray) -> np.ndarray:
    """Zero the connected blobs of ink that are negligible next to the largest one."""
    labels, count = ndimage.label(ink > 0, structure=np.ones((3, 3), dtype=bool))
    if count <= 1:
        return ink
    masses = ndimage.sum_labels(ink, labels, index=np.arange(1, count + 1))
    keep = np.concatenate([[False], masses >= SPECK_MASS_FRACTION * masses.max()])
    return np.where(keep[labels], ink, np.float32(0.0))


def _crop_to_ink(ink: np.ndarray) -> np.ndarray:
    """The smallest rectangle holding every non-zero pixel (the caller ensures there is one)."""
    rows = np.flatnonzero(ink.any(axis=1))
    columns = np.flatnonzero(ink.any(axis=0))
    return ink[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]


def _stroke_width(mask: np.ndarray) -> float:
    """Estimate the stroke width (pixels) of a binary digit as twice its area over its outline.

    A stroke of width w and length L has area wL and an outline of about 2L pixels. Strokes
    one or two pixels wide are all outline, so the estimate never goes below 2 - enough to
    tell a hairline from a pen stroke once the digit is scaled down.
    """
    area = int(mask.sum())
    if area == 0:
        return 0.0
    interior = ndimage.binary_erosion(mask, border_value=0)
    outline = area - int(interior.sum())
    return 2.0 * area / max(outline, 1)


def _block_maximum(values: np.ndarray, factor: int) -> np.ndarray:
    """Shrink by an integer factor keeping each block's maximum, so hairlines are not lost."""
    if factor <= 1:
        return values
    height, width = values.shape
    padded = np.pad(values, ((0, (-height) % factor), (0, (-width) % factor)))
    blocks = padded.reshape(padded.shape[0] // factor, factor, padded.shape[1] // factor, factor)
    return blocks.max(axis=(1, 3))


def _thicken_thin_strokes(crop: np.ndarray) -> np.ndarray:
    """Return the cropped digit with strokes about `TARGET_STROKE_WIDTH` wide after the fit,
    if they would otherwise be thinner than `MINIMUM_STROKE_WIDTH`; else `crop` unchanged.

    A digit drawn with a thin pen on a big canvas shrinks to faint sub-pixel lines, which an
    MNIST network has never seen. The digit is rebuilt from the distance to its ink, at
    `THICKENING_RESOLUTION` times the final size: pixels within the target radius of the
    original stroke become ink, with a one-pixel soft edge so the downscale stays smooth.
    """
    mask = crop >= 0.4 * float(crop.max())
    longer_side = max(crop.shape)
    fitted_width = _stroke_width(mask) * DIGIT_BOX_SIDE / longer_side
    if fitted_width >= MINIMUM_STROKE_WIDTH:
        return crop
    factor = max(1, longer_side // (DIGIT_BOX_SIDE * THICKENING_RESOLUTION))
    small_mask = _block_maximum(mask, factor)
    pixels_per_output_pixel = max(small_mask.shape) / DIGIT_BOX_SIDE
    current_width = max(1.0, fitted_width * pixels_per_output_pixel)
    radius = max(0.5, (TARGET_STROKE_WIDTH * pixels_per_output_pixel - current_width) / 2.0)
    margin = math.ceil(radius) + 1
    padded_mask = np.pad(small_mask, margin)
    distance_to_ink = ndimage.distance_transform_edt(~padded_mask)
    thick = np.clip(radius + 0.5 - distance_to_ink, 0.0, 1.0).astype(np.float32)
    return _crop_to_ink(thick)


def _fit_into_box(crop: np.ndarray) -> np.ndarray:
    """Resize so the longer side is `DIGIT_BOX_SIDE`, keeping the aspect ratio (anti-aliased).

    Pillow's resampling widens its kernel when shrinking, so every source pixel contributes,
    like MNIST's anti-aliasing. The triangle (bilinear) kernel has no negative lobes to ring;
    on a round trip of 150 MNIST test digits through 200x200 photos it matched the originals
    as well as Lanczos, bicubic, box or Hamming (mean correlation 0.950 against 0.944-0.950).
    """
    height, width = crop.shape
    scale = DIGIT_BOX_SIDE / max(height, width)
    new_width = min(DIGIT_BOX_SIDE, max(1, round(width * scale)))
    new_height = min(DIGIT_BOX_SIDE, max(1, round(height * scale)))
    resized = Image.fromarray(crop.astype(np.float32)).resize(
        (new_width, new_height), Image.Resampling.BILINEAR
    )
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, None)


def _place_by_centre_of_mass(digit: np.ndarray) -> np.ndarray:
    """Put the fitted digit in a 28x28 black field, its centre of mass at (14, 14).

    Like MNIST, the shift is a whole number of pixels (no interpolation blur), and it is
    clamped so that no part of the digit leaves the frame.
    """
    height, width = digit.shape
    centre_row, centre_column = ndimage.center_of_mass(digit)
    top = math.floor(CENTRE_OF_MASS_TARGET - centre_row + 0.5)
    left = math.floor(CENTRE_OF_MASS_TARGET - centre_column + 0.5)
    top = min(max(top, 0), MNIST_SIDE - height)
    left = min(max(left, 0), MNIST_SIDE - width)
    field = np.zeros((MNIST_SIDE, MNIST_SIDE), dtype=np.float32)
    field[top : top + height, left : left + width] = digit
    return field


def _prepare_digit(image: np.ndarray, source_name: str) -> np.ndarray:
    """The pipeline behind `prepare_digit` and `load_digit_image`; errors name `source_name`."""
    values = _crop_to_paper(_reduce_array(_as_grey_levels(image, source_name)))
    ink = _drop_specks(_ink_above_background(values, source_name))
    crop = _crop_to_ink(ink)
    crop = crop / np.float32(crop.max())
    crop = _thicken_thin_strokes(crop)
    field = _place_by_centre_of_mass(_fit_into_box(crop))
    peak = float(field.max())
    if peak <= 0.0:
        raise ImageError(f"{source_name}: is blank: no digit found")
    return np.clip(np.rint(field * (255.0 / peak)), 0, 255).astype(np.uint8)
