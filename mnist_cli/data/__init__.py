"""Datasets, flowing one way: `sources` finds and reads one as stored (through `idx` for
the original files, `checks` to trust what was read), `prepare` cuts it into training,
validation and test sets and turns pixels into features. A new dataset goes in `sources`.

The names below are the package's public entry points. Importing it imports NumPy only.
"""

from mnist_cli.data.idx import read_idx, write_idx
from mnist_cli.data.prepare import (
    PreparedData,
    apply_pixel_table,
    check_batch_size,
    pixel_table,
    prepare,
    preprocess,
    validation_count,
)
from mnist_cli.data.sources import RawData, load_raw, resolve_mnist_path

__all__ = [
    "PreparedData",
    "RawData",
    "apply_pixel_table",
    "check_batch_size",
    "load_raw",
    "pixel_table",
    "prepare",
    "preprocess",
    "read_idx",
    "resolve_mnist_path",
    "validation_count",
    "write_idx",
]
