"""The commands that read finished runs: evaluate, ensemble, show-errors, predict, export,
runs, compare. The library functions they call start Keras themselves, on the run's own
backend (or --backend), once a model is loaded."""

from __future__ import annotations

import click

from mnist_cli import choices
from mnist_cli.cli.group import RunPath, cli
from mnist_cli.terminal import progress_on_stderr

_BACKEND_OPTION = click.option(
    "--backend", type=click.Choice(choices.BACKENDS),
    help="Keras backend to load the model with (default: the one the run was trained on).")
_CONFIG_OPTION = click.option(
    "--config", "-c", "config_path", type=click.Path(dir_okay=False),
    help="Config the model was trained with; needed for a bare .keras file (default: the "
         "run's config.yaml).")


def _locate(model_path: str, config_path: str | None, backend: str | None):
    """The model and its config, checked before Keras starts."""
    from mnist_cli.inspection.source import locate_model

    return locate_model(model_path, config_path, backend)


@cli.command()
@click.argument("model_path", metavar="RUN_DIR|MODEL.keras", type=RunPath())
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
    source = _locate(model_path, config_path, backend)
    from mnist_cli.atomic_files import json_text
    from mnist_cli.inspection.evaluation import evaluate_model, format_evaluation

    evaluation = evaluate_model(source, split, data_path, output_folder, predictions_path,
                                progress_on_stderr("evaluating", minimum=20000))
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


@cli.command()
@click.argument("run_paths", metavar="RUN_DIR RUN_DIR...", nargs=-1, required=True,
                type=RunPath())
@click.option("--out", "output_folder", type=click.Path(file_okay=False),
              help="Folder for ensemble.json, confusion_matrix.png and errors.png (default: "
                   "a new ensemble-<timestamp> folder beside the first run).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@_BACKEND_OPTION
def ensemble(run_paths, output_folder, as_json, backend) -> None:
    """Score a committee of runs: the mean of their predicted probabilities on their test set.

    Reports what `evaluate` reports (accuracy, loss, per-digit table, confusion matrix) for
    the committee, with each member's own accuracy beside it, and draws the committee's
    mistakes in errors.png. The runs must share the test set and the preprocessing.

    \b
    Example:
      mnist ensemble outputs/dense-augmented-20250101-120000 outputs/dense-augmented-20250102-090000
      mnist ensemble outputs/a outputs/b outputs/c --out committee-abc
    """
    from mnist_cli.atomic_files import json_text
    from mnist_cli.inspection.ensemble import evaluate_committee, format_members
    from mnist_cli.inspection.evaluation import format_evaluation
    from mnist_cli.inspection.source import locate_model

    sources = [locate_model(path, backend=backend) for path in run_paths]
    committee = evaluate_committee(sources, output_folder)
    if as_json:
        click.echo(json_text(committee.report))
        return
    click.echo(format_evaluation(committee.report))
    click.echo(format_members(committee.report))
    click.echo("")
    click.echo("Wrote " + ", ".join(str(path) for path in committee.written))


@cli.command("show-errors")
@click.argument("model_path", metavar="RUN_DIR|MODEL.keras", type=RunPath())
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
    source = _locate(model_path, config_path, backend)
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
@click.argument("model_path", metavar="RUN_DIR|MODEL.keras", type=RunPath())
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
    source = _locate(model_path, config_path, backend)
    from mnist_cli.inspection.prediction import format_prediction, predict_images

    results = predict_images(source, images, save_preprocessed,
                             progress_on_stderr("reading images"))
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
        from mnist_cli.artifacts import score_word
        from mnist_cli.inspection.prediction import write_predictions_figure

        written = write_predictions_figure(results, plot_path, source.name,
                                           score_word(source.config))
        if not as_json:
            click.echo(f"Wrote {written}")
    for result in failures:
        click.echo(f"Error: {result.error}", err=True)
    if failures:
        raise click.exceptions.Exit(1)


@cli.command()
@click.argument("run_dir", type=RunPath(), metavar="RUN_DIR")
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
      mnist export latest --format onnx
      mnist export outputs/my-run --format litert --out phone/digits.tflite
      mnist export outputs/my-run --format saved_model --raw
    """
    from mnist_cli.export.exporting import export_run
    from mnist_cli.export.formats import FORMATS
    from mnist_cli.inspection.source import locate_model
    from mnist_cli.runs import open_run_dir

    source = locate_model(open_run_dir(run_dir).path)

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
    from mnist_cli.catalog import find_runs, format_runs_table, sort_runs, test_sets_note

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
        note = test_sets_note(found) if sort == "accuracy" else None
        if note:
            click.echo(note)
    if skipped:
        names = ", ".join(path.name for path in skipped[:5]) + (", ..." if len(skipped) > 5
                                                                else "")
        click.echo(f"({len(skipped)} folder{'s' if len(skipped) != 1 else ''} without "
                   f"config.yaml skipped: {names})")


@cli.command()
@click.argument("run_dirs", nargs=-1, required=True, type=RunPath(), metavar="RUN_DIR...")
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

    summaries, skipped = compare_runs(list(run_dirs), out, progress_on_stderr("reading runs"))
    click.echo(format_runs_table(summaries))
    if skipped:
        click.echo(f"(skipped, not a run with a recorded epoch: "
                   f"{', '.join(path.name for path in skipped)})")
    click.echo(f"Wrote {out}")
