"""The `mnist` command line: parse, call the library, print.

Heavy imports (Keras, TensorFlow, JAX, matplotlib, scikit-learn) happen inside the commands
that need them, after the backend is chosen, so `mnist --help` and config checks are instant.
Library errors (`MnistCliError`) become one `Error: ...` line and their exit code.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal

import click

from mnist_cli import __version__, choices
from mnist_cli.errors import (
    ConfigError,
    Interrupted,
    MnistCliError,
    UsageError,
    describe_error,
)
from mnist_cli.terminal import Output, say_error

# A command sets ctx.meta[SHOW_TRACEBACKS] = True (`mnist train --verbose`) to let an
# unexpected exception through with its traceback; so does the environment variable.
SHOW_TRACEBACKS = "mnist_cli.show_tracebacks"
TRACEBACK_VARIABLE = "MNIST_CLI_TRACEBACK"


class _Command(click.Command):
    """A command whose line in `mnist --help` is its docstring's first sentence, whole."""

    def get_short_help_str(self, limit: int = 45) -> str:
        first_paragraph = (self.help or "").strip().split("\n\n")[0]
        return " ".join(first_paragraph.split())


class _RunPath(click.Path):
    """A run directory (or model file) path; `latest` names the newest run under outputs/."""

    def convert(self, value, parameter, context):
        from mnist_cli.catalog import resolve_run

        return str(resolve_run(value)) if value == "latest" else super().convert(
            value, parameter, context)


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


@cli.command()
@click.argument("config_argument", required=False, metavar="[CONFIG]",
                type=click.Path(dir_okay=False))
