"""Datasets: finding them, reading them, trusting them, and turning them into features.

Data flows one way: `load_raw` finds and reads the dataset as stored (uint8 images and
labels, checked), `prepare` cuts it to the requested subset and validation split, and
`preprocess` turns uint8 images into the float32 features a Dense network takes.

Where the data comes from (`dataset: mnist` or `fashion_mnist`), first match wins:

1. `data.path` in the config: a `.npz` in the Keras layout or a folder of IDX files;
2. the environment variable `MNIST_DATA` (`FASHION_MNIST_DATA`), same forms;
3. the Keras cache (`$KERAS_HOME/datasets/...`, by default under `~/.keras`), which is
   read directly, so a cached copy works offline without importing Keras at all;
4. `keras.datasets.<name>.load_data()`, the real download, for users who are online.

An explicit path or environment variable that points at nothing is an error rather than a
reason to fall through: the user asked for that copy, and silently downloading another
would hide the typo. Every problem with the data is a `DataError` with one line that names
the file and says what to do; numpy, zipfile and gzip exceptions never reach the user.

Importing this module imports neither Keras/TensorFlow nor scikit-learn: the CLI's
`--help` and config checks stay instant. They are imported inside the functions that use
them.
"""

from __future__ import annotations

import gzip
import math
import os
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from mnist_cli.config import (
    IMAGE_SIDE,
    NUM_CLASSES,
    NUM_FEATURES,
    Config,
    DataConfig,
    validation_count,
)
from mnist_cli.errors import ConfigError, DataError, describe_error

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")

# The IDX file of each array: (name stem, number of dimensions). Both spellings seen in the
# wild are accepted: `train-images-idx3-ubyte` (the original) and `train-images.idx3-ubyte`
# (what several unpackers and mirrors produce), each gzipped or not.
IDX_FILES = {
    "x_train": ("train-images", 3),
    "y_train": ("train-labels", 1),
    "x_test": ("t10k-images", 3),
    "y_test": ("t10k-labels", 1),
}

# IDX type codes (third byte of the magic number). MNIST only uses 0x08, but reading the
# whole table costs nothing and lets `write_idx`/`read_idx` round-trip other arrays too.
IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

# The official MNIST split: OpenML's mnist_784 holds the 60000 training images first and
# the 10000 test images last.
OPENML_TEST_SIZE = 10000
OPENML_RANDOM_TEST_FRACTION = 0.25


@dataclass(frozen=True)
class _DatasetLocations:
    """Where one Keras dataset may already be on disk, and how the user points at a copy."""

    environment_variable: str
    keras_cache_relative: str  # relative to the Keras home folder
    keras_module: str  # keras.datasets.<keras_module>.load_data()
    example_path: str  # used in messages only


_DATASET_LOCATIONS = {
    "mnist": _DatasetLocations(
        environment_variable="MNIST_DATA",
        keras_cache_relative=os.path.join("datasets", "mnist.npz"),
        keras_module="mnist",
        example_path="/path/to/mnist.npz",
    ),
    "fashion_mnist": _DatasetLocations(
        environment_variable="FASHION_MNIST_DATA",
        keras_cache_relative=os.path.join("datasets", "fashion-mnist"),
        keras_module="fashion_mnist",
        example_path="/path/to/fashion-mnist",
    ),
}


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


