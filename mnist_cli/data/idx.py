"""The IDX format of the original MNIST files (`train-images-idx3-ubyte[.gz]` ...).

A big-endian header (two zero bytes, a type code, the number of dimensions, one uint32
per dimension) followed by the values. `read_idx` trusts nothing until the header and the
length agree; `write_idx` is its inverse, for tests and for users who make their own files.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from mnist_cli.errors import DataError, describe_error

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


def find_idx_file(folder: Path, stem: str, ndim: int) -> Path | None:
    for name in (f"{stem}-idx{ndim}-ubyte", f"{stem}.idx{ndim}-ubyte"):
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def missing_idx_files(folder: Path) -> list[str]:
    return [
        f"{stem}-idx{ndim}-ubyte[.gz]"
        for stem, ndim in IDX_FILES.values()
        if find_idx_file(folder, stem, ndim) is None
    ]
