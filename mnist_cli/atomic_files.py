"""Atomic writes: a file is always either its previous whole version or its new one.

Every file is written to a temporary file in the same folder, flushed to disk and renamed
into place (`os.replace` is atomic on POSIX and Windows), so a process killed in the middle
of a save leaves the old file intact and, at worst, a temporary file that
`remove_temporaries` recognises and deletes.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it onto `path`.

    The temporary name keeps `path`'s suffix, because some writers (Keras's `model.save`,
    matplotlib's `savefig`) choose the format from it. On any error the temporary file is
    removed and the existing `path` is left untouched.
    """
    path = Path(path)
    handle, temporary_name = tempfile.mkstemp(
        prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent
    )
    os.close(handle)
    temporary = Path(temporary_name)
    # mkstemp makes owner-only files; give the final file the usual permissions instead.
    os.chmod(temporary, 0o666 & ~_current_umask())
    try:
        yield temporary
        with open(temporary, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    _fsync_directory(path.parent)


@contextlib.contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside `path`; on success it takes `path`'s place.

    For outputs that are folders (a TensorFlow SavedModel). A folder cannot replace another
    in one rename, so an existing `path` is first renamed aside, then the new one renamed
    in, then the old one deleted: at every moment one whole version exists under `path` or
    under the aside name. On any error the temporary folder is deleted and `path` is as it was.
    """
    import shutil

    path = Path(path)
    temporary = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    os.chmod(temporary, 0o777 & ~_current_umask())
    try:
        yield temporary
        aside = None
        if path.exists():
            aside = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old.tmp",
                                          dir=path.parent))
            os.replace(path, aside / path.name)
        os.replace(temporary, path)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)
    _fsync_directory(path.parent)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_directory(folder: Path) -> None:
    """Make the rename itself durable (a no-op where directories cannot be opened)."""
    with contextlib.suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)


def write_text_atomic(path: str | Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | Path, data: Any) -> None:
    write_text_atomic(path, json_text(data) + "\n")


def json_text(value: Any, indent: int = 0) -> str:
    """Indented JSON in which a list of numbers stays on one line (a confusion-matrix row)."""
    pad = "  " * (indent + 1)
    if isinstance(value, dict) and value:
        items = [f"{pad}{json.dumps(str(key))}: {json_text(item, indent + 1)}"
                 for key, item in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + "  " * indent + "}"
    if isinstance(value, (list, tuple)) and value and any(
        isinstance(item, (dict, list, tuple)) for item in value
    ):
        items = [pad + json_text(item, indent + 1) for item in value]
        return "[\n" + ",\n".join(items) + "\n" + "  " * indent + "]"
    return json.dumps(value)


# tempfile's random part is made of [a-z0-9_].
_TEMPORARY_NAME = re.compile(r"\..*\.[a-z0-9_]+\.tmp(\.[^.]*)?")


def is_temporary(name: str) -> bool:
    """True for the name of a temporary file made by `atomic_path` (`.<stem>.<random>.tmp<suffix>`):
    what a process killed in the middle of a save leaves behind."""
    return _TEMPORARY_NAME.fullmatch(name) is not None


def remove_temporaries(folder: str | Path) -> list[Path]:
    """Delete the temporary files of interrupted saves in `folder`; return them.

    They are never the only copy of anything: the file they were to replace is intact.
    """
    removed = []
    for path in Path(folder).iterdir():
        if path.is_file() and is_temporary(path.name):
            with contextlib.suppress(OSError):
                path.unlink()
                removed.append(path)
    return removed


def save_with(path: str | Path, writer: Callable[[Path], None]) -> None:
    """Atomically save through a writer that takes a path (a figure, a Keras model)."""
    with atomic_path(path) as temporary:
        writer(temporary)
