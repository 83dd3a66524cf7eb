"""TensorBoard logs: what a run writes, read back with TensorBoard's own reader (its
`EventAccumulator` over the run directory, what `tensorboard --logdir` shows), in a
subprocess because it imports TensorFlow where TensorFlow is installed. (tbparse reads each
event file on its own, so it does not apply a resumed writer's purge of the steps before
it.) One value per epoch per metric, equal to history.csv, also after a resume, including
one that throws away an epoch trained but never checkpointed.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import stop_after_epoch, write_tiny_config

from mnist_cli.cli import cli
from mnist_cli.runs import read_history
from mnist_cli.training import interrupt, tensorboard
from mnist_cli.training.checkpoints import Checkpointer

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("tensorboardX") is None
    or importlib.util.find_spec("tensorboard") is None,
    reason='needs tensorboardX and tensorboard: pip install "mnist-cli[tensorboard,dev]"')

EPOCHS = 5
METRICS = ("train/loss", "train/accuracy", "validation/loss", "validation/accuracy",
           "epoch/learning_rate")
READER = r"""
import json, sys
from google.protobuf import json_format
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.hparams import plugin_data_pb2

everything = {kind: 0 for kind in (event_accumulator.SCALARS, event_accumulator.HISTOGRAMS,
                                   event_accumulator.IMAGES, event_accumulator.TENSORS)}
reader = event_accumulator.EventAccumulator(sys.argv[1], size_guidance=everything)
reader.Reload()
tags = reader.Tags()
scalars = {tag: [[event.step, event.value] for event in reader.Scalars(tag)]
           for tag in tags["scalars"]}
histograms = sorted([tag, event.step] for tag in tags["histograms"]
                    for event in reader.Histograms(tag))
images = sorted([tag, event.step] for tag in tags["images"] for event in reader.Images(tag))
hparams = {}
for content in reader.PluginTagToContent("hparams").values():
    data = plugin_data_pb2.HParamsPluginData.FromString(content)
    if data.HasField("session_start_info"):
        hparams = json_format.MessageToDict(data.session_start_info)["hparams"]
print("RESULT " + json.dumps({"scalars": scalars, "histograms": histograms, "images": images,
                              "hparams": {key: str(value) for key, value in hparams.items()}}))
