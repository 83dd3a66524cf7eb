"""The run directory: its layout, and atomic reads and writes of its files.

Every file is written to a temporary file in the same folder, flushed to disk and renamed
into place (`os.replace` is atomic on POSIX and Windows), so at every instant each file is
either its previous complete version or its new complete version, never a torn one: a run
killed mid-save can always be read.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from mnist_cli.errors import RunDirError

CONFIG_FILE = "config.yaml"
MODEL_FILE = "model.keras"
HISTORY_FILE = "history.csv"
METRICS_FILE = "metrics.json"
CURVES_FILE = "learning_curves.png"
ERRORS_FILE = "errors.png"

HISTORY_COLUMNS = (
    "epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "seconds"
)


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


def history_csv_text(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_COLUMNS, extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _csv_value(row.get(key)) for key in HISTORY_COLUMNS})
    return buffer.getvalue()


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return value


def read_history(path: str | Path) -> list[dict[str, float | int | None]]:
    """history.csv as a list of rows; empty cells (no validation set) become None."""
    rows = []
    with open(path, newline="", encoding="utf-8") as handle:
        try:
            raws = list(csv.DictReader(handle))
        except csv.Error as error:  # not a ValueError: say it as one, as for a bad number
            raise RunDirError(f"{path} is not a readable CSV file ({error})") from None
        for raw in raws:
            row: dict[str, float | int | None] = {}
            for key, value in raw.items():
                if key is None:
                    continue
                if value in ("", None):
                    row[key] = None
                elif key == "epoch":
                    row[key] = int(value)
                else:
                    row[key] = float(value)
            rows.append(row)
    return rows


def _timestamp() -> str:
    return datetime.now().strftime("%Y%m%d-%H%M%S")


_SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}")


def create_run_dir(output_root: str | Path, name: str) -> Path:
    """Make a new, empty `<output_root>/<name>-<timestamp>` folder; never reuse one.

    `os.mkdir` fails if the folder exists, so two runs started in the same second (or two
    processes racing) get distinct folders (`-2`, `-3`, ...) and nothing is overwritten.
    """
    root = Path(output_root)
    if not _SAFE_NAME.fullmatch(name):
        # The config checks this too; this guard keeps library callers inside the root.
        raise RunDirError(
            f"run name {name!r} must be a plain folder name: letters, digits, '.', '_' and "
            "'-', not starting with '.'"
        )
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RunDirError(
            f"cannot create the output folder {root} ({error.strerror}): choose another with --out"
        ) from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise RunDirError(f"the output folder {root} is not writable: choose another with --out")
    base = f"{name}-{_timestamp()}"
    for attempt in range(1, 1000):
        candidate = root / (base if attempt == 1 else f"{base}-{attempt}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        except OSError as error:
            raise RunDirError(
                f"cannot create the run folder {candidate} ({error.strerror}): "
                f"choose another output folder with --out"
            ) from None
        return candidate
    raise RunDirError(f"too many runs named {base} in {root}")


@dataclass(frozen=True)
class RunDir:
    """Paths of one run directory."""

    path: Path

    @property
    def config(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def model(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def history(self) -> Path:
        return self.path / HISTORY_FILE

    @property
    def metrics(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def curves(self) -> Path:
        return self.path / CURVES_FILE

    @property
    def errors(self) -> Path:
        return self.path / ERRORS_FILE

    def file(self, name: str) -> Path:
        return self.path / name


def open_run_dir(path: str | Path) -> RunDir:
    """Check that `path` is a run directory (a folder with a config.yaml) and return it."""
    folder = Path(path)
    if not folder.exists():
        raise RunDirError(f"{folder}: no such run directory (see `mnist runs` for the runs found)")
    if not folder.is_dir():
        raise RunDirError(f"{folder}: is a file, not a run directory made by `mnist train`")
    run = RunDir(folder)
    if not run.config.is_file():
        raise RunDirError(
            f"{folder}: not a run directory (no {CONFIG_FILE}); pass a folder made by `mnist train`"
        )
    return run


def read_json(path: str | Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunDirError(f"{path}: missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RunDirError(f"{path}: unreadable ({error})") from None