@dataclass
class PreparedData:
    """Features and labels ready for training.

    Images are float32, (N, 784) when `data.flatten` is set and (N, 28, 28) otherwise;
    labels are int64 class numbers, not one-hot (the model/loss decides on the encoding).
    The validation arrays come from the training set and have 0 rows when
    `validation_split` is 0. `test_index` is the position of each test row in the
    dataset's full test set, so a misclassified example can be traced back.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    test_index: np.ndarray
    source: str

    @property
    def num_features(self) -> int:
        """Input features per example (784), whether or not the images are flattened."""
        return int(np.prod(self.x_train.shape[1:]))


@dataclass(frozen=True)
class ResolvedPath:
    """A local copy of a dataset and which setting pointed at it."""

    path: Path
    origin: str  # "data.path", the environment variable's name, or "keras cache"

    def describe(self) -> str:
        if self.origin == "data.path":
            return f"data.path {self.path}"
        if self.origin == "keras cache":
            return f"keras cache {self.path}"
        return f"{self.origin}={self.path}"


# ---------------------------------------------------------------------------------------
# IDX files
# ---------------------------------------------------------------------------------------


def _is_gzip_name(path: Path) -> bool:
    return path.name.endswith(".gz")


def _read_into(stream: BinaryIO, target: memoryview) -> int:
    """Fill `target` from `stream`; return how many bytes arrived (short only at EOF)."""
    filled = 0
    while filled < len(target):
        count = stream.readinto(target[filled:])
        if not count:
            break
        filled += count
    return filled


def _describe_shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(size) for size in shape)


def read_idx(path: str | os.PathLike, expected_ndim: int | None = None) -> np.ndarray:
    """Read one IDX file (gzipped when its name ends in `.gz`) into a native-endian array.

    The header is checked before any data is trusted: two zero bytes, a known type code
    (0x08 = uint8 for MNIST), the number of dimensions (3 for images, magic 0x00000803; 1
    for labels, 0x00000801; checked against `expected_ndim` when given), then one
    big-endian uint32 per dimension. The data must be exactly as long as those sizes
    promise: a short file is truncated, a longer one is not what the header says it is.
    The data is read straight into the final array, so a 47 MB image file is not held
    twice.
    """
    path = Path(path)
    opener = gzip.open if _is_gzip_name(path) else open
    try:
        with opener(path, "rb") as stream:
            header = stream.read(4)
            if len(header) < 4:
                raise DataError(
                    f"{path}: only {len(header)} bytes, too short for an IDX file "
                    "(the file is empty or truncated)"
                )
            magic = int.from_bytes(header, "big")
            type_code, ndim = header[2], header[3]
            if header[:2] != b"\x00\x00" or type_code not in IDX_DTYPES or ndim == 0:
                raise DataError(
                    f"{path}: not an IDX file: wrong magic number 0x{magic:08X} (MNIST images "
                    "start with 0x00000803, labels with 0x00000801)"
                )
            if expected_ndim is not None and ndim != expected_ndim:
                kinds = {3: "images", 1: "labels"}
                raise DataError(
                    f"{path}: magic number 0x{magic:08X} says {ndim}-dimensional data but "
                    f"{kinds.get(expected_ndim, 'this file')} need {expected_ndim} "
                    f"(magic 0x{0x800 + expected_ndim:08X}): is this the right file?"
                )
            size_bytes = stream.read(4 * ndim)
            if len(size_bytes) < 4 * ndim:
                raise DataError(f"{path}: the IDX header is truncated (the file is cut short)")
            shape = tuple(int(size) for size in np.frombuffer(size_bytes, dtype=">u4"))
            dtype = IDX_DTYPES[type_code]
            if not _is_gzip_name(path):
                # A plain file's size is known up front: check before allocating anything.
                expected_bytes = math.prod(shape) * dtype.itemsize
                available = path.stat().st_size - 4 - 4 * ndim
                if available < expected_bytes:
                    raise DataError(
                        f"{path}: truncated: the header promises {_describe_shape(shape)} "
                        f"values ({expected_bytes} bytes) but only {available} bytes follow"
                    )
            try:
                array = np.empty(shape, dtype=dtype)
            except (MemoryError, ValueError):
                raise DataError(
                    f"{path}: the header claims an implausible size {_describe_shape(shape)}; "
                    "the file is corrupt"
                ) from None
            target = memoryview(array.reshape(-1).view(np.uint8))
            filled = _read_into(stream, target)
            if filled < len(target):
                raise DataError(
                    f"{path}: truncated: the header promises {_describe_shape(shape)} values "
                    f"({len(target)} bytes) but only {filled} bytes follow"
                )
            if stream.read(1):
                raise DataError(
                    f"{path}: more data than the header's {_describe_shape(shape)} values: "
                    "not a valid IDX file"
                )
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, not an IDX file") from None
    except (EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise DataError(
            f"{path}: truncated or corrupt gzip file ({describe_error(error)}); "
            "download or unpack it again"
        ) from None
    except OSError as error:
        raise DataError(f"{path}: cannot read the IDX file ({describe_error(error)})") from None
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("="))
    return array


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write `array` as an IDX file, gzipped when `path` ends in `.gz`.

    The inverse of `read_idx`: tests use it to make small IDX datasets, and users can use it
    to turn their own arrays into files any MNIST reader understands.
    """
    path = Path(path)
    array = np.asarray(array)
    big_endian_dtype = array.dtype.newbyteorder(">")
    type_code = next(
        (code for code, dtype in IDX_DTYPES.items() if dtype == big_endian_dtype), None
    )
    if type_code is None:
        raise DataError(
            f"{path}: IDX cannot store dtype {array.dtype}; use uint8, int8, int16, int32, "
            "float32 or float64"
        )
    if array.ndim == 0 or array.ndim > 255 or any(size >= 2**32 for size in array.shape):
        raise DataError(f"{path}: IDX cannot store an array of shape {array.shape}")
    big_endian = np.ascontiguousarray(array, dtype=IDX_DTYPES[type_code])
    header = bytes([0, 0, type_code, array.ndim]) + np.asarray(
        array.shape, dtype=">u4"
    ).tobytes()
    try:
        with (
            gzip.open(path, "wb", compresslevel=6) if _is_gzip_name(path) else open(path, "wb")
        ) as stream:
            stream.write(header)
            stream.write(big_endian.reshape(-1).view(np.uint8))
    except OSError as error:
        raise DataError(f"{path}: cannot write the IDX file ({describe_error(error)})") from None


