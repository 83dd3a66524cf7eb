"""Errors a user can act on.

Every problem with the user's input (config, data files, run directories, images) raises a
subclass of `MnistCliError`, which is a `ValueError`. The CLI turns these into one line
`Error: ...` and an exit code, never a traceback.
"""


def describe_error(error: BaseException, limit: int = 200, *, with_type: bool = True) -> str:
    """The reason an exception gives, on one short line: its first line of text, cut at
    `limit` characters, after `Type: ` unless `with_type` is False (the type alone when the
    exception has no text). Every message that quotes a library's exception uses this."""
    lines = [line for line in str(error).splitlines() if line.strip()]
    text = " ".join(lines[0].split()) if lines else ""
    if len(text) > limit:
        text = text[:limit - 3] + "..."
    if not text:
        return type(error).__name__
    return f"{type(error).__name__}: {text}" if with_type else text


class MnistCliError(ValueError):
    """Base class: a problem the user can fix. `exit_code` is what the CLI exits with."""

    exit_code = 1


class ConfigError(MnistCliError):
    """The config (YAML file, --set override or flag) is invalid. Usage error: exit 2."""

    exit_code = 2


class UsageError(MnistCliError):
    """A command-line option is wrong or does not fit the others. Exit 2, as click's own."""

    exit_code = 2


class DataError(MnistCliError):
    """A dataset cannot be found, read or trusted."""


class DatasetNotFound(DataError):
    """No local copy of the dataset, and the download failed; each command adds how to
    point it at a copy."""


class RunDirError(MnistCliError):
    """A path is not a usable run directory (or a saved model is not a model)."""


class ImageError(MnistCliError):
    """An image given to `mnist predict` cannot be read or holds no digit."""


class ExportError(MnistCliError):
    """`mnist export` cannot write a format (a package is missing) or the exported file does
    not compute what the Keras model computes."""


class Interrupted(MnistCliError):
    """Training stopped on Ctrl-C, after saving what it could; the message says where and
    holds the exact resume command. Exit 130 (128 + SIGINT), the shell's convention."""

    exit_code = 130
