"""Preparing a dataset for a run: subset, validation split, then preprocessing.

`prepare` cuts the raw uint8 data the config names into the training, validation and test
sets, and `preprocess` turns uint8 images into the float32 features a Dense network takes,
the same way for training, evaluation and a user's own images. Both keep the uint8 pixels
and the table from a pixel value to its feature, which the fast engines put on the device
instead of the features (a quarter of the memory).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from mnist_cli.config import NUM_CLASSES, Config, DataConfig
from mnist_cli.data.checks import RawData
from mnist_cli.data.sources import load_raw
from mnist_cli.errors import ConfigError


@dataclass
class PreparedData:
    """Features and labels ready for training.

    `pixels_train`, `pixels_val` and `pixels_test` are the uint8 pixels, (N, 784) when
    `data.flatten` is set and (N, 28, 28) otherwise, and `pixel_table` the float32 feature
    of each pixel value 0..255. `x_train`, `x_val` and `x_test` are the float32 features
    (`preprocess`d: `x_train == pixel_table[pixels_train]`, exactly), made the first time
    they are asked for: the fast engines train from the pixels and never need the training
    features, four times their size. Labels are int64 class numbers, not one-hot (the
    model/loss decides on the encoding). The validation arrays come from the training set
    and have 0 rows when `validation_split` is 0. `test_index` is the position of each test
    row in the dataset's full test set (in the pool of training and test digits for
    `split: pooled`), so a misclassified example can be traced back.
    """

    y_train: np.ndarray
    y_val: np.ndarray
    y_test: np.ndarray
    test_index: np.ndarray
    source: str
    pixels_train: np.ndarray
    pixels_val: np.ndarray
    pixels_test: np.ndarray
    pixel_table: np.ndarray
    preprocessing: DataConfig

    @functools.cached_property
    def x_train(self) -> np.ndarray:
        return preprocess(self.pixels_train, self.preprocessing)

    @functools.cached_property
    def x_val(self) -> np.ndarray:
        return preprocess(self.pixels_val, self.preprocessing)

    @functools.cached_property
    def x_test(self) -> np.ndarray:
        return preprocess(self.pixels_test, self.preprocessing)

    @property
    def num_features(self) -> int:
        """Input features per example (784), whether or not the images are flattened."""
        return int(np.prod(self.pixels_train.shape[1:]))


def _binarize_cut(threshold: float) -> int:
    """The darkest uint8 pixel value that binarizes to 1 (pixel / 255 > threshold).

    Decided once over the 256 possible values with the float64 rule itself, so comparing
    integers afterwards gives exactly the documented result, with no float temporaries.
    Always found: 255 / 255 = 1 exceeds every allowed threshold (< 1).
    """
    return int(np.argmax(np.arange(256) / 255.0 > threshold))


def pixel_table(data: DataConfig) -> np.ndarray:
    """The float32 feature of every uint8 pixel value, (256,): what `preprocess` maps each
    pixel to. `scale` divides by 255; `binarize` maps pixel/255 > `binarize_threshold` to
    1.0 and the rest to 0.0 (0/1 whether or not `scale` is set)."""
    values = np.arange(256, dtype=np.uint8)
    if data.binarize:
        return (values >= _binarize_cut(data.binarize_threshold)).astype(np.float32)
    table = values.astype(np.float32)
    if data.scale:
        table /= np.float32(255)
    return table


def apply_pixel_table(table: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """`table[pixels]` for uint8 pixels, in the table's dtype. The tables `pixel_table`
    makes follow a rule (the pixel itself, the pixel / 255, a 0/1 step for binarized
    pixels), computed directly here with the same numbers: a lookup converts every pixel to
    an 8-byte index first, ten times slower on a training set."""
    values = np.arange(256)
    result = np.empty(pixels.shape, dtype=table.dtype)
    cut = int(np.argmax(table))
    if np.array_equal(table, values):
        result[...] = pixels
    elif table.dtype == np.float32 and np.array_equal(table, pixel_table(DataConfig())):
        np.divide(pixels, np.float32(255), out=result)
    elif np.array_equal(table, values >= cut):
        np.greater_equal(pixels, cut, out=result)
    else:
        np.take(table, pixels, out=result)
    return result


def _flattened(images: np.ndarray, data: DataConfig) -> np.ndarray:
    """(N, 784) when `data.flatten` is set (a view), else `images` as they are. The feature
    count is spelled out: -1 cannot be inferred for zero images (an empty validation set)."""
    if data.flatten and images.ndim > 2:
        return images.reshape(len(images), math.prod(images.shape[1:]))
    return images


def preprocess(images: np.ndarray, data: DataConfig) -> np.ndarray:
    """uint8 images (N, 28, 28) -> float32 features, the same way for training and inference.

    Each pixel becomes its `pixel_table` entry; `flatten` reshapes to (N, 784). The float32
    result is the only allocation (a 60000x784 training set is 188 MB of float32). Images
    that are not uint8 (a library caller's floats 0..255) follow the same rules
    arithmetically.
    """
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return _flattened(apply_pixel_table(pixel_table(data), images), data)
    features = np.empty(images.shape, dtype=np.float32)
    if data.binarize:
        np.greater(images / 255.0, data.binarize_threshold, out=features)
    else:
        features[...] = images
        if data.scale:
            features /= np.float32(255)
    return _flattened(features, data)


def validation_count(split: float, train_size: int) -> int:
    """How many training samples the validation split takes (a fraction, or a count)."""
    if split >= 1.0:
        return int(split)
    return int(math.floor(split * train_size))


def _stratify_labels(labels: np.ndarray, first_size: int, second_size: int) -> np.ndarray | None:
    """`labels` when a stratified split is possible, else None (a plain random split).

    scikit-learn's stratified split needs every class at least twice and both parts at
    least as large as the number of classes.
    """
    counts = np.bincount(labels, minlength=NUM_CLASSES)
    present = counts[counts > 0]
    if present.min() >= 2 and min(first_size, second_size) >= len(present):
        return labels
    return None


def _split_indices(labels: np.ndarray, second_size: int, seed: int) -> tuple[np.ndarray, ...]:
    """Seeded, stratified when possible: (indices kept, `second_size` indices taken), each
    sorted so the rows keep the dataset's order."""
    from sklearn.model_selection import train_test_split

    first_size = len(labels) - second_size
    first, second = train_test_split(
        np.arange(len(labels)),
        test_size=second_size,
        random_state=seed,
        stratify=_stratify_labels(labels, first_size, second_size),
    )
    return np.sort(first), np.sort(second)


def _pooled_split(raw: RawData, test_fraction: float, seed: int) -> tuple[np.ndarray, ...]:
    """The training and test sets pooled in that order (MNIST's 70000 digits are then
    OpenML's mnist_784 rows), split at random as the Keras tutorial does it: scikit-learn's
    `train_test_split(test_size=test_fraction, random_state=seed)`, not stratified. The
    test index is each test digit's position in the pool."""
    from sklearn.model_selection import train_test_split

    images = np.concatenate([raw.x_train, raw.x_test])
    labels = np.concatenate([raw.y_train, raw.y_test])
    train_rows, test_rows = train_test_split(np.arange(len(labels)), test_size=test_fraction,
                                             random_state=seed)
    return (images[train_rows], labels[train_rows], images[test_rows], labels[test_rows],
            test_rows.astype(np.int64))


def prepare(config: Config) -> PreparedData:
    """Load, cut and preprocess the data a config asks for.

    Order matters: `split: pooled` draws the test set from the pooled digits first; then
    the training subset is drawn (seeded, stratified when possible), the test subset is the
    first N test images (so `test_index` keeps its meaning), the validation set is taken
    from the training data only (never the test set), and only then are images
    preprocessed (when first asked for), so nothing is converted that is thrown away.
    """
    data = config.data
    seed = config.seed
    raw = load_raw(data)
    train_images, train_labels = raw.x_train, raw.y_train
    test_images, test_labels = raw.x_test, raw.y_test
    test_index = np.arange(len(test_labels), dtype=np.int64)
    if data.split == "pooled":
        train_images, train_labels, test_images, test_labels, test_index = _pooled_split(
            raw, data.test_fraction, seed)
    subset = data.subset

    if subset is not None and subset.train is not None:
        if subset.train > len(train_labels):
            raise ConfigError(
                f"data.subset.train: asks for {subset.train} training samples but {raw.source} "
                f"has {len(train_labels)}"
            )
        if subset.train < len(train_labels):
            _, keep = _split_indices(train_labels, subset.train, seed)
            train_images, train_labels = train_images[keep], train_labels[keep]

    if subset is not None and subset.test is not None:
        if subset.test > len(test_labels):
            raise ConfigError(
                f"data.subset.test: asks for {subset.test} test samples but {raw.source} "
                f"has {len(test_labels)}"
            )
        test_images, test_labels = test_images[: subset.test], test_labels[: subset.test]
        test_index = test_index[: subset.test]

    validation_size = validation_count(data.validation_split, len(train_labels))
    if validation_size >= len(train_labels):
        raise ConfigError(
            f"data.validation_split: {data.validation_split:g} takes {validation_size} of the "
            f"{len(train_labels)} training samples, leaving none to train on; use a smaller "
            "fraction or count"
        )
    if validation_size > 0:
        fit_rows, validation_rows = _split_indices(train_labels, validation_size, seed)
        validation_images, validation_labels = (
            train_images[validation_rows],
            train_labels[validation_rows],
        )
        train_images, train_labels = train_images[fit_rows], train_labels[fit_rows]
    else:
        validation_images, validation_labels = train_images[:0], train_labels[:0]

    return PreparedData(
        y_train=train_labels.astype(np.int64),
        y_val=validation_labels.astype(np.int64),
        y_test=test_labels.astype(np.int64),
        test_index=test_index,
        source=raw.source,
        pixels_train=_flattened(train_images, data),
        pixels_val=_flattened(validation_images, data),
        pixels_test=_flattened(test_images, data),
        pixel_table=pixel_table(data),
        preprocessing=data,
    )


def check_batch_size(config: Config, data: PreparedData) -> None:
    """Refuse a batch larger than the training set that is left after subset and split.

    Keras would silently train on one short batch per epoch, which is never what the
    config meant; training (not `prepare`, which evaluation shares) calls this.
    """
    batch_size = config.train.batch_size
    available = len(data.y_train)
    if batch_size > available:
        raise ConfigError(
            f"train.batch_size: {batch_size} is larger than the {available} training samples "
            f"left after the subset and the validation split; use --batch-size {available} or "
            "less (or more data)"
        )