def _find_idx_file(folder: Path, stem: str, ndim: int) -> Path | None:
    for name in (f"{stem}-idx{ndim}-ubyte", f"{stem}.idx{ndim}-ubyte"):
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def _missing_idx_files(folder: Path) -> list[str]:
    return [
        f"{stem}-idx{ndim}-ubyte[.gz]"
        for stem, ndim in IDX_FILES.values()
        if _find_idx_file(folder, stem, ndim) is None
    ]


def _load_idx_folder(folder: Path, source: str) -> RawData:
    """The four MNIST IDX files of one folder (the layout of the original distribution)."""
    missing = _missing_idx_files(folder)
    if missing:
        raise DataError(
            f"{folder}: missing {', '.join(missing)}; a data folder needs the four MNIST IDX "
            "files (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
            "t10k-labels-idx1-ubyte, gzipped or not)"
        )
    arrays = {}
    for key, (stem, ndim) in IDX_FILES.items():
        file_path = _find_idx_file(folder, stem, ndim)
        arrays[key] = (read_idx(file_path, expected_ndim=ndim), str(file_path))
    return _checked(arrays, source)


# ---------------------------------------------------------------------------------------
# .npz files
# ---------------------------------------------------------------------------------------


def _load_npz(path: Path, source: str) -> RawData:
    """A `.npz` in the layout `keras.datasets.mnist.load_data()` caches."""
    unreadable = (
        f"{path}: not a readable .npz archive (truncated, corrupt or another format); "
        "expected a .npz with x_train, y_train, x_test, y_test, or a folder of IDX files"
    )
    if "idx" in path.name and not zipfile.is_zipfile(path):
        raise DataError(
            f"{path}: is a single IDX file; point at the folder that holds all four IDX files"
        )
    try:
        if not zipfile.is_zipfile(path):
            raise DataError(unreadable)
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in NPZ_KEYS if key not in archive.files]
            if missing:
                found = ", ".join(archive.files) or "none"
                raise DataError(
                    f"{path}: the .npz has no {', '.join(missing)} (keys found: {found}); "
                    "expected the Keras layout x_train, y_train, x_test, y_test"
                )
            arrays = {key: (archive[key], f"{path} [{key}]") for key in NPZ_KEYS}
    except DataError:
        raise
    except (zipfile.BadZipFile, EOFError, ValueError, OSError, zlib.error, KeyError) as error:
        raise DataError(f"{unreadable} ({describe_error(error)})") from None
    return _checked(arrays, source)


