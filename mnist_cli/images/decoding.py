"""Reading a user's image file safely, and writing a prepared digit back as a PNG.

Pillow decodes the file; everything that can go wrong (missing, not an image, truncated,
a decompression bomb, an odd mode such as 16-bit grey or a palette with transparency)
becomes one `ImageError` naming the file. The result is grey levels 0..255 with the EXIF
orientation applied and any transparency composited away: `mnist_style` takes it from there.
"""

from __future__ import annotations

import io
import math
import struct
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from mnist_cli.atomic_files import save_with
from mnist_cli.config import IMAGE_SIDE
from mnist_cli.errors import ImageError, describe_error

WORKING_SIDE = 2048
"""Larger images are reduced (box average) to at most this side before the pipeline runs:
the digit ends up 20 pixels tall anyway, and a 48-megapixel photo would otherwise cost
gigabytes of float arrays. A digit must span at least 1% of the image to survive this."""

_SUPPORTED_FORMATS_HINT = "PNG, JPEG, BMP, GIF, TIFF, WebP, ..."


# Pillow's format plugins raise many exception types on malformed files (fuzzing has found
# struct.error, IndexError, EOFError, SyntaxError, ... besides OSError); all mean "corrupt".
_DECODING_ERRORS = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    struct.error,
    IndexError,
    KeyError,
    TypeError,
    ZeroDivisionError,
    MemoryError,
)


_DEFAULT_PIXEL_LIMIT = 89_478_485  # Pillow's own default: 1024 * 1024 * 1024 // 4 // 3


def _pixel_limit() -> int:
    """Pillow's decompression-bomb limit (about 89 megapixels), or that default if disabled."""
    return Image.MAX_IMAGE_PIXELS or _DEFAULT_PIXEL_LIMIT


def _too_large_message(path: Path | str, size_text: str) -> str:
    """One message for every way an image can exceed the pixel limit."""
    return (
        f"{path}: is too large to decode safely ({size_text}, limit {_pixel_limit():,} pixels, "
        "Pillow's decompression-bomb guard): shrink or crop it first"
    )


def read_greyscale(path: Path) -> np.ndarray:
    """Decode `path` into a float32 array of grey levels 0..255 (alpha composited away).

    Every failure of the file or of Pillow becomes an `ImageError` naming the file, so that
    the CLI prints one line and never a traceback.
    """
    if not path.exists():
        raise ImageError(f"{path}: image file not found")
    if path.is_dir():
        raise ImageError(f"{path}: is a folder, not an image file")
    return _decode_greyscale(path, str(path))


def decode_greyscale_bytes(data: bytes, source_name: str) -> np.ndarray:
    """`read_greyscale` for an image held in memory (an upload to `mnist serve`): the same
    decoding and the same decompression-bomb guard, and nothing is written to disk. Errors
    name `source_name`."""
    if not data:
        raise ImageError(f"{source_name}: is empty, not an image")
    return _decode_greyscale(io.BytesIO(data), source_name)


def _decode_greyscale(source: Path | BinaryIO, source_name: str) -> np.ndarray:
    """Open and decode `source` (a path or a binary stream), errors naming `source_name`."""
    try:
        with warnings.catch_warnings():
            # Between one and two times its limit Pillow only warns (on stderr, mid-output):
            # make that an error like the rest, with the same message.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(source)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(_too_large_message(source_name, "more pixels than the limit")) from None
    except UnidentifiedImageError:
        raise ImageError(
            f"{source_name}: is not an image Pillow can read ({_SUPPORTED_FORMATS_HINT})"
        ) from None
    except PermissionError:
        raise ImageError(f"{source_name}: cannot read the file (permission denied)") from None
    except _DECODING_ERRORS as error:
        reason = describe_error(error, with_type=False)
        raise ImageError(f"{source_name}: cannot open the image ({reason})") from None
    try:
        with image:
            width, height = image.size
            if width * height > _pixel_limit():
                # Also when Image.MAX_IMAGE_PIXELS was set to None somewhere: never decode
                # a decompression bomb, whatever the global setting.
                raise ImageError(_too_large_message(source_name, f"{width}x{height} pixels"))
            # JPEG can decode at 1/2, 1/4 or 1/8 scale for almost nothing: use it for photos.
            image.draft("L", (WORKING_SIDE, WORKING_SIDE))
            image.load()
            image = ImageOps.exif_transpose(image)
            image = _normalise_mode(image)
            image = _reduce_to_working_size(image)
            return _greyscale_array(image)
    except ImageError:
        raise
    except _DECODING_ERRORS as error:
        raise ImageError(
            f"{source_name}: the image is truncated or corrupt "
            f"({describe_error(error, with_type=False)})"
        ) from None


