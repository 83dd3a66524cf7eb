"""Trusting a dataset: every loader's arrays pass through `checked_raw_data`, which turns
them into uint8 images (N, 28, 28) and uint8 labels 0-9, converting losslessly or refusing
with one line that names the array and says what is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mnist_cli.config import IMAGE_SIDE, NUM_CLASSES, NUM_FEATURES
from mnist_cli.errors import DataError


@dataclass
class RawData:
    """The dataset as stored: images uint8 (N, 28, 28), labels uint8 (N,), already checked.

    `source` says in words where it was loaded from, so a run can record it.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str


def as_pixels(array: np.ndarray, where: str) -> np.ndarray:
    """Images as uint8 (N, 28, 28), converting losslessly or refusing with a reason."""
    array = np.asarray(array)
    if array.ndim == 2 and array.shape[1] == NUM_FEATURES:
        array = array.reshape(len(array), IMAGE_SIDE, IMAGE_SIDE)
    if array.ndim != 3 or array.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise DataError(
            f"{where}: images have shape {array.shape}; expected (N, {IMAGE_SIDE}, {IMAGE_SIDE})"
        )
    if array.dtype == np.uint8:
        return array
    if array.dtype.kind not in "iuf":
        raise DataError(f"{where}: images have dtype {array.dtype}; expected uint8 pixels 0-255")
    if array.size:
        low, high = array.min(), array.max()
        if not (0 <= low and high <= 255):  # also false for NaN
            raise DataError(f"{where}: pixel values span {low}..{high}; expected 0-255 (uint8)")
    pixels = array.astype(np.uint8)
    # Compared with the original instead of np.round(array): no second float-sized copy
    # (OpenML's images are 70000x784 float64, 440 MB).
    if array.dtype.kind == "f" and not np.array_equal(pixels, array):
        hint = " (they look already scaled to [0, 1])" if array.max() <= 1 else ""
        raise DataError(
            f"{where}: pixel values are fractional{hint}; store the raw 0-255 pixels, "
            "preprocessing scales them"
        )
    return pixels


def as_labels(array: np.ndarray, where: str) -> np.ndarray:
    """Labels as uint8 class numbers 0-9, or a one-line reason why not."""
    array = np.asarray(array)
    if array.ndim != 1:
        raise DataError(
            f"{where}: labels have shape {array.shape}; expected one class number 0-9 per "
            "image (not one-hot)"
        )
    if array.dtype.kind not in "iuf":
        raise DataError(f"{where}: labels have dtype {array.dtype}; expected integers 0-9")
    if array.size:
        if array.dtype.kind == "f" and not (
            np.isfinite(array).all() and np.array_equal(array, np.round(array))
        ):
            raise DataError(f"{where}: labels are not whole numbers; expected integers 0-9")
        low, high = array.min(), array.max()
        if low < 0 or high >= NUM_CLASSES:
            raise DataError(
                f"{where}: labels span {low}..{high}; expected class numbers 0-{NUM_CLASSES - 1}"
            )
    return array.astype(np.uint8, copy=False)


def checked_raw_data(arrays: dict[str, tuple[np.ndarray, str]], source: str) -> RawData:
    """Check and normalise the four arrays; `arrays` maps key -> (array, where it came from)."""
    checked: dict[str, np.ndarray] = {}
    for key, (array, where) in arrays.items():
        if key.startswith("x_"):
            checked[key] = as_pixels(array, where)
        else:
            checked[key] = as_labels(array, where)
    for part in ("train", "test"):
        images, labels = checked[f"x_{part}"], checked[f"y_{part}"]
        if len(images) != len(labels):
            raise DataError(
                f"{source}: x_{part} has {len(images)} images but y_{part} has {len(labels)} "
                "labels; they must pair up one to one"
            )
        if len(images) == 0:
            raise DataError(f"{source}: the {part} set is empty")
    return RawData(
        x_train=checked["x_train"],
        y_train=checked["y_train"],
        x_test=checked["x_test"],
        y_test=checked["y_test"],
        source=source,
    )