def _load_local(resolved: ResolvedPath) -> RawData:
    path = resolved.path
    if path.is_dir():
        return _load_idx_folder(path, resolved.describe())
    return _load_npz(path, resolved.describe())


# ---------------------------------------------------------------------------------------
# Checks shared by every loader
# ---------------------------------------------------------------------------------------


def _as_pixels(array: np.ndarray, where: str) -> np.ndarray:
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


def _as_labels(array: np.ndarray, where: str) -> np.ndarray:
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


def _checked(arrays: dict[str, tuple[np.ndarray, str]], source: str) -> RawData:
    """Check and normalise the four arrays; `arrays` maps key -> (array, where it came from)."""
    checked: dict[str, np.ndarray] = {}
    for key, (array, where) in arrays.items():
        if key.startswith("x_"):
            checked[key] = _as_pixels(array, where)
        else:
            checked[key] = _as_labels(array, where)
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


# ---------------------------------------------------------------------------------------
# Resolution: explicit path, environment variable, Keras cache, download
# ---------------------------------------------------------------------------------------


def keras_cache_candidates(dataset: str = "mnist") -> list[Path]:
    """Where Keras would have cached `dataset`, most likely first.

    Mirrors Keras: `$KERAS_HOME` when set, else `~/.keras`; and Keras falls back to the
    temporary folder's `.keras` when that home is not writable, so it is looked at then.
    """
    relative = _DATASET_LOCATIONS[dataset].keras_cache_relative
    temporary_home = Path(tempfile.gettempdir()) / ".keras"
    if os.environ.get("KERAS_HOME"):
        keras_home = Path(os.environ["KERAS_HOME"]).expanduser()
    elif os.access(Path.home(), os.W_OK):
        keras_home = Path.home() / ".keras"
    else:
        keras_home = temporary_home
    candidates = [keras_home / relative]
    if keras_home != temporary_home and not os.access(keras_home, os.W_OK):
        candidates.append(temporary_home / relative)
    return candidates


def _cache_is_complete(path: Path, dataset: str) -> bool:
    """A cache entry counts only when whole: a half-finished download falls through to Keras,
    which completes it."""
    if dataset == "fashion_mnist":
        return path.is_dir() and not _missing_idx_files(path)
    return path.is_file()


def _explicit_path(text: str, setting: str) -> ResolvedPath:
    path = Path(text).expanduser()
    if not path.exists():
        if setting == "data.path":
            raise DataError(
                f"data.path: {text} does not exist (relative paths are relative to the "
                f"current folder, {Path.cwd()}); give a .npz in the Keras layout or a folder "
                "of IDX files"
            )
        raise DataError(
            f"{setting}={text}: no such file or folder; point {setting} at a .npz in the Keras "
            f"layout or a folder of IDX files, or unset it"
        )
    return ResolvedPath(path=path.absolute(), origin=setting)


