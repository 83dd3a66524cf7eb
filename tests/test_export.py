"""`mnist export`: each format is written, loaded back with its own runtime, fed the test
digits as uint8 pixels, and must predict what `mnist evaluate --predictions` predicts; a run
that is damaged or unfinished, or an export that does not compute what Keras does, leaves
no file behind.

ONNX is exported and run in this process (JAX backend, onnxruntime). SavedModel and LiteRT
need TensorFlow, which runs in a subprocess to keep this process light.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import write_tiny_config

from mnist_cli.cli import cli
from mnist_cli.export import exporting, formats

PROJECT = Path(__file__).resolve().parents[1]
TEST_DIGITS = 500  # the tiny runs' test subset: the first 500 test digits


def installed(*modules: str) -> bool:
    return all(importlib.util.find_spec(module) is not None for module in modules)


needs_onnx = pytest.mark.skipif(
    not installed("jax", "jax2onnx", "onnx", "onnxruntime"),
    reason='ONNX export needs the jax and export extras: pip install "mnist-cli[jax,export]"')


def train_run(folder: Path, mnist_path: Path, name: str, data: dict) -> Path:
    config = write_tiny_config(folder / f"{name}.yaml", mnist_path, folder / name, name=name,
                               data=data, train={"epochs": 1, "tensorboard": False})
    result = CliRunner().invoke(cli, ["train", "-c", str(config)])
    assert result.exit_code == 0, result.output
    (run_dir,) = (folder / name).iterdir()
    return run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, mnist_path: Path) -> dict[str, Path]:
    """Two finished tiny runs: binarized pixels (threshold 0.3) and pixels scaled by 1/255."""
    folder = tmp_path_factory.mktemp("export")
    return {
        "binarized": train_run(folder, mnist_path, "binarized",
                               {"binarize": True, "binarize_threshold": 0.3}),
        "scaled": train_run(folder, mnist_path, "scaled", {"scale": True}),
    }


@pytest.fixture(scope="module")
def test_pixels(mnist_path: Path) -> np.ndarray:
    """The uint8 test digits straight from the dataset file: what a user of the file has."""
    with np.load(mnist_path) as data:
        return np.ascontiguousarray(data["x_test"][:TEST_DIGITS])


def evaluate_predictions(run_dir: Path) -> np.ndarray:
    """The digits `mnist evaluate --predictions` predicts for the run's test set."""
    csv_path = run_dir / "predictions.csv"
    if not csv_path.is_file():
        result = CliRunner().invoke(cli, ["evaluate", str(run_dir), "--predictions",
                                          str(csv_path)])
        assert result.exit_code == 0, result.output
    with open(csv_path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["index"]) for row in rows] == list(range(TEST_DIGITS))
    return np.array([int(row["predicted"]) for row in rows])


def export(run_dir: Path, *arguments: str):
    return CliRunner().invoke(cli, ["export", str(run_dir), *arguments])


