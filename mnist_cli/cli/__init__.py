"""The `mnist` command line: parse, call the library, print.

One module per group of commands (`train`, `inspection`, `serve`, `sweep`), each adding its
commands to the group of `group`. Heavy imports (Keras, TensorFlow, JAX, matplotlib,
scikit-learn) happen inside the commands that need them, after the backend is chosen, so
`mnist --help` and config checks are instant. Library errors (`MnistCliError`) become one
`Error: ...` line and their exit code.
"""

from mnist_cli.cli import inspection, serve, sweep, train  # noqa: F401  (they add the commands)
from mnist_cli.cli.group import cli


def main() -> None:
    cli(prog_name="mnist")


__all__ = ["cli", "main"]
