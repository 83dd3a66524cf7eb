"""The `mnist` group: every failure becomes one line and an exit code; the types and
helpers the commands share (`RunPath`, the first-sentence help line)."""

from __future__ import annotations

import contextlib
import errno
import os
import signal

import click

from mnist_cli import __version__
from mnist_cli.errors import Interrupted, MnistCliError, describe_error
from mnist_cli.terminal import say_error

# A command sets ctx.meta[SHOW_TRACEBACKS] = True (`mnist train --verbose`) to let an
# unexpected exception through with its traceback; so does the environment variable.
SHOW_TRACEBACKS = "mnist_cli.show_tracebacks"
TRACEBACK_VARIABLE = "MNIST_CLI_TRACEBACK"


class _Command(click.Command):
    """A command whose line in `mnist --help` is its docstring's first sentence, whole."""

    def get_short_help_str(self, limit: int = 45) -> str:
        first_paragraph = (self.help or "").strip().split("\n\n")[0]
        return " ".join(first_paragraph.split())


class RunPath(click.Path):
    """A run directory (or model file) path; `latest` names the newest finished run under
    outputs/ (`runs.resolve_run`), or with `finished_only=False` the newest run of any kind
    (`train --resume latest`)."""

    def __init__(self, *, finished_only: bool = True):
        super().__init__()
        self.finished_only = finished_only

    def convert(self, value, parameter, context):
        from mnist_cli.runs import resolve_run

        return str(resolve_run(value, finished_only=self.finished_only))


def check_overrides(context: click.Context, parameter: click.Parameter,
                    values: tuple[str, ...]) -> tuple[str, ...]:
    """Read each `--set` as the config will (`parse_override`) while click parses: after
    `--set train.epochs 5` the hint must come before click's error about a stray `5`."""
    from mnist_cli.config.loading import parse_override

    for value in values:
        parse_override(value)
    return values


class _Group(click.Group):
    """Turns every failure into one line and an exit code, never a traceback.

    The library's input errors exit with their own code (2 for the config, 1 for files and
    data), OS errors (disk full, permission denied) with 1, Ctrl-C with 130, and anything
    else, which would be a bug, with 1 and a hint on how to see the traceback.
    """

    command_class = _Command

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except Interrupted as error:
            _quit_quietly()
            say_error(str(error))
            ctx.exit(error.exit_code)
        except MnistCliError as error:
            say_error(f"Error: {error}")
            ctx.exit(error.exit_code)
        except OSError as error:
            say_error(f"Error: {_describe_os_error(error)}")
            ctx.exit(1)
        except KeyboardInterrupt:
            _quit_quietly()
            say_error("Interrupted.")
            ctx.exit(Interrupted.exit_code)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as error:
            if ctx.meta.get(SHOW_TRACEBACKS) or os.environ.get(TRACEBACK_VARIABLE, "").lower() in (
                    "1", "true", "yes"):
                raise
            click.echo(
                f"Error: unexpected {describe_error(error, 300)} "
                f"(a bug: please report it; run again with {TRACEBACK_VARIABLE}=1 or "
                "`mnist train --verbose` to see the traceback)",
                err=True,
            )
            ctx.exit(1)


def _quit_quietly() -> None:
    """After Ctrl-C the process only exits: a further Ctrl-C must not interrupt the
    backends' exit handlers (JAX's) with a traceback."""
    with contextlib.suppress(ValueError):  # not the main thread
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _describe_os_error(error: OSError) -> str:
    where = f" ({error.filename})" if error.filename else ""
    if error.errno == errno.ENOSPC:
        return f"no space left on the device{where}: free some space and run again"
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"permission denied{where}: choose a folder you can write to (--out)"
    return f"{error.strerror or error}{where}"


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mnist-cli")
def cli() -> None:
    """Train and inspect Dense neural networks on MNIST.

    \b
    Example:
      mnist train --config configs/keras-784-500-10.yaml
      mnist train --help
    """
