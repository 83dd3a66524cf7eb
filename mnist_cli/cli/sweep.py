"""`mnist sweep`: many runs of one config, searched with Optuna or repeated over seeds."""

from __future__ import annotations

import click

from mnist_cli.cli.group import check_overrides, cli
from mnist_cli.errors import UsageError


@cli.command()
@click.argument("sweep_file", required=False, type=click.Path(dir_okay=False),
                metavar="[SWEEP.yaml]")
@click.option("--resume", "resume_dir", type=click.Path(), metavar="SWEEP_DIR",
              help="Continue a stopped sweep (or join it as one more worker): its unfinished "
                   "trials continue from their checkpoints.")
@click.option("--seeds", type=click.IntRange(min=2), metavar="N",
              help="No sweep file: train --config with N seeds (its own seed onward) and "
                   "report the mean ± standard deviation of every metric.")
@click.option("--config", "-c", "config_path", type=click.Path(dir_okay=False),
              help="With --seeds: the config to repeat.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", callback=check_overrides,
              help="With --seeds: override one config key (repeatable).")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=1, show_default=True,
              help="Trials trained at once, each in its own process with its share of the "
                   "CPU cores.")
@click.option("--storage", "storage_url", metavar="URL",
              help="Keep the study in this database (e.g. postgresql://user:pw@host/db) "
                   "instead of the sweep folder, so that workers on many machines share it.")
@click.option("--out", default="outputs", show_default=True, type=click.Path(file_okay=False),
              help="Where the sweep folder (<name>-<timestamp>) is made.")
def sweep(sweep_file, resume_dir, seeds, config_path, overrides, jobs, storage_url,
          out) -> None:
    """Search config keys with Optuna, each trial an ordinary run in the sweep folder.

    The sweep file names a base config, the space of config keys to search, the sampler
    (grid, random, tpe), the metric (val_accuracy or val_loss: never the test set), the
    number of trials and optional pruning (median, successive_halving). The study lives
    in the sweep folder (study.journal) or in --storage. Ends with the best trials and
    writes trials.csv and sweep.png; `mnist runs SWEEP_DIR` lists the trials.

    \b
    Example:
      mnist sweep sweeps/keras-lr-width.yaml --jobs 2
      mnist sweep --resume outputs/keras-lr-width-20250101-120000
      mnist sweep sweeps/keras-lr-width.yaml --storage postgresql://me:secret@db/sweeps
      mnist sweep --seeds 5 -c configs/quickstart.yaml --set train.epochs=2
    """
    given = sum(value is not None for value in (sweep_file, resume_dir, seeds))
    if given != 1:
        raise UsageError("give one of: a sweep file, --resume SWEEP_DIR, or --seeds N -c CONFIG")
    if (config_path is not None or overrides) and seeds is None:
        raise UsageError("--config and --set go with --seeds (a sweep file names its base "
                         "config and its own set:)")
    from mnist_cli.sweep import results
    from mnist_cli.sweep.run import resume_sweep, start_sweep

    if resume_dir is not None:
        outcome = resume_sweep(resume_dir, jobs=jobs, storage_url=storage_url, echo=click.echo)
    else:
        from mnist_cli.sweep import schema

        if seeds is not None:
            if config_path is None:
                raise UsageError("--seeds needs the config to repeat: --config CONFIG")
            from mnist_cli.config import load_config

            spec = schema.seeds_sweep(load_config(config_path, list(overrides)), seeds)
        else:
            spec = schema.load_sweep_file(sweep_file)
        outcome = start_sweep(spec, out, jobs=jobs, storage_url=storage_url, echo=click.echo)

    counts = results.count_states(outcome.rows)
    click.echo("")
    click.echo(", ".join(f"{count} {state.lower()}" for state, count in sorted(counts.items()))
               + f" trial{'s' if len(outcome.rows) != 1 else ''} in {outcome.folder.path}")
    if outcome.seeds is not None:
        click.echo(results.format_seed_statistics(outcome.seeds))
        click.echo(f"Wrote {outcome.folder.seeds_summary}")
    elif results.best_rows(outcome.rows, outcome.sweep):
        click.echo(results.format_best_table(outcome.rows, outcome.sweep))
    click.echo(f"Wrote {outcome.folder.table}"
               + (f" and {outcome.folder.figure}" if outcome.folder.figure.is_file() else ""))