@click.option("--config", "-c", "config_path", type=click.Path(dir_okay=False),
              help="YAML config of the experiment (defaults are used for missing keys); "
                   "the same as giving CONFIG.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
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
@click.option("--resume", "resume_dir", type=_RunPath(), metavar="RUN_DIR",
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


# --------------------------------------------------------------------------------------------
# Inspecting runs: evaluate, show-errors, predict, runs, compare

_BACKEND_OPTION = click.option(
    "--backend", type=click.Choice(choices.BACKENDS),
    help="Keras backend to load the model with (default: the one the run was trained on).")
_CONFIG_OPTION = click.option(
    "--config", "-c", "config_path", type=click.Path(dir_okay=False),
    help="Config the model was trained with; needed for a bare .keras file (default: the "
         "run's config.yaml).")


def _locate_and_start(model_path: str, config_path: str | None, backend: str | None):
    """Find the model and its config, then start Keras on the run's backend (or --backend)."""
    from mnist_cli import runtime
    from mnist_cli.inspection.source import locate_model

    source = locate_model(model_path, config_path)
    runtime.start(backend or source.config.runtime.backend)
    return source


@cli.command()
@click.argument("model_path", metavar="RUN_DIR|MODEL.keras", type=_RunPath())
@_CONFIG_OPTION
@click.option("--split", type=click.Choice(choices.SPLITS), default="test",
              show_default=True, help="Which part of the run's data to evaluate on.")
@click.option("--data", "data_path", type=click.Path(),
              help="Another copy of the dataset (.npz or IDX folder) instead of the run's.")
@click.option("--out", "output_folder", type=click.Path(file_okay=False),
              help="Folder for evaluation.json and confusion_matrix.png (default: the run "
                   "directory, or the model file's folder).")
@click.option("--predictions", "predictions_path", type=click.Path(dir_okay=False),
              metavar="FILE", help="Also save every sample's prediction as CSV (index, true, "
                                   "predicted, probability, true_probability, top_3).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@_BACKEND_OPTION
def evaluate(model_path, config_path, split, data_path, output_folder, predictions_path,
             as_json, backend) -> None:
    """Measure a trained model: loss, accuracy, per-digit precision/recall/F1, confusion matrix.

    Reloads the data the run used (from its config.yaml) and writes evaluation.json and
    confusion_matrix.png into the run directory (evaluation-val.json ... for --split val).
    On the run's own test set the numbers are checked against the training's metrics.json.

    \b
    Example:
      mnist evaluate outputs/keras-784-500-10-20250101-120000
      mnist evaluate latest
      mnist evaluate outputs/my-run --split val --predictions val-predictions.csv
      mnist evaluate saved/model.keras --config configs/keras-784-500-10.yaml --data mnist.npz
    """
    source = _locate_and_start(model_path, config_path, backend)
    from mnist_cli.atomic_files import json_text
    from mnist_cli.inspection.evaluation import evaluate_model, format_evaluation

    evaluation = evaluate_model(source, split, data_path, output_folder, predictions_path)
    if as_json:
        click.echo(json_text(evaluation.report))
        return
    click.echo(format_evaluation(evaluation.report))
    click.echo("")
    click.echo("Wrote " + ", ".join(str(path) for path in evaluation.written))
    if predictions_path is not None and split != "test":
        words = {"val": "validation", "train": "training"}[split]
        click.echo(f"(In {predictions_path}, index is the row in this run's {words} set, "
                   f"0 to {len(evaluation.labels) - 1}, not a position in the dataset.)")


@cli.command("show-errors")
@click.argument("model_path", metavar="RUN_DIR|MODEL.keras", type=_RunPath())
@_CONFIG_OPTION
@click.option("--limit", type=click.IntRange(min=1), default=30, show_default=True,
              help="How many digits to draw (errors.csv lists them all).")
@click.option("--per-row", type=click.IntRange(min=1), default=10, show_default=True,
              help="Digits per row of the grid.")
@click.option("--sort", type=click.Choice(choices.ERROR_SORT_KEYS), default="index",
              show_default=True,
              help="index: test-set order; confidence: most confidently wrong first.")
@click.option("--true", "true_digit", type=click.IntRange(0, 9), metavar="D",
              help="Only digits whose true label is D.")
@click.option("--pred", "predicted_digit", type=click.IntRange(0, 9), metavar="D",
              help="Only digits the model took for D.")
@click.option("--out", type=click.Path(dir_okay=False),
              help="The PNG to write; errors.csv goes beside it with the same name "
                   "(default: errors.png in the run directory, or errors-true4-pred9.png ... "
                   "for a filtered view).")
@click.option("--data", "data_path", type=click.Path(),
              help="Another copy of the dataset (.npz or IDX folder) instead of the run's.")
@_BACKEND_OPTION
def show_errors(model_path, config_path, limit, per_row, sort, true_digit, predicted_digit,
                out, data_path, backend) -> None:
    """Draw the misclassified test digits of a run, captioned true → predicted (probability).

    Also writes a CSV of every selected error: index in the test set, true and predicted
    digit, probability of the prediction and of the true digit, and the top 3.

    \b
    Example:
      mnist show-errors outputs/keras-784-500-10-20250101-120000
      mnist show-errors outputs/my-run --sort confidence --limit 20
      mnist show-errors outputs/my-run --true 4 --pred 9 --out fours-as-nines.png
    """
    source = _locate_and_start(model_path, config_path, backend)
    from mnist_cli.inspection.misclassified import show_errors as find_and_draw_errors

    result = find_and_draw_errors(source, limit, per_row, sort, true_digit, predicted_digit,
                                  out, data_path)
    if result.selected == 0:
        if result.total_errors == 0:
            click.echo("No misclassified test digits: the model classifies every one correctly.")
        else:
            click.echo(f"No misclassified test digits match the filter "
                       f"({result.total_errors} errors in all); nothing written.")
        return
    digits = "digit" if result.selected == 1 else "digits"
    errors = "error" if result.total_errors == 1 else "errors"
    click.echo(f"{result.selected} misclassified test {digits} selected "
               f"({result.total_errors} {errors} in all); {result.shown} drawn.")
    click.echo(f"Wrote {result.picture} and {result.table}")


@cli.command()
@click.argument("model_path", metavar="RUN_DIR|MODEL.keras", type=_RunPath())
@click.argument("images", nargs=-1, required=True, type=click.Path())
@_CONFIG_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the predictions as JSON.")
@click.option("--save-preprocessed", type=click.Path(file_okay=False), metavar="DIR",
              help="Save the 28x28 image actually fed to the network for each input, as "
                   "DIR/<name>-preprocessed.png.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), metavar="FILE",
              help="Also draw each image, its network input and the probability of every "
                   "digit into a PNG.")
@_BACKEND_OPTION
def predict(model_path, images, config_path, as_json, save_preprocessed, plot_path,
            backend) -> None:
    """Classify your own digit images (PNG, JPEG, ...; any size; dark on light or light on dark).

    Each image is prepared the way MNIST was made (grey levels, ink made light on black,
    cropped, fitted into 20x20, centred by centre of mass in 28x28), then with the run's own
    preprocessing (scaling, binarizing). Prints the 3 most probable digits per image. An
    image that cannot be read is reported and the others are still classified; the exit
    code is then 1.

    \b
    Example:
      mnist predict outputs/keras-784-500-10-20250101-120000 my-digit.png
      mnist predict outputs/my-run photos/*.jpg --json
      mnist predict outputs/my-run seven.png --save-preprocessed preprocessed/
      mnist predict outputs/my-run digits/*.png --plot predictions.png
    """
    from mnist_cli.plots import require_png

    if plot_path is not None:
        require_png(plot_path, "--plot")
    source = _locate_and_start(model_path, config_path, backend)
    from mnist_cli.inspection.prediction import format_prediction, predict_images

    results = predict_images(source, images, save_preprocessed)
    failures = [result for result in results if result.error is not None]
    if as_json:
        import json

        click.echo(json.dumps([result.to_dict() for result in results], indent=2))
    else:
        width = max(len(str(result.image)) for result in results)
        for result in results:
            if result.error is None:
                click.echo(format_prediction(
                    result, width, source.config.model.outputs_probabilities))
    if plot_path is not None and len(failures) < len(results):
        from mnist_cli.inspection.prediction import write_predictions_figure

        written = write_predictions_figure(results, plot_path, source.name)
        if not as_json:
            click.echo(f"Wrote {written}")
    for result in failures:
        click.echo(f"Error: {result.error}", err=True)
    if failures:
        raise click.exceptions.Exit(1)


@cli.command()
@click.argument("run_dir", type=click.Path(), metavar="RUN_DIR")
@click.option("--format", "format_name", type=click.Choice(choices.EXPORT_FORMATS),
              required=True, help="onnx (run with onnxruntime), saved_model (TensorFlow) or "
                                  "litert (phones, the LiteRT interpreter).")
@click.option("--out", type=click.Path(), metavar="PATH",
              help="Where the file (a folder for saved_model) goes; MODEL.md goes beside it "
                   "(default: RUN_DIR/export/FORMAT/).")
@click.option("--raw", is_flag=True,
              help="Export the bare network, which takes the run's preprocessed features, "
                   "instead of 28x28 uint8 pixels.")
@click.option("--data", "data_path", type=click.Path(),
              help="Another copy of the dataset (.npz or IDX folder) for the check.")
@click.option("--tolerance", type=click.FloatRange(min=0.0), default=1e-5, show_default=True,
              help="Largest difference allowed between the file's and Keras's probabilities.")
@click.option("--json", "as_json", is_flag=True, help="Print what was written and checked as JSON.")
def export(run_dir, format_name, out, raw, data_path, tolerance, as_json) -> None:
    """Export a finished run's network to use it outside mnist-cli, checked before it is kept.

    The exported model takes 28x28 uint8 pixels, batch first, and does the run's own
    preprocessing (scaling or binarizing, flattening) inside. The file is run with its own
    runtime on the run's test digits and kept only if it predicts the same digit as the
    Keras model on every one, with probabilities within 1e-5 (--tolerance). MODEL.md beside
    it says how to use it.

    \b
    Example:
      mnist export outputs/keras-784-500-10-20250101-120000 --format onnx
      mnist export outputs/my-run --format litert --out phone/digits.tflite
      mnist export outputs/my-run --format saved_model --raw
    """
    from mnist_cli import runtime
    from mnist_cli.export.formats import FORMATS, export_backend
    from mnist_cli.inspection.source import locate_model
    from mnist_cli.runs import open_run_dir

    source = locate_model(open_run_dir(run_dir).path)
    runtime.start(export_backend(format_name))
    from mnist_cli.export.exporting import export_run

    result = export_run(source, format_name, out, raw, data_path, tolerance)
    if as_json:
        from mnist_cli.atomic_files import json_text

        click.echo(json_text(result.to_dict()))
        return
    agreement = result.agreement
    click.echo(f"Exported {result.path} ({result.size_bytes / 1e6:.2f} MB) in "
               f"{result.export_seconds:.1f} s")
    click.echo(f"  input  {result.input.name} {result.input.shape_text()} {result.input.dtype}"
               f"; output {result.output.name} {result.output.shape_text()} "
               f"{result.output.dtype}")
    click.echo(f"Checked with {FORMATS[format_name].runtime} on {agreement.digits} test digits: "
               f"same digit as Keras on {agreement.same_prediction}, outputs within "
               f"{agreement.max_difference:.1e}, accuracy {agreement.accuracy:.4f} "
               f"({result.check_seconds:.1f} s)")
    click.echo(f"Wrote {result.model_card}")


@cli.command()
@click.argument("output_root", default="outputs", type=click.Path())
@click.option("--sort", type=click.Choice(choices.RUN_SORT_KEYS), default="date",
              show_default=True, help="date: oldest first; accuracy: best test accuracy first.")
@click.option("--json", "as_json", is_flag=True, help="Print the runs as JSON.")
def runs(output_root, sort, as_json) -> None:
    """List the runs under an output root: layers, optimizer, epochs, test accuracy, time.

    Runs still training or interrupted are listed with what is missing; folders that are
    not runs are counted and skipped.

    \b
    Example:
      mnist runs
      mnist runs outputs --sort accuracy
    """
    from mnist_cli.catalog import find_runs, format_runs_table, sort_runs

    found, skipped = find_runs(output_root)
    found = sort_runs(found, sort)
    if as_json:
        import json

        click.echo(json.dumps([run.to_dict() for run in found], indent=2))
        return
    if not found:
        click.echo(f"No runs in {output_root}.")
    else:
        click.echo(format_runs_table(found))
    if skipped:
        names = ", ".join(path.name for path in skipped[:5]) + (", ..." if len(skipped) > 5
                                                                else "")
        click.echo(f"({len(skipped)} folder{'s' if len(skipped) != 1 else ''} without "
                   f"config.yaml skipped: {names})")


@cli.command()
@click.argument("run_dirs", nargs=-1, required=True, type=_RunPath(), metavar="RUN_DIR...")
@click.option("--out", default="comparison.png", show_default=True,
              type=click.Path(dir_okay=False), help="The PNG to write.")
def compare(run_dirs, out) -> None:
    """Draw the learning curves of several runs in one picture (loss and accuracy, training
    and validation, one colour per run).

    \b
    Example:
      mnist compare outputs/keras-784-500-10-20250101-120000 outputs/quickstart-20250101-130000
      mnist compare outputs/* --out all-runs.png
    """
    from mnist_cli.catalog import compare_runs, format_runs_table

    summaries, skipped = compare_runs(list(run_dirs), out)
    click.echo(format_runs_table(summaries))
    if skipped:
        click.echo(f"(skipped, not a run with a recorded epoch: "
                   f"{', '.join(path.name for path in skipped)})")
    click.echo(f"Wrote {out}")


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
    from mnist_cli import runtime

    registry = RunRegistry(output_root, list(run_dirs))
    runs = registry.check_not_empty()
    listener = bind_socket(host, port)  # a port in use is reported before Keras starts
    runtime.start(backend)
    # Load the newest run and run one blank digit through it now, so that the first
    # drawing on the page is answered as fast as the others.
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


# --------------------------------------------------------------------------------------------
# Many runs: sweep


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
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
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


def main() -> None:
    cli(prog_name="mnist")


if __name__ == "__main__":
    main()