@needs_onnx
@pytest.mark.parametrize("kind", ["binarized", "scaled"])
def test_onnx_takes_uint8_pixels_and_predicts_what_evaluate_predicts(kind, runs, test_pixels):
    import onnxruntime

    run_dir = runs[kind]
    result = export(run_dir, "--format", "onnx")
    assert result.exit_code == 0, result.output
    path = run_dir / "export" / "onnx" / "model.onnx"
    assert f"Exported {path}" in result.output
    assert f"on {TEST_DIGITS} test digits: same digit as Keras on {TEST_DIGITS}" in result.output

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (given,), (returned,) = session.get_inputs(), session.get_outputs()
    assert (given.name, given.type, given.shape[1:]) == ("pixels", "tensor(uint8)", [28, 28])
    assert (returned.name, returned.type) == ("probabilities", "tensor(float)")
    probabilities = session.run(None, {"pixels": test_pixels})[0]
    assert probabilities.shape == (TEST_DIGITS, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert (probabilities.argmax(axis=1) == evaluate_predictions(run_dir)).all()
    # Any batch size: one digit alone gets the probabilities it got in the batch.
    alone = session.run(None, {"pixels": test_pixels[7:8]})[0]
    np.testing.assert_allclose(alone[0], probabilities[7], atol=1e-6)

    card = (path.parent / "MODEL.md").read_text()
    assert "| input | `pixels` | (batch, 28, 28) | uint8 |" in card
    assert "| output | `probabilities` | (batch, 10) | float32 |" in card
    if kind == "binarized":
        assert "pixel / 255 > 0.3 (uint8 value 77 or more)" in card
    else:
        assert "divided by 255" in card


@needs_onnx
def test_onnx_raw_takes_the_features_and_the_example_in_model_md_runs(runs, test_pixels):
    run_dir = runs["scaled"]
    out = run_dir.parent / "elsewhere" / "digits-raw.onnx"
    out.parent.mkdir()
    result = export(run_dir, "--format", "onnx", "--raw", "--out", str(out))
    assert result.exit_code == 0, result.output
    import onnxruntime

    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (given,) = session.get_inputs()
    assert (given.name, given.type, given.shape[1:]) == ("features", "tensor(float)", [784])
    features = (test_pixels.reshape(-1, 784) / np.float32(255)).astype(np.float32)
    predicted = session.run(None, {"features": features})[0].argmax(axis=1)
    assert (predicted == evaluate_predictions(run_dir)).all()

    # The Python example of MODEL.md, run as written from the file's folder.
    card = (out.parent / "MODEL.md").read_text()
    example = card.split("```python\n")[1].split("```")[0]
    assert 'InferenceSession("digits-raw.onnx")' in example
    ran = subprocess.run([sys.executable, "-c", example], cwd=out.parent, capture_output=True,
                         text=True, timeout=120, check=False)
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert ran.stdout.strip().startswith("[") and ran.stdout.strip()[1].isdigit()


@needs_onnx
def test_an_export_that_disagrees_with_keras_is_an_error_and_leaves_nothing(
        runs, monkeypatch, tmp_path):
    run_dir = runs["binarized"]
    out = tmp_path / "model.onnx"
    out.write_bytes(b"an earlier export")
    real_run = formats.LoadedExport.run

    def slightly_off(self, batch):
        outputs = real_run(self, batch)
        outputs[3] += 1e-4  # one digit's probabilities, too far from Keras's
        return outputs

    monkeypatch.setattr(formats.LoadedExport, "run", slightly_off)
    result = export(run_dir, "--format", "onnx", "--out", str(out))
    assert result.exit_code == 1
    error = result.output.strip().splitlines()[-1]
    assert error.startswith("Error: the exported onnx file does not compute what the Keras "
                            "model does")
    assert "outputs up to 0.0001 apart" in error and "Traceback" not in result.output
    assert out.read_bytes() == b"an earlier export"  # replaced only by a checked file
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model.onnx"]

    # Into folders that did not exist: they are removed again.
    result = export(run_dir, "--format", "onnx", "--out", str(tmp_path / "new" / "model.onnx"))
    assert result.exit_code == 1 and "--tolerance" in result.output
    assert not (tmp_path / "new").exists()
    # A looser tolerance, asked for, lets the same file through.
    result = export(run_dir, "--format", "onnx", "--out", str(tmp_path / "new" / "model.onnx"),
                    "--tolerance", "1e-3")
    assert result.exit_code == 0, result.output
    assert "(allowed:\n0.001)" in (tmp_path / "new" / "MODEL.md").read_text()


def test_unfinished_and_damaged_runs_are_errors_that_write_nothing(runs, tmp_path):
    source = runs["binarized"]
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.yaml").write_text((source / "config.yaml").read_text())
    result = export(unfinished, "--format", "onnx")
    assert result.exit_code == 1
    assert "has no model.keras yet" in result.output

    # model.keras written, metrics.json not: killed at the very end of training.
    (unfinished / "model.keras").write_bytes((source / "model.keras").read_bytes())
    result = export(unfinished, "--format", "onnx")
    assert result.exit_code == 1
    assert "has no metrics.json (training has not finished" in result.output

    damaged = tmp_path / "damaged"
    damaged.mkdir()
    for name in ("config.yaml", "metrics.json"):
        (damaged / name).write_text((source / name).read_text())
    (damaged / "model.keras").write_bytes((source / "model.keras").read_bytes()[:5000])
    result = export(damaged, "--format", "onnx")
    assert result.exit_code == 1
    assert "is not a Keras model that can be loaded" in result.output

    result = export(tmp_path / "missing", "--format", "onnx")
    assert result.exit_code == 1 and "no such run directory" in result.output
    for folder in (unfinished, damaged):
        assert not (folder / "export").exists()
        assert "Traceback" not in result.output


def test_a_missing_package_is_named_before_any_work(runs, monkeypatch):
    before = sorted(runs["scaled"].rglob("*"))
    real_installed = formats._installed
    monkeypatch.setattr(formats, "_installed",
                        lambda module: module != "onnxruntime" and real_installed(module))
    result = export(runs["scaled"], "--format", "onnx")
    assert result.exit_code == 1
    assert "onnxruntime, which runs the file to check it" in result.output
    assert 'pip install "mnist-cli[export]"' in result.output
    assert sorted(runs["scaled"].rglob("*")) == before


# SavedModel and LiteRT: export and load back in one TensorFlow subprocess.
TENSORFLOW_SCRIPT = r"""
import json, sys
import numpy as np
from click.testing import CliRunner
from mnist_cli.cli import cli

run_dir, pixels_path = sys.argv[1], sys.argv[2]
pixels = np.load(pixels_path)
found = {}
for format_name in ("saved_model", "litert"):
    result = CliRunner().invoke(cli, ["export", run_dir, "--format", format_name])
    assert result.exit_code == 0, result.output
    found[format_name + "_output"] = result.output
import tensorflow as tf
serve = tf.saved_model.load(run_dir + "/export/saved_model/saved_model").signatures[
    "serving_default"]
(output_name,) = serve.structured_outputs
found["saved_model"] = serve(pixels=tf.constant(pixels))[output_name].numpy().argmax(1).tolist()
from ai_edge_litert.interpreter import Interpreter
interpreter = Interpreter(model_path=run_dir + "/export/litert/model.tflite")
given, returned = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
found["litert_input"] = [str(np.dtype(given["dtype"])), given["shape_signature"].tolist()]
interpreter.resize_tensor_input(given["index"], list(pixels.shape))
interpreter.allocate_tensors()
interpreter.set_tensor(given["index"], pixels)
interpreter.invoke()
found["litert"] = interpreter.get_tensor(returned["index"]).argmax(1).tolist()
print("RESULT " + json.dumps(found))
"""


@pytest.mark.slow
@pytest.mark.skipif(not installed("tensorflow", "ai_edge_litert"),
                    reason='SavedModel and LiteRT need TensorFlow and ai-edge-litert: '
                           'pip install "mnist-cli[export]"')
def test_saved_model_and_litert_take_uint8_pixels_and_predict_what_evaluate_predicts(
        runs, test_pixels, tmp_path):
    run_dir = runs["binarized"]
    pixels_path = tmp_path / "pixels.npy"
    np.save(pixels_path, test_pixels)
    environment = {key: value for key, value in os.environ.items() if key != "KERAS_BACKEND"}
    ran = subprocess.run([sys.executable, "-c", TENSORFLOW_SCRIPT, str(run_dir),
                          str(pixels_path)], capture_output=True, text=True, env=environment,
                         cwd=PROJECT, timeout=300, check=False)
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-3000:]
    found = json.loads(ran.stdout.split("RESULT ", 1)[1])
    expected = evaluate_predictions(run_dir).tolist()
    assert found["saved_model"] == expected
    assert found["litert"] == expected
    assert found["litert_input"] == ["uint8", [-1, 28, 28]]
    for format_name in ("saved_model", "litert"):
        assert f"same digit as Keras on {TEST_DIGITS}" in found[format_name + "_output"]
        assert (run_dir / "export" / format_name / exporting.MODEL_CARD).is_file()
