"""Finding a dataset and reading it as stored (uint8 images and labels, checked).

Where `dataset: mnist` (or `fashion_mnist`) comes from, first match wins:

1. `data.path` in the config: a `.npz` in the Keras layout or a folder of IDX files;
2. the environment variable `MNIST_DATA` (`FASHION_MNIST_DATA`), same forms;
3. the Keras cache (`$KERAS_HOME/datasets/...`, by default under `~/.keras`), read
   directly, so a cached copy works offline without importing Keras;
4. `keras.datasets.<name>.load_data()`, the real download, for users who are online.

`dataset: openml` is scikit-learn's `fetch_openml('mnist_784')`, or a local copy pooled in
the same order. An explicit path or variable that points at nothing is an error rather than
a reason to fall through: silently downloading another copy would hide the typo. Keras and
scikit-learn are imported inside the functions that use them.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_cli.config import DataConfig
from mnist_cli.data.checks import RawData, as_pixels, checked_raw_data
from mnist_cli.data.idx import IDX_FILES, find_idx_file, missing_idx_files, read_idx
from mnist_cli.errors import DataError, DatasetNotFound, describe_error

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")

# OpenML's mnist_784 holds the 60000 training images first and the 10000 test images last.
OPENML_TEST_SIZE = 10000


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


def _load_idx_folder(folder: Path, source: str) -> RawData:
    """The four MNIST IDX files of one folder (the layout of the original distribution)."""
    missing = missing_idx_files(folder)
    if missing:
        raise DataError(
            f"{folder}: missing {', '.join(missing)}; a data folder needs the four MNIST IDX "
            "files (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
            "t10k-labels-idx1-ubyte, gzipped or not)"
        )
    arrays = {}
    for key, (stem, ndim) in IDX_FILES.items():
        file_path = find_idx_file(folder, stem, ndim)
        arrays[key] = (read_idx(file_path, expected_ndim=ndim), str(file_path))
    return checked_raw_data(arrays, source)


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
    return checked_raw_data(arrays, source)


def _load_local(resolved: ResolvedPath) -> RawData:
    path = resolved.path
    if path.is_dir():
        return _load_idx_folder(path, resolved.describe())
    return _load_npz(path, resolved.describe())


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
        return path.is_dir() and not missing_idx_files(path)
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


def _download_quietly(dataset: str) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """`fetch_with_keras` without its "Downloading data from ..." lines, and, when it fails,
    without the empty cache folders it made."""
    from mnist_cli import runtime

    if "keras" not in sys.modules:  # a dry run: choose the backend as a command would
        runtime.activate_backend("auto")
    cache = keras_cache_candidates(dataset)[0]
    made = [folder for folder in (cache.parent.parent, cache.parent) if not folder.exists()]
    try:
        with contextlib.redirect_stdout(io.StringIO()), runtime.native_stderr_captured():
            return fetch_with_keras(dataset)
    except BaseException:
        for folder in reversed(made):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if still empty
        raise


def _download_keras_dataset(dataset: str) -> RawData:
    locations = _DATASET_LOCATIONS[dataset]
    try:
        (x_train, y_train), (x_test, y_test) = _download_quietly(dataset)
    except Exception as error:  # Keras reports network failures as a bare `Exception`
        cache = keras_cache_candidates(dataset)[0]
        variable = locations.environment_variable
        raise DatasetNotFound(
            f"{dataset} not found ({variable} unset, nothing at {cache}) and the download "
            f"failed ({describe_error(error, 50)}). Point at a local .npz or IDX folder: "
            f"{variable}={locations.example_path}"
        ) from None
    source = f"keras download {keras_cache_candidates(dataset)[0]}"
    return checked_raw_data(
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


def _official_openml_split(images: np.ndarray, labels: np.ndarray, source: str) -> RawData:
    """OpenML's mnist_784 holds the 60000 training images first and the 10000 test last."""
    if len(labels) <= OPENML_TEST_SIZE:
        raise DataError(
            f"{source}: {len(labels)} rows, too few for the official split (the last "
            f"{OPENML_TEST_SIZE} rows are the test set)"
        )
    cut = len(labels) - OPENML_TEST_SIZE
    return checked_raw_data(
        {
            "x_train": (images[:cut], source),
            "y_train": (labels[:cut], source),
            "x_test": (images[cut:], source),
            "y_test": (labels[cut:], source),
        },
        source,
    )


def _load_openml(data: DataConfig) -> RawData:
    if data.path:
        # A local copy wins: its training then test images are OpenML's 70000 rows.
        return _load_local(_explicit_path(data.path, "data.path"))
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
    images = as_pixels(np.asarray(features), source)
    return _official_openml_split(images, labels, source)


# ---------------------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------------------


def load_raw(data: DataConfig) -> RawData:
    """The dataset the config names, as stored (uint8), checked, with where it came from:
    its official training and test sets (`prepare` pools them for `split: pooled`)."""
    if data.dataset == "openml":
        return _load_openml(data)
    resolved = resolve_mnist_path(data.path, data.dataset)
    if resolved is None:
        return _download_keras_dataset(data.dataset)
    return _load_local(resolved)