"""


def read_events(run_dir: Path) -> dict:
    ran = subprocess.run([sys.executable, "-c", READER, str(run_dir)], capture_output=True,
                         text=True, timeout=300, check=False)
    assert ran.returncode == 0, ran.stderr[-3000:]
    return json.loads(ran.stdout.split("RESULT ", 1)[1])


def config_file(folder: Path, mnist_path: Path, **train) -> Path:
    return write_tiny_config(folder / "tensorboard.yaml", mnist_path, folder / "outputs",
                             name="tensorboard",
                             train={"epochs": EPOCHS, "batch_size": 128, **train})


def only_run(output_root: Path) -> Path:
    (run_dir,) = output_root.iterdir()
    return run_dir


def assert_one_value_per_epoch(events: dict, run_dir: Path) -> None:
    history = read_history(run_dir / "history.csv")
    assert len(history) == EPOCHS
    for tag, column in zip(METRICS, ("loss", "accuracy", "val_loss", "val_accuracy",
                                     "learning_rate")):
        steps = [step for step, _ in events["scalars"][tag]]
        assert steps == list(range(1, EPOCHS + 1)), (tag, steps)
        values = [value for _, value in events["scalars"][tag]]
        assert values == pytest.approx([row[column] for row in history], rel=1e-6), tag


def steps_by_tag(records: list) -> dict[str, list[int]]:
    steps: dict[str, list[int]] = {}
    for tag, step in records:
        steps.setdefault(tag, []).append(step)
    return steps


@pytest.mark.slow
def test_a_run_logs_its_epochs_histograms_error_grid_and_hyperparameters(tmp_path, mnist_path):
    config = config_file(tmp_path, mnist_path, histogram_every=2)
    result = CliRunner().invoke(cli, ["train", "-c", str(config)])
    assert result.exit_code == 0, result.output
    run_dir = only_run(tmp_path / "outputs")
    events = read_events(run_dir)
    assert_one_value_per_epoch(events, run_dir)

    # Weights and gradients of both Dense layers at epochs 1, 2 and 4 (every 2nd), and 5
    # (the last).
    histogram_steps = steps_by_tag(events["histograms"])
    layers = {tag.split("/", 1)[1] for tag in histogram_steps}
    assert len(layers) == 4  # kernel and bias of two layers
    for layer in layers:
        assert histogram_steps[f"weights/{layer}"] == [1, 2, 4, 5]
        assert histogram_steps[f"gradients/{layer}"] == [1, 2, 4, 5]
        norms = events["scalars"][f"gradient_norm/{layer}"]
        assert [step for step, _ in norms] == [1, 2, 4, 5]
        assert all(norm > 0 for _, norm in norms)

    assert events["images"] == [["errors", EPOCHS]]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    ((step, accuracy),) = events["scalars"]["final/test_accuracy"]  # float32 in the file
    assert step == EPOCHS and accuracy == pytest.approx(metrics["test_accuracy"], rel=1e-6)
    hparams = events["hparams"]
    assert hparams["model.layers"] == "784-32-10"
    assert float(hparams["train.batch_size"]) == 128
    assert hparams["runtime.backend"] in ("jax", "tensorflow", "torch")  # resolved, not auto


@pytest.mark.slow
def test_a_resumed_run_continues_the_curves_without_duplicate_steps(tmp_path, mnist_path,
                                                                    monkeypatch):
    """Stopped after epoch 2, then (resumed) killed so that epoch 4 is logged but never
    checkpointed; the second resume trains epoch 4 again and its first values are dropped."""
    config = config_file(tmp_path, mnist_path)
    runner = CliRunner()
    original_save = stop_after_epoch(monkeypatch, 1)
    result = runner.invoke(cli, ["train", "-c", str(config)])
    assert result.exit_code == 130, result.output
    monkeypatch.undo()
    run_dir = only_run(tmp_path / "outputs")

    def stop_in_epoch_4_before_its_checkpoint(self, epoch):
        if epoch == 3:  # epoch 4 is in history.csv and the events, not in the checkpoint
            interrupt.request_stop()
            return
        original_save(self, epoch)

    monkeypatch.setattr(Checkpointer, "save_epoch", stop_in_epoch_4_before_its_checkpoint)
    result = runner.invoke(cli, ["train", "--resume", str(run_dir)])
    assert result.exit_code == 130, result.output
    assert "with epochs 1-3 of 5 saved" in result.output
    monkeypatch.undo()

    result = runner.invoke(cli, ["train", "--resume", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 3  # one per process
    events = read_events(run_dir)
    assert_one_value_per_epoch(events, run_dir)
    # By default (histogram_every: 0) the final weights only, after training: no gradients.
    histogram_steps = steps_by_tag(events["histograms"])
    assert histogram_steps and all(tag.startswith("weights/") for tag in histogram_steps)
    assert all(steps == [EPOCHS] for steps in histogram_steps.values())


def test_tensorboard_false_writes_no_events_and_a_missing_tensorboardx_is_a_note(
        tmp_path, mnist_path, monkeypatch):
    result = CliRunner().invoke(cli, ["train", "-c", str(config_file(tmp_path, mnist_path)),
                                      "--epochs", "1", "--set", "train.tensorboard=false"])
    assert result.exit_code == 0, result.output
    run_dir = only_run(tmp_path / "outputs")
    assert not list(run_dir.glob("events.out.tfevents.*"))
    assert "tensorboard: false" in (run_dir / "config.yaml").read_text()

    monkeypatch.setattr(tensorboard, "tensorboardx_installed", lambda: False)
    result = CliRunner().invoke(cli, ["train", "-c", str(config_file(tmp_path, mnist_path)),
                                      "--epochs", "1", "--out", str(tmp_path / "without")])
    assert result.exit_code == 0, result.output
    assert ("Note: no TensorBoard log (tensorboardX is not installed: "
            'pip install "mnist-cli[tensorboard]"); training goes on without it') in result.output
    run_dir = only_run(tmp_path / "without")
    assert (run_dir / "metrics.json").is_file()
    assert not list(run_dir.glob("events.out.tfevents.*"))
