"""`mnist train`: parse the options, load the config, hand it to `training.pipeline`."""

from __future__ import annotations

import click

from mnist_cli import choices
from mnist_cli.cli.group import SHOW_TRACEBACKS, RunPath, check_overrides, cli
from mnist_cli.errors import ConfigError, UsageError
from mnist_cli.terminal import Output


@cli.command()
@click.argument("config_argument", required=False, metavar="[CONFIG]",
                type=click.Path(dir_okay=False))
@click.option("--config", "-c", "config_path", type=click.Path(dir_okay=False),
              help="YAML config of the experiment (defaults are used for missing keys); "
                   "the same as giving CONFIG.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", callback=check_overrides,
              help="Override one config key, e.g. --set train.epochs=5 (repeatable).")
@click.option("--epochs", type=int, help="Shortcut for --set train.epochs=N.")
@click.option("--batch-size", type=int, help="Shortcut for --set train.batch_size=N.")
@click.option("--seed", type=int, help="Shortcut for --set seed=N.")
@click.option("--out", type=click.Path(file_okay=False),
              help="Output root for the run directory (--set output.root=DIR).")
@click.option("--backend", type=click.Choice(choices.BACKEND_CHOICES),
              help="Keras backend (--set runtime.backend=...); auto: KERAS_BACKEND, else jax "
                   "if installed, else tensorflow.")
@click.option("--engine", type=click.Choice(choices.ENGINES),
              help="Training loop (--set train.engine=...): fast compiles each epoch into "
                   "one program (auto's choice on jax and tensorflow); fit is Keras's "
                   "model.fit.")
@click.option("--deterministic", is_flag=True, default=None,
              help="Use the backend's deterministic ops (--set runtime.deterministic=true).")
@click.option("--dry-run", is_flag=True,
              help="Validate the config, print it resolved and the model summary; no training.")
@click.option("--no-summary", is_flag=True,
              help="With --dry-run: skip the model summary (does not import Keras).")
@click.option("--resume", "resume_dir", type=RunPath(finished_only=False), metavar="RUN_DIR",
              help="Continue a stopped run (Ctrl-C, kill, crash) from its last checkpoint, "
                   "with its own config.yaml; `latest`: the newest run under outputs/.")
@click.option("--verbose", "-v", is_flag=True,
              help="Show the backend's native log messages, and tracebacks of unexpected errors.")
def train(config_argument, config_path, overrides, epochs, batch_size, seed, out, backend,
          engine, deterministic, dry_run, no_summary, resume_dir, verbose) -> None:
    """Train a network described by a YAML config into a new run directory.

    Without a config it trains the built-in defaults (a 784-128-10 network, Adam, 10
    epochs; --dry-run shows them all) and says so. The run directory
    (outputs/<name>-<timestamp>/ by default) receives config.yaml,
    history.csv and checkpoint.npz after every epoch, then model.keras, learning_curves.png,
    errors.png and metrics.json. Ctrl-C stops at the end of the current epoch (fast
    engine) or batch (fit engine), saves, and prints the command that resumes the run.

    \b
    Example:
      mnist train --config configs/keras-784-500-10.yaml
      mnist train configs/quickstart.yaml
      mnist train -c configs/quickstart.yaml --epochs 3 --set train.learning_rate=0.01
      mnist train -c configs/nielsen-784-30-10.yaml --dry-run
      mnist train --resume latest
    """
    click.get_current_context().meta[SHOW_TRACEBACKS] = verbose
    if config_argument is not None and config_path is not None:
        raise UsageError(f"two configs: {config_argument} and --config {config_path}; give one")
    config_path = config_path or config_argument
    if resume_dir is not None:
        given = [name for name, value in (
            ("--config", config_path), ("--set", overrides), ("--epochs", epochs),
            ("--batch-size", batch_size), ("--seed", seed), ("--out", out),
            ("--backend", backend), ("--engine", engine), ("--deterministic", deterministic),
            ("--dry-run", dry_run), ("--no-summary", no_summary),
        ) if value is not None and value is not False and value != ()]
        if given:
            raise ConfigError(
                f"--resume continues the run with its own config.yaml: drop {', '.join(given)}"
            )
        from mnist_cli.training.checkpoints import find_resume_point

        resume = find_resume_point(resume_dir)
        _start_training(resume.config, verbose, resume)
        return

    if no_summary and not dry_run:
        raise UsageError("--no-summary goes with --dry-run: add --dry-run, or drop --no-summary")
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
    flag_names = {
        "train.epochs": "--epochs", "train.batch_size": "--batch-size", "seed": "--seed",
        "output.root": "--out", "runtime.backend": "--backend", "train.engine": "--engine",
        "runtime.deterministic": "--deterministic",
    }
    config = load_config(config_path, list(overrides), flags, flag_names)
    if dry_run:
        config, checked = _check_without_training(config)
        click.echo(config.to_yaml().rstrip())
        click.echo(checked)
        if not no_summary:
            _print_summary(config, verbose)
        return
    if config_path is None and not overrides:
        click.echo("No config given: training the built-in defaults (see them with "
                   "`mnist train --dry-run`; give a recipe with -c configs/<name>.yaml).")
    _start_training(config, verbose)


def _check_without_training(config) -> tuple:
    """What --dry-run checks beyond the config: the data can be found and read, the batch
    fits it, and what `auto` resolves to here. Returns the config with the epochs a step
    budget takes, and the findings as two comment lines. Imports no Keras."""
    from mnist_cli.runtime import resolve_backend
    from mnist_cli.training.engines import resolve_engine
    from mnist_cli.training.plan import prepare_for_training

    data, config = prepare_for_training(config)
    backend = resolve_backend(config.runtime.backend)
    engine = resolve_engine(config.train.engine, backend)
    auto = " (what auto resolves to here)" if "auto" in (config.runtime.backend,
                                                         config.train.engine) else ""
    # YAML comments: the dry run's output still reads as a config.
    return config, (f"# Data: {data.source} - {len(data.y_train)} train, {len(data.y_val)} "
            f"validation, {len(data.y_test)} test\n# Backend: {backend}, engine: {engine}{auto}")


def _start_training(config, verbose: bool, resume=None) -> None:
    from mnist_cli.training.pipeline import train as run_training

    # Progress goes to stdout while someone reads it (`| head` may stop reading).
    output = Output()
    result = run_training(config, echo=output, progress_bar=output.isatty(), resume=resume,
                          verbose=verbose)
    import shlex

    run = shlex.quote(str(result.run_dir))
    output(f"Next: mnist evaluate {run}\n      mnist show-errors {run}\n"
           f"      mnist predict {run} my-digit.png")


def _print_summary(config, verbose: bool) -> None:
    from mnist_cli import runtime

    runtime.start(config.runtime.backend, verbose=verbose)
    from mnist_cli.model import build_model

    click.echo("")
    build_model(config).summary(print_fn=lambda line, **_: click.echo(line))
