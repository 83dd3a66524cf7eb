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
def serve(run_dirs, output_root, host, port, backend) -> None:
    """Open a local web page: draw a digit and watch your trained network answer.

    The page shows the ten probabilities as you draw, the 28x28 image the network receives,
    the hidden layers' activations, the run's learning curves and confusion matrix (click
    a cell to see those test digits), and for a net without hidden layers its weight
    templates. It offers the runs given (`latest`: the newest under --out), else every
    finished run under --out. Stop it with Ctrl-C.

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
    registry = RunRegistry(output_root, list(run_dirs), backend)
    runs = registry.check_not_empty()
    listener = bind_socket(host, port)  # a port in use is reported before Keras starts
    # Load the newest run (which starts Keras) and run one blank digit through it now, so
    # that the first drawing on the page is answered as fast as the others.
    registry.load(runs[-1].name).warm_up()
    if not is_loopback(host):
        click.echo(f"Warning: listening on {host}: anyone who can reach this machine can open "
                   "the page and your runs. Use the default --host 127.0.0.1 unless you mean "
                   "it.", err=True)
    names = ", ".join(run.name for run in runs[-5:]) + (" ..." if len(runs) > 5 else "")
    click.echo(f"Serving {len(runs)} run{'s' if len(runs) != 1 else ''} ({names})")

    def announce(address: str) -> None:
        click.echo(f"Open {address} in a browser (Ctrl-C stops the server)")

    serve_page(registry, listener, announce)
    click.echo("Stopped.")