def _normalise_mode(image: Image.Image) -> Image.Image:
    """Bring Pillow's many modes down to L, LA, RGB, RGBA or F (grey levels 0..255).

    16-bit and 32-bit images are rescaled rather than clipped: Pillow's own conversion of
    16-bit grey to 8-bit clips every level above 255 to white, which would erase the digit.
    """
    mode = image.mode
    if "transparency" in image.info and mode in ("1", "L", "P", "RGB"):
        return image.convert("RGBA")
    if mode in ("L", "LA", "RGB", "RGBA"):
        return image
    if mode in ("PA", "RGBa", "La"):
        return image.convert("RGBA")
    if mode.startswith("I") or mode == "F":
        values = np.asarray(image, dtype=np.float32)
        maximum = float(values.max()) if values.size else 0.0
        if mode == "F" and maximum <= 1.0:
            values = values * 255.0
        elif maximum > 255.0:
            full_scale = 65535.0 if maximum <= 65535.0 else maximum
            values = values * (255.0 / full_scale)
        return Image.fromarray(np.clip(values, 0.0, 255.0).astype(np.float32))
    # 1, P, CMYK, YCbCr, RGBX, HSV, ...: grey levels are all the pipeline needs.
    return image.convert("L")


def _reduce_to_working_size(image: Image.Image) -> Image.Image:
    """Box-average an image whose longer side exceeds `WORKING_SIDE` down to at most that."""
    factor = math.ceil(max(image.size) / WORKING_SIDE)
    return image.reduce(factor) if factor > 1 else image


def _greyscale_array(image: Image.Image) -> np.ndarray:
    """Grey levels 0..255 as float32; a transparent background becomes an opaque one."""
    if image.mode in ("LA", "RGBA"):
        alpha = np.asarray(image.getchannel("A"), dtype=np.float32) / 255.0
        grey = np.asarray(image.convert("L"), dtype=np.float32)
        return _composite_transparency(grey, alpha)
    if image.mode != "F":
        image = image.convert("L")
    return np.asarray(image, dtype=np.float32)


def _composite_transparency(grey: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Flatten an image with alpha onto the background the transparent part stands for.

    Two kinds of transparent images are common. A layer of ink only (a PNG exported from a
    drawing app): its opaque pixels all share one colour, usually black, and the transparent
    pixels often hold black too, so simply dropping alpha would give black on black. It is put
    on the contrasting colour. A photo or scan with transparent margins: its opaque part holds
    both paper and ink, so the margins are filled with the paper's colour (the median of the
    opaque pixels) and the digit keeps its contrast.
    """
    if alpha.min() >= 1.0:
        return grey
    opaque = alpha >= 0.5
    if not opaque.any():
        return np.zeros_like(grey)  # fully transparent: blank, reported as such later
    opaque_levels = grey[opaque]
    low, middle, high = np.percentile(opaque_levels, [1, 50, 99])
    if high - low < 64.0:
        background = 255.0 if middle < 128.0 else 0.0
    else:
        background = float(middle)
    return grey * alpha + background * (1.0 - alpha)


def save_digit_png(image28: np.ndarray, path: str | Path) -> None:
    """Write a prepared 28x28 digit as an 8-bit greyscale PNG (for `--save-preprocessed`).

    The file is written atomically (`atomic_files.save_with`), so a crash or a full disk never
    leaves a half-written PNG where the user looks for it.
    Raises `ImageError` when the array is not a 28x28 image or the file cannot be written.
    """
    path = Path(path)
    array = np.asarray(image28)
    if array.shape != (IMAGE_SIDE, IMAGE_SIDE):
        raise ImageError(f"{path}: expected a 28x28 digit to save, got shape {array.shape}")
    if array.dtype != np.uint8:
        if not np.issubdtype(array.dtype, np.number) or not np.all(np.isfinite(array)):
            raise ImageError(f"{path}: the digit to save must hold finite grey levels")
        array = np.clip(np.rint(array), 0, 255).astype(np.uint8)
    try:
        save_with(path, lambda temporary: Image.fromarray(array).save(temporary, format="PNG"))
    except OSError as error:
        reason = error.strerror or str(error)
        raise ImageError(f"{path}: cannot write the preprocessed image ({reason})") from None
