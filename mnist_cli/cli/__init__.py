"""The `mnist` command line: parse, call the library, print.

One module per group of commands (`train`, `inspection`, `serve`, `sweep`), each adding its
commands to the group of `group`. Heavy imports (Keras, TensorFlow, JAX, matplotlib,
scikit-learn) happen inside the commands that need them, after the backend is chosen, so
`mnist --help` and config checks are instant. Library errors (`MnistCliError`) become one
`Error: ...` line and their exit code.
"""

import atexit
import contextlib
import os
import sys

from mnist_cli.cli import inspection, serve, sweep, train  # noqa: F401  (they add the commands)
from mnist_cli.cli.group import cli


def main() -> None:
    try:
        cli(prog_name="mnist")  # standalone: always ends in SystemExit
    except SystemExit as ended:
        if sys.getprofile() is not None or sys.gettrace() is not None:
            raise  # a profiler or debugger reports after the program: exit as usual
        _exit_at_once(ended.code)


def _exit_at_once(code: int | str | None) -> None:
    """End the process without Python's own finalization, which after a command that ran
    JAX spends 0.6-0.7 s tearing down XLA's runtime object by object (docs/performance.md).
    The exit handlers still run and the output is flushed; every file the tool writes is
    closed (and renamed into place) before its command returns."""
    if isinstance(code, str):
        print(code, file=sys.stderr)
        code = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed pipe: nothing left to say
            stream.flush()
    os._exit(code or 0)


__all__ = ["cli", "main"]
