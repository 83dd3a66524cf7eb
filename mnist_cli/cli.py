"""The `mnist` command line: parse, call the library, print.

Heavy imports (Keras, TensorFlow, JAX, matplotlib, scikit-learn) happen inside the commands
that need them, after the backend is chosen, so `mnist --help` and config checks are instant.
Library errors (`MnistCliError`) become one `Error: ...` line and their exit code.
"""

from __future__ import annotations

import errno
import sys

import click

from mnist_cli import __version__
from mnist_cli.errors import MnistCliError


class _Group(click.Group):
    """Turns the library's input errors and OS errors into one line and an exit code."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except MnistCliError as error:
            click.echo(f"Error: {error}", err=True)
            ctx.exit(error.exit_code)
        except OSError as error:
            click.echo(f"Error: {_describe_os_error(error)}", err=True)
            ctx.exit(1)


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


@cli.command()
@click.option("--config", "-c", "config_path", type=click.Path(dir_okay=False),
              help="YAML config of the experiment (defaults are used for missing keys).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override one config key, e.g. --set train.epochs=5 (repeatable).")
@click.option("--epochs", type=int, help="Shortcut for --set train.epochs=N.")
@click.option("--batch-size", type=int, help="Shortcut for --set train.batch_size=N.")
@click.option("--seed", type=int, help="Shortcut for --set seed=N.")
@click.option("--out", type=click.Path(file_okay=False),
              help="Output root for the run directory (--set output.root=DIR).")
@click.option("--backend", type=click.Choice(["auto", "tensorflow", "jax", "torch"]),
              help="Keras backend (--set runtime.backend=...); auto: KERAS_BACKEND, else jax "
                   "if installed, else tensorflow.")
@click.option("--engine", type=click.Choice(["auto", "fit", "fast"]),
              help="Training loop (--set train.engine=...): fit is Keras's model.fit.")
@click.option("--deterministic", is_flag=True, default=None,
              help="Use the backend's deterministic ops (--set runtime.deterministic=true).")
@click.option("--dry-run", is_flag=True,
              help="Validate the config, print it resolved and the model summary; no training.")
@click.option("--no-summary", is_flag=True,
              help="With --dry-run: skip the model summary (does not import Keras).")
@click.option("--verbose", "-v", is_flag=True, help="Show the backend's native log messages.")
def train(config_path, overrides, epochs, batch_size, seed, out, backend, engine,
          deterministic, dry_run, no_summary, verbose) -> None:
    """Train a network described by a YAML config into a new run directory.

    The run directory (outputs/<name>-<timestamp>/ by default) receives config.yaml,
    model.keras, history.csv, metrics.json, learning_curves.png and errors.png.

    \b
    Example:
      mnist train --config configs/keras-784-500-10.yaml
      mnist train -c configs/quickstart.yaml --epochs 3 --set train.learning_rate=0.01
      mnist train -c configs/nielsen-784-30-10.yaml --dry-run
    """
    from mnist_cli.config import load_config

    flags = {
        "train.epochs": epochs,
        "train.batch_size": batch_size,
        "seed": seed,
        "output.root": out,
        "runtime.backend": backend,
        "train.engine": engine,
        "runtime.deterministic": deterministic,
    }
    config = load_config(config_path, list(overrides), flags)
    if dry_run:
        click.echo(config.to_yaml().rstrip())
        if not no_summary:
            _print_summary(config, verbose)
        return

    from mnist_cli.backend import activate_backend

    activate_backend(config.runtime.backend, verbose)
    from mnist_cli.train import train as run_training

    run_training(config, echo=click.echo, progress_bar=sys.stdout.isatty())


def _print_summary(config, verbose: bool) -> None:
    from mnist_cli.backend import activate_backend

    activate_backend(config.runtime.backend, verbose)
    from mnist_cli.model import build_model

    click.echo("")
    build_model(config).summary(print_fn=lambda line, **_: click.echo(line))


def main() -> None:
    cli(prog_name="mnist")


if __name__ == "__main__":
    main()