def resolve_mnist_path(explicit: str | None, dataset: str = "mnist") -> ResolvedPath | None:
    """The local copy of `dataset` to use, or None when only the download is left.

    Order: `explicit` (the config's `data.path`), the environment variable
    (`MNIST_DATA` / `FASHION_MNIST_DATA`), the Keras cache. An explicit path or variable
    that points at nothing raises `DataError` instead of falling through.
    """
    if explicit:
        return _explicit_path(explicit, "data.path")
    locations = _DATASET_LOCATIONS.get(dataset)
    if locations is None:
        return None
    from_environment = os.environ.get(locations.environment_variable)
    if from_environment:
        return _explicit_path(from_environment, locations.environment_variable)
    for candidate in keras_cache_candidates(dataset):
        if _cache_is_complete(candidate, dataset):
            return ResolvedPath(path=candidate.absolute(), origin="keras cache")
    return None


def fetch_with_keras(dataset: str) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """`keras.datasets.<dataset>.load_data()`: the network step, kept apart so tests can
    replace it. Keras is imported here, never at module import."""
    import keras

    return getattr(keras.datasets, _DATASET_LOCATIONS[dataset].keras_module).load_data()


def _download_keras_dataset(dataset: str) -> RawData:
    locations = _DATASET_LOCATIONS[dataset]
    try:
        (x_train, y_train), (x_test, y_test) = fetch_with_keras(dataset)
    except Exception as error:  # Keras reports network failures as a bare `Exception`
        cache = keras_cache_candidates(dataset)[0]
        raise DataError(
            f"{dataset}: no local copy found (data.path and {locations.environment_variable} "
            f"unset, nothing at {cache}) and the download failed ({describe_error(error)}); "
            f"point at a local copy: data.path in the config, "
            f"--set data.path={locations.example_path}, or "
            f"{locations.environment_variable}={locations.example_path} (a .npz in the "
            "Keras layout or a folder of IDX files)"
        ) from None
    source = f"keras download {keras_cache_candidates(dataset)[0]}"
    return _checked(
        {
            "x_train": (x_train, source),
            "y_train": (y_train, source),
            "x_test": (x_test, source),
            "y_test": (y_test, source),
        },
        source,
    )


# ---------------------------------------------------------------------------------------
# OpenML
# ---------------------------------------------------------------------------------------


