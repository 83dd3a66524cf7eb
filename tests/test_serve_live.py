"""`mnist serve` on runs as they train: per-epoch snapshots and their replay, a run still
training answered with its newest checkpoint and followed by the live stream, what the
network looks at (saliency, the FGSM nudge, the first layer's units), and trainings started
and stopped from the page as `mnist train` processes.

Runs are tiny (784-32-10 on 2000 digits); the answers are checked against the models' own
weights and against Keras's forward pass.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from conftest import stop_after_epoch, tiny_config_data, write_tiny_config

from mnist_cli.cli import cli

pytest.importorskip("starlette", reason="mnist serve needs the serve extra (starlette)")
pytest.importorskip("starlette.testclient",
                    reason="Starlette's TestClient needs httpx2 (the dev extra)")

from starlette.testclient import TestClient  # noqa: E402
from test_serve import as_drawing, assert_json_error, drawing_payload  # noqa: E402

from mnist_cli.serve.app import create_app  # noqa: E402
from mnist_cli.serve.registry import RunRegistry  # noqa: E402
from mnist_cli.serve.training import PageTraining  # noqa: E402


def invoke(*arguments) -> object:
    return CliRunner().invoke(cli, [str(argument) for argument in arguments])


@pytest.fixture(scope="module")
def folder(mnist_path, tmp_path_factory) -> Path:
    """One finished run with snapshots (3 epochs) under `folder/outputs`."""
    folder = tmp_path_factory.mktemp("serve-live")
    config = write_tiny_config(folder / "snap.yaml", mnist_path, folder / "outputs",
                               name="snap", train={"epochs": 3, "snapshots": True})
    result = invoke("train", "--config", config)
    assert result.exit_code == 0, result.output
    return folder


@pytest.fixture(scope="module")
def client(folder) -> TestClient:
    return TestClient(create_app(RunRegistry(folder / "outputs")))


@pytest.fixture(scope="module")
def drawing(mnist_path) -> dict:
    with np.load(mnist_path) as data:
        return drawing_payload(as_drawing(data["x_test"][3]))


def test_snapshots_keep_every_epoch_and_replay_it(client, folder, drawing):
    run = next((folder / "outputs").iterdir())
    assert sorted(path.name for path in (run / "snapshots").iterdir()) == [
        "epoch-0001.npz", "epoch-0002.npz", "epoch-0003.npz"]
    described = client.get("/api/runs/latest").json()
    assert described["snapshot_epochs"] == [1, 2, 3] and described["finished"]
    answers = {epoch: client.post(f"/api/runs/latest/predict?epoch={epoch}", json=drawing).json()
               for epoch in (1, 2, 3)}
    final = client.post("/api/runs/latest/predict", json=drawing).json()
    assert [answers[epoch]["epoch"] for epoch in (1, 2, 3)] == [1, 2, 3]
    assert answers[1]["probabilities"] != answers[3]["probabilities"]
    # The last snapshot is the final model, kept in float16.
    assert np.allclose(answers[3]["probabilities"], final["probabilities"], atol=5e-3)
    first = client.get("/api/runs/latest/confusion?epoch=1").json()
    last = client.get("/api/runs/latest/confusion").json()
    assert first["epoch"] == 1 and np.sum(first["matrix"]) == np.sum(last["matrix"])
    assert first["matrix"] != last["matrix"]


@pytest.mark.parametrize("query, status, fragment", [
    ("epoch=9", 404, "no snapshot of epoch 9; it has epochs 1-3"),
    ("epoch=0", 400, "epoch must be a whole number from 1"),
    ("epoch=two", 400, "epoch must be a whole number from 1"),
])
def test_bad_epochs_are_json_errors(client, query, status, fragment):
    assert_json_error(client.get(f"/api/runs/latest/confusion?{query}"), status, fragment)


def test_snapshots_are_refused_for_a_net_over_a_million_weights(tmp_path, mnist_path):
    config = write_tiny_config(tmp_path / "big.yaml", mnist_path, tmp_path / "outputs",
                               model={"layers": [784, 1500, 10]}, train={"snapshots": True})
    result = invoke("train", "--config", config)
    assert result.exit_code == 2
    assert "train.snapshots: the net has 1,192,510 weights, more than the 1,000,000" in (
        result.output)
    assert not (tmp_path / "outputs").exists()


def test_explain_matches_the_model_and_flips_the_answer(client, folder, drawing):
    import keras

    from mnist_cli.inspection.attribution import DenseStack

    answer = client.post("/api/runs/latest/predict", json=drawing).json()
    explained = client.post("/api/runs/latest/explain", json=drawing).json()
    assert explained["digit"] == answer["digit"]
    assert len(explained["saliency"]) == 784 and max(map(abs, explained["saliency"])) == 1.0
    # Saliency is gradient x input: no ink, no saliency.
    inputs = np.array(answer["network_input"])
    assert all(value == 0 for value, pixel in zip(explained["saliency"], inputs) if pixel == 0)
    nudge = explained["adversarial"]
    assert nudge is not None and nudge["digit"] != answer["digit"]
    moved = np.abs(np.array(nudge["pixels"], dtype=float) - inputs) / 255
    assert moved.max() <= nudge["epsilon"] + 1 / 255
    units = explained["units"]
    assert len(units) == 24 and explained["first_layer_units"] == 32
    activations = [unit["activation"] for unit in units]
    assert activations == sorted(activations, reverse=True)
    # The NumPy forward pass is the Keras model's.
    registry = RunRegistry(folder / "outputs")
    model = registry.load("latest").current().model
    batch = np.random.default_rng(0).random((8, 784)).astype(np.float32)
    ours, _ = DenseStack.of(model).forward(batch.astype(np.float64))
    assert np.allclose(ours, keras.ops.convert_to_numpy(model(batch)), atol=1e-5)
    first_kernel = model.layers[0].get_weights()[0]
    strongest = first_kernel[:, units[0]["unit"]]
    assert np.allclose(units[0]["weights"], strongest / np.abs(strongest).max(), atol=1e-3)


def test_a_run_still_training_answers_with_its_newest_checkpoint(
        mnist_path, tmp_path, monkeypatch, drawing):
    from mnist_cli.training.checkpoints import Checkpointer

    root = tmp_path / "outputs"
    config = write_tiny_config(tmp_path / "live.yaml", mnist_path, root, name="live",
                               train={"epochs": 4})
    save_epoch = stop_after_epoch(monkeypatch, 0)
    assert invoke("train", "--config", config).exit_code == 130  # stopped after epoch 1
    client = TestClient(create_app(RunRegistry(root)))
    listing = client.get("/api/runs").json()
    assert [run["finished"] for run in listing["runs"]] == [False]
    described = client.get("/api/runs/latest").json()
    assert not described["finished"] and len(described["history"]) == 1
    first = client.post("/api/runs/latest/predict", json=drawing).json()
    assert first["epoch"] == 1
    # The stream sends the run now, and again when its next epoch lands.
    monkeypatch.setattr(Checkpointer, "save_epoch", save_epoch)
    stop_after_epoch(monkeypatch, 1)
    with client.stream("GET", "/api/runs/latest/live") as events:
        lines = events.iter_lines()
        first_event = json.loads(next(line for line in lines if line.startswith("data: "))[6:])
        assert len(first_event["history"]) == 1
        resumed = invoke("train", "--resume", next(root.iterdir()))
        assert resumed.exit_code == 130, resumed.output
        # (A resume first rewrites history.csv as its checkpoint has it: an event too.)
        later = (json.loads(line[6:]) for line in lines if line.startswith("data: "))
        second_event = next(event for event in later if len(event["history"]) != 1)
    assert len(second_event["history"]) == 2
    second = client.post("/api/runs/latest/predict", json=drawing).json()
    assert second["epoch"] == 2 and second["probabilities"] != first["probabilities"]


def test_a_run_without_an_epoch_yet_is_listed_and_says_so(mnist_path, tmp_path, drawing):
    run = tmp_path / "outputs" / "fresh-20260101-000000"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(tiny_config_data(mnist_path, tmp_path)))
    client = TestClient(create_app(RunRegistry(tmp_path / "outputs")))
    assert client.get("/api/runs").json()["latest"] == run.name
    assert client.get("/api/runs/latest").json()["history"] == []
    assert_json_error(client.post("/api/runs/latest/predict", json=drawing), 409,
                      "has not finished its first epoch yet")


def test_the_live_stream_ends_when_its_run_is_deleted(mnist_path, tmp_path):
    run = tmp_path / "outputs" / "gone-20260101-000000"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(tiny_config_data(mnist_path, tmp_path)))
    client = TestClient(create_app(RunRegistry(tmp_path / "outputs")))
    with client.stream("GET", "/api/runs/latest/live") as events:
        lines = events.iter_lines()
        assert next(line for line in lines if line.startswith("data: "))
        shutil.rmtree(run)
        assert [line for line in lines if line.startswith("data: ")] == []


def test_the_live_stream_of_a_finished_run_is_one_event(client):
    with client.stream("GET", "/api/runs/latest/live") as events:
        data = [line for line in events.iter_lines() if line.startswith("data: ")]
    assert len(data) == 1 and json.loads(data[0][6:])["finished"]


# ------------------------------------------------------------------------------------------
# Training from the page


def page_client(tmp_path, mnist_path, refusal=None) -> TestClient:
    tmp_path.mkdir(exist_ok=True)
    base = write_tiny_config(tmp_path / "base.yaml", mnist_path, tmp_path / "ignored",
                             data={"subset": {"train": 600, "test": 200}})
    root = tmp_path / "outputs"
    root.mkdir()
    training = PageTraining(root, base, refusal)
    return TestClient(create_app(RunRegistry(root), training=training))


FORM = {"layers": "784-30-10", "optimizer": "sgd", "learning_rate": 0.1, "epochs": 1,
        "augment": False}


def wait_for_state(client, states, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get("/api/training").json()
        if status["state"] in states:
            return status
        time.sleep(0.2)
    raise AssertionError(f"the training never reached {states}: {status}")


@pytest.mark.slow
def test_a_training_started_from_the_page_is_an_ordinary_run(tmp_path, mnist_path):
    client = page_client(tmp_path, mnist_path)
    started = client.post("/api/training", json={**FORM, "augment": True})
    assert started.status_code == 202 and started.json()["state"] == "starting"
    status = wait_for_state(client, {"finished", "failed"})
    assert status["state"] == "finished", status
    run = tmp_path / "outputs" / status["run"]
    assert (run / "metrics.json").is_file() and (run / "snapshots" / "epoch-0001.npz").is_file()
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["model"]["layers"] == [784, 30, 10]
    assert config["train"]["optimizer"] == "sgd" and config["train"]["learning_rate"] == 0.1
    assert config["data"]["augment"]["rotation"] == 10
    assert config["data"]["subset"] == {"train": 600, "test": 200}  # the base config's
    assert client.get("/api/runs").json()["latest"] == status["run"]


@pytest.mark.slow
def test_stopping_a_page_training_keeps_its_checkpoint(tmp_path, mnist_path):
    client = page_client(tmp_path, mnist_path)
    client.post("/api/training", json={**FORM, "epochs": 100})
    status = wait_for_state(client, {"training"})
    run = tmp_path / "outputs" / status["run"]
    deadline = time.monotonic() + 60
    while not (run / "checkpoint.npz").is_file() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert_json_error(client.post("/api/training", json=FORM), 409, "still running")
    assert client.post("/api/training/stop", json={}).status_code == 202
    status = wait_for_state(client, {"stopped", "failed"})
    assert status["state"] == "stopped", status
    assert status["resume"] == f"mnist train --resume {run}"
    assert (run / "checkpoint.npz").is_file() and not (run / "metrics.json").exists()


@pytest.mark.parametrize("form, fragment", [
    ({**FORM, "layers": "784-4000-10"}, "layers must be one of"),
    ({**FORM, "optimizer": "lbfgs"}, "optimizer must be one of"),
    ({**FORM, "learning_rate": -1}, "learning_rate must be a number above 0"),
    ({**FORM, "epochs": 0}, "epochs must be a whole number from 1 to 100"),
    ({**FORM, "augment": "yes"}, "augment must be true or false"),
    ([1, 2], "send the training as a JSON object"),
])
def test_bad_training_forms_are_400(tmp_path, mnist_path, form, fragment):
    assert_json_error(page_client(tmp_path, mnist_path).post("/api/training", json=form),
                      400, fragment)


def test_training_needs_json_and_is_refused_off_loopback(tmp_path, mnist_path):
    client = page_client(tmp_path, mnist_path)
    # A form another web site could post without a CORS preflight is refused.
    assert_json_error(client.post("/api/training", data={"layers": "784-10"}), 400,
                      "Content-Type: application/json")
    assert_json_error(client.post("/api/training/stop", json={}), 409, "no training")
    refused = page_client(tmp_path / "other", mnist_path,
                          refusal="training from the page is off")
    assert refused.get("/api/training").json()["allowed"] is False
    assert_json_error(refused.post("/api/training", json=FORM), 403, "is off")


@pytest.mark.slow
def test_serve_off_loopback_refuses_training_unless_allowed(folder):
    from urllib.request import Request, urlopen

    from conftest import start_mnist_serve

    for extra, allowed in (((), False), (("--allow-training",), True)):
        process, address = start_mnist_serve(folder / "outputs", "--host", "0.0.0.0", *extra)
        try:
            port = address.rstrip("/").rsplit(":", 1)[1]
            with urlopen(Request(f"http://127.0.0.1:{port}/api/training"), timeout=30) as reply:
                status = json.loads(reply.read())
        finally:
            process.send_signal(2)
            process.communicate(timeout=60)
        assert status["allowed"] is allowed
        if not allowed:
            assert "--allow-training" in status["refusal"]
