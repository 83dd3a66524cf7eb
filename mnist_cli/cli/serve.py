"""`mnist serve`: the local teaching page."""

from __future__ import annotations

import click

from mnist_cli import choices
from mnist_cli.cli.group import cli
from mnist_cli.errors import UsageError, describe_error


@cli.command()
@click.argument("run_dirs", nargs=-1, type=click.Path(), metavar="[RUN_DIR]...")
@click.option("--out", "output_root", default="outputs", show_default=True,
              type=click.Path(file_okay=False),
              help="Output root whose runs the page offers (when no RUN_DIR is given).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; anything but this machine's loopback lets other "
                   "machines open the page (a warning is printed).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="TCP port (0: any free port).")
@click.option("--backend", type=click.Choice(choices.BACKEND_CHOICES), default="auto",
              show_default=True, help="Keras backend to run the models on.")
@click.option("--allow-training", is_flag=True,
              help="Let the page start trainings even when --host is not this machine's "
                   "loopback (on the loopback it always may).")
@click.option("--train-config", type=click.Path(dir_okay=False), default=None,
              help="The config a training started from the page starts from (its data, "
                   "batch size ...); the page sets layers, optimizer, learning rate, epochs "
                   "and augmentation. Default: the built-in defaults.")
def serve(run_dirs, output_root, host, port, backend, allow_training, train_config) -> None:
    """Open a local web page: draw a digit and watch your trained network answer.

    The page shows the ten probabilities as you draw, the 28x28 image the network receives,
    the hidden layers' activations, what the first layer's units look for, where the
    network looks (saliency) and how little ink flips its answer, the run's learning
    curves and confusion matrix (click a cell to see those test digits), and any epoch's
    answer for a run that kept snapshots. A run still training is followed live, and the
    page can start and stop a small training of its own (a `mnist train` process). It
    offers the runs given (`latest`: the newest under --out), else every run under --out.
    Stop it with Ctrl-C.

    \b
    Example:
      mnist serve
      mnist serve outputs/keras-784-500-10-20250101-120000 outputs/softmax-784-10-20250101-130000
      mnist serve latest --out experiments --port 8080
    """
    try:
        from mnist_cli.serve.registry import RunRegistry
        from mnist_cli.serve.server import bind_socket, is_loopback
        from mnist_cli.serve.server import serve as serve_page
    except ImportError as error:
        raise UsageError(f"mnist serve needs the serve extra ({describe_error(error)}): "
                         'pip install "mnist-cli[serve]"') from None
    from pathlib import Path

    from mnist_cli.serve.training import PageTraining

    registry = RunRegistry(output_root, list(run_dirs), backend)
    refusal = (None if is_loopback(host) or allow_training else
               f"training from the page is off: the server listens on {host}, where anyone "
               "who reaches it could start one; restart it with --allow-training to allow it")
    training = PageTraining(Path(output_root), Path(train_config) if train_config else None,
                            refusal)
    # An existing output root with no run yet: the page can train one, unless training
    # from it is off. A missing one is likelier a typo in --out.
    can_start_empty = refusal is None and not run_dirs and Path(output_root).is_dir()
    runs = registry.runs() if can_start_empty else registry.check_not_empty()
    listener = bind_socket(host, port)  # a port in use is reported before Keras starts
    # Load the newest run (which starts Keras) and run one blank digit through it now, so
    # that the first drawing on the page is answered as fast as the others.
    finished = [run for run in runs if run.summary.complete]
    if finished:
        registry.load(finished[-1].name).warm_up()
    if not is_loopback(host):
        click.echo(f"Warning: listening on {host}: anyone who can reach this machine can open "
                   "the page and your runs. Use the default --host 127.0.0.1 unless you mean "
                   "it.", err=True)
    names = ", ".join(run.name for run in runs[-5:]) + (" ..." if len(runs) > 5 else "")
    click.echo(f"Serving {len(runs)} run{'s' if len(runs) != 1 else ''} ({names})" if runs
               else f"No run under {output_root} yet: train one from the page")

    def announce(address: str) -> None:
        click.echo(f"Open {address} in a browser (Ctrl-C stops the server)")

    serve_page(registry, listener, announce, training)
    stopped = training.shutdown()
    if stopped:
        click.echo(f"Stopped the training started from the page; resume it with: "
                   f"mnist train --resume {Path(output_root) / stopped}")
    click.echo("Stopped.")