def fetch_openml_mnist() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's `fetch_openml('mnist_784')`: 70000 rows of 784 pixels and string
    labels. The network step, kept apart so tests can replace it; scikit-learn caches the
    download under `~/scikit_learn_data`, so it works offline once fetched."""
    from sklearn.datasets import fetch_openml

    bunch = fetch_openml("mnist_784", version=1, as_frame=False)
    return bunch.data, bunch.target


def _split_openml(
    images: np.ndarray, labels: np.ndarray, split: str, seed: int, source: str
) -> RawData:
    """The official split (last 10000 rows are the test set), or the tutorial's seeded
    random 75/25 split (no stratification, the tutorial's exact call) of all rows."""
    where = f"{source} ({split} split)"
    if split == "official":
        if len(labels) <= OPENML_TEST_SIZE:
            raise DataError(
                f"{source}: {len(labels)} rows, too few for the official split (the last "
                f"{OPENML_TEST_SIZE} rows are the test set)"
            )
        cut = len(labels) - OPENML_TEST_SIZE
        train_rows, test_rows = slice(None, cut), slice(cut, None)
    else:
        from sklearn.model_selection import train_test_split

        train_rows, test_rows = train_test_split(
            np.arange(len(labels)),
            test_size=OPENML_RANDOM_TEST_FRACTION,
            random_state=seed,
        )
    return _checked(
        {
            "x_train": (images[train_rows], where),
            "y_train": (labels[train_rows], where),
            "x_test": (images[test_rows], where),
            "y_test": (labels[test_rows], where),
        },
        where,
    )


def _load_openml(data: DataConfig, seed: int) -> RawData:
    if data.path:
        # A local copy wins; its train and test sets are pooled in order (the same 70000
        # rows as OpenML's) so `openml_split: random` means the same thing either way.
        local = _load_local(_explicit_path(data.path, "data.path"))
        if data.openml_split == "official":
            return local
        images = np.concatenate([local.x_train, local.x_test])
        labels = np.concatenate([local.y_train, local.y_test])
        return _split_openml(images, labels, data.openml_split, seed, local.source)
    try:
        features, targets = fetch_openml_mnist()
    except Exception as error:  # network, HTTP and OpenML errors share no base class
        raise DataError(
            f"openml: cannot fetch mnist_784 ({describe_error(error)}); connect to the "
            "internet once (scikit-learn caches it), or use a local copy: "
            "--set data.path=/path/to/mnist.npz or dataset: mnist with "
            "MNIST_DATA=/path/to/mnist.npz"
        ) from None
    source = "openml mnist_784"
    try:
        labels = np.asarray(targets).astype(np.int64)
    except (TypeError, ValueError):
        raise DataError(f"{source}: labels are not class numbers 0-9") from None
    images = _as_pixels(np.asarray(features), source)
    return _split_openml(images, labels, data.openml_split, seed, source)


# ---------------------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------------------


def load_raw(data: DataConfig, seed: int) -> RawData:
    """The dataset the config names, as stored (uint8), checked, with where it came from.

    `seed` matters only for `openml_split: random`.
    """
    if data.dataset == "openml":
        return _load_openml(data, seed)
    resolved = resolve_mnist_path(data.path, data.dataset)
    if resolved is None:
        return _download_keras_dataset(data.dataset)
    return _load_local(resolved)


def _binarize_cut(threshold: float) -> int:
    """The darkest uint8 pixel value that binarizes to 1 (pixel / 255 > threshold).

    Decided once over the 256 possible values with the float64 rule itself, so comparing
    integers afterwards gives exactly the documented result, with no float temporaries.
    Always found: 255 / 255 = 1 exceeds every allowed threshold (< 1).
    """
    return int(np.argmax(np.arange(256) / 255.0 > threshold))


def preprocess(images: np.ndarray, data: DataConfig) -> np.ndarray:
    """uint8 images (N, 28, 28) -> float32 features, the same way for training and inference.

    `scale` divides by 255; `binarize` maps pixel/255 > `binarize_threshold` to 1.0 and the
    rest to 0.0 (0/1 whether or not `scale` is set); `flatten` reshapes to (N, 784), a view.
    The float32 result is the only allocation: every step writes into it in place (a
    60000x784 training set is 188 MB of float32).
    """
    images = np.asarray(images)
    features = np.empty(images.shape, dtype=np.float32)
    if data.binarize:
        if images.dtype == np.uint8:
            np.greater_equal(images, _binarize_cut(data.binarize_threshold), out=features)
        else:
            np.greater(images / 255.0, data.binarize_threshold, out=features)
    else:
        features[...] = images
        if data.scale:
            features /= np.float32(255)
    if data.flatten and features.ndim > 2:
        # The feature count spelled out: -1 cannot be inferred for zero images (an empty
        # validation set, `validation_split: 0`).
        features = features.reshape(len(features), math.prod(features.shape[1:]))
    return features


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


def prepare(config: Config) -> PreparedData:
    """Load, cut and preprocess the data a config asks for.

    Order matters: the training subset is drawn first (seeded, stratified when possible),
    the test subset is the first N test images (so `test_index` is the official position),
    the validation set is taken from the training data only (never the test set), and only
    then are images preprocessed, so nothing is converted that is thrown away.
    """
    data = config.data
    seed = config.seed
    raw = load_raw(data, seed)
    train_images, train_labels = raw.x_train, raw.y_train
    test_images, test_labels = raw.x_test, raw.y_test
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
        x_train=preprocess(train_images, data),
        y_train=train_labels.astype(np.int64),
        x_val=preprocess(validation_images, data),
        y_val=validation_labels.astype(np.int64),
        x_test=preprocess(test_images, data),
        y_test=test_labels.astype(np.int64),
        test_index=np.arange(len(test_labels), dtype=np.int64),
        source=raw.source,
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
