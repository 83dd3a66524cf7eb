"""`mnist serve`: every endpoint and every error through Starlette's HTTP test client, and
the command itself (start-up errors, the address, the --host warning, Ctrl-C).

Two tiny runs are trained once for the module through the CLI: a 784-32-10 net (3 epochs) and
a 784-10 softmax regression (1 epoch), on 2000 training and 500 test images. Answers are checked
against what the other commands say of the same runs: `mnist predict` for an image,
`metrics.json` for the confusion matrix, `show-errors`' CSV for a cell's digits, and the
model's own weights for the activations and templates.
"""

from __future__ import annotations

import base64
import csv
import json
import signal
import socket
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import start_mnist_serve, write_tiny_config
from PIL import Image

from mnist_cli.cli import cli

pytest.importorskip("starlette", reason="mnist serve needs the serve extra (starlette)")
pytest.importorskip("starlette.testclient",
                    reason="Starlette's TestClient needs httpx2 (the dev extra)")

from starlette.testclient import TestClient  # noqa: E402

from mnist_cli.serve.app import MAX_UPLOAD_BYTES, create_app  # noqa: E402
from mnist_cli.serve.registry import RunRegistry  # noqa: E402

SERVE_ENDPOINTS = ("", "/confusion", "/errors?true=4&pred=9", "/templates")


def invoke(*arguments) -> object:
    return CliRunner().invoke(cli, [str(argument) for argument in arguments])


@pytest.fixture(scope="module")
def output_root(mnist_path, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("serve")
    root = folder / "outputs"
    hidden = write_tiny_config(folder / "hidden.yaml", mnist_path, root, name="hidden",
                               train={"epochs": 3})
    softmax = write_tiny_config(folder / "softmax.yaml", mnist_path, root, name="softmax",
                                model={"layers": [784, 10]}, train={"epochs": 1})
    for config in (hidden, softmax):
        result = invoke("train", "--config", config)
        assert result.exit_code == 0, result.output
    return root


@pytest.fixture(scope="module")
def run_names(output_root) -> dict[str, str]:
    names = {path.name.split("-")[0]: path.name for path in output_root.iterdir()}
    assert set(names) == {"hidden", "softmax"}
    return names


@pytest.fixture(scope="module")
def client(output_root) -> TestClient:
    return TestClient(create_app(RunRegistry(output_root)))


@pytest.fixture(scope="module")
def test_digits(mnist_path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(mnist_path) as data:
        return data["x_test"][:50], data["y_test"][:50]


def as_drawing(digit: np.ndarray, side: int = 280) -> np.ndarray:
    """An MNIST digit the way the page's canvas holds it: large, black ink on white."""
    large = Image.fromarray(digit).resize((side, side), Image.Resampling.BILINEAR)
    return 255 - np.asarray(large, dtype=np.uint8)


def drawing_payload(pixels: np.ndarray) -> dict:
    height, width = pixels.shape
    return {"width": width, "height": height,
            "pixels": base64.b64encode(pixels.astype(np.uint8).tobytes()).decode()}


def png_bytes(pixels: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def bomb_png(width: int = 30000, height: int = 30000) -> bytes:
    """A PNG header claiming 900 megapixels, 60 bytes long: a decompression bomb."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def assert_json_error(response, status: int, *fragments: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    message = response.json()["error"]
    for fragment in fragments:
        assert fragment in message, message


# ------------------------------------------------------------------------------------------
# The page and the runs


def test_the_page_and_its_files_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    for testid in ("canvas", "run", "compare", "upload", "undo", "clear", "confusion"):
        assert f'data-testid="{testid}"' in page.text
    # The page needs nothing from the internet: every script and style comes from /static.
    assert "http://" not in page.text.replace("http://www.w3.org", "")
    assert "https://" not in page.text
    for name in ("app.js", "style.css"):
        response = client.get(f"/static/{name}")
        assert response.status_code == 200 and len(response.text) > 1000
    script = client.get("/static/app.js").text
    assert 'prediction${suffix}' in script and 'probabilities${suffix}' in script
    assert "https://" not in script and "http://" not in script.replace(
        "http://www.w3.org/2000/svg", "")


def test_runs_are_listed_oldest_first_with_the_newest_as_latest(client, run_names):
    listing = client.get("/api/runs").json()
    assert [run["name"] for run in listing["runs"]] == [run_names["hidden"],
                                                        run_names["softmax"]]
    assert listing["latest"] == run_names["softmax"]
    hidden = listing["runs"][0]
    assert hidden["layers"] == "784-32-10" and hidden["epochs"] == "3"


def test_a_run_in_one_glance(client, output_root, run_names):
    name = run_names["hidden"]
    run = client.get(f"/api/runs/{name}").json()
    metrics = json.loads((output_root / name / "metrics.json").read_text())
    assert run["layers"] == [784, 32, 10]
    assert run["activations"] == ["relu", "softmax"]
    assert run["optimizer"] == "adam" and run["epochs"] == "3"
    assert run["test_accuracy"] == metrics["test_accuracy"]
    assert run["has_hidden_layers"] is True
    assert [row["epoch"] for row in run["history"]] == [1, 2, 3]
    assert 0.0 < run["history"][0]["val_accuracy"] <= 1.0
    latest = client.get("/api/runs/latest").json()
    assert latest["name"] == run_names["softmax"] and latest["has_hidden_layers"] is False


# ------------------------------------------------------------------------------------------
# Predictions


def test_a_drawing_gets_the_same_answer_as_mnist_predict_on_that_picture(
        client, output_root, run_names, test_digits, tmp_path):
    images, labels = test_digits
    name = run_names["hidden"]
    drawing = as_drawing(images[0])
    answer = client.post(f"/api/runs/{name}/predict", json=drawing_payload(drawing)).json()
    probabilities = np.array(answer["probabilities"])
    assert answer["output_kind"] == "probabilities"
    assert probabilities.shape == (10,)
    assert abs(probabilities.sum() - 1.0) < 1e-4
    assert answer["digit"] == int(np.argmax(probabilities))
    assert len(answer["network_input"]) == 784 and max(answer["network_input"]) == 255
    picture = tmp_path / "drawing.png"
    Image.fromarray(drawing).save(picture)
    predicted = invoke("predict", output_root / name, picture, "--json")
    assert predicted.exit_code == 0, predicted.output
    (expected,) = json.loads(predicted.output)
    assert answer["digit"] == expected["digit"]
    assert probabilities.max() == pytest.approx(expected["probability"], abs=1e-5)


def test_drawn_test_digits_get_the_answers_of_the_digits_themselves(
        client, output_root, run_names, test_digits):
    """A test digit drawn large on the canvas comes back, after the MNIST-style preparation,
    close enough to itself that the network mostly answers as for the original."""
    import keras

    from mnist_cli.inspection.source import load_model, locate_model

    images, _labels = test_digits
    name = run_names["hidden"]
    answers = [client.post(f"/api/runs/{name}/predict",
                           json=drawing_payload(as_drawing(image))).json()["digit"]
               for image in images[:20]]
    model = load_model(locate_model(output_root / name))
    originals = keras.ops.convert_to_numpy(
        model(images[:20].reshape(20, 784).astype(np.float32) / 255.0)).argmax(axis=1)
    assert np.mean(np.array(answers) == originals) >= 0.8


def test_an_upload_is_prepared_like_the_drawing(client, run_names, test_digits):
    images, _labels = test_digits
    name = run_names["hidden"]
    drawing = as_drawing(images[1])
    drawn = client.post(f"/api/runs/{name}/predict", json=drawing_payload(drawing)).json()
    uploaded = client.post(f"/api/runs/{name}/predict-image", content=png_bytes(drawing),
                           headers={"content-type": "image/png"}).json()
    assert uploaded["network_input"] == drawn["network_input"]
    assert uploaded["probabilities"] == pytest.approx(drawn["probabilities"], abs=1e-6)


def test_hidden_activations_are_the_layers_own_outputs(client, output_root, run_names,
                                                       test_digits):
    import keras

    from mnist_cli.inspection.source import load_model, locate_model

    name = run_names["hidden"]
    answer = client.post(f"/api/runs/{name}/predict",
                         json=drawing_payload(as_drawing(test_digits[0][2]))).json()
    (layer,) = answer["activations"]
    assert layer["units"] == 32 and len(layer["values"]) == 32
    model = load_model(locate_model(output_root / name))
    kernel, bias = model.layers[0].get_weights()
    features = np.array(answer["network_input"], dtype=np.float32) / 255.0
    expected = np.maximum(features @ kernel + bias, 0.0)
    assert np.allclose(layer["values"], expected, atol=1e-4)
    softmax = keras.ops.convert_to_numpy(model(features[np.newaxis]))[0]
    assert np.allclose(answer["probabilities"], softmax, atol=1e-5)
    regression = client.post(f"/api/runs/{run_names['softmax']}/predict",
                             json=drawing_payload(as_drawing(test_digits[0][2]))).json()
    assert regression["activations"] == []


def test_both_runs_answer_the_same_drawing(client, run_names, test_digits):
    payload = drawing_payload(as_drawing(test_digits[0][3]))
    first = client.post(f"/api/runs/{run_names['hidden']}/predict", json=payload).json()
    second = client.post(f"/api/runs/{run_names['softmax']}/predict", json=payload).json()
    assert first["run"] != second["run"]
    assert first["network_input"] == second["network_input"]  # both scale, no binarizing
    assert first["probabilities"] != second["probabilities"]


# ------------------------------------------------------------------------------------------
# The test set: confusion matrix, a cell's digits, templates


def test_the_confusion_matrix_is_the_training_s(client, output_root, run_names):
    for name in run_names.values():
        result = client.get(f"/api/runs/{name}/confusion").json()
        metrics = json.loads((output_root / name / "metrics.json").read_text())
        assert result["matrix"] == metrics["confusion_matrix"]
        assert result["num_errors"] == metrics["num_errors"]
        assert result["num_samples"] == 500


def test_a_cell_shows_the_digits_show_errors_lists(client, output_root, run_names, tmp_path):
    name = run_names["hidden"]
    matrix = np.array(client.get(f"/api/runs/{name}/confusion").json()["matrix"])
    off_diagonal = matrix - np.diag(np.diag(matrix))
    true_digit, predicted_digit = np.unravel_index(np.argmax(off_diagonal), matrix.shape)
    assert off_diagonal[true_digit, predicted_digit] > 0
    cell = client.get(f"/api/runs/{name}/errors",
                      params={"true": true_digit, "pred": predicted_digit}).json()
    assert cell["total"] == matrix[true_digit, predicted_digit] == len(cell["errors"])
    out = tmp_path / "cell.png"
    shown = invoke("show-errors", output_root / name, "--true", true_digit, "--pred",
                   predicted_digit, "--sort", "confidence", "--out", out)
    assert shown.exit_code == 0, shown.output
    with open(out.with_suffix(".csv"), newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [error["index"] for error in cell["errors"]] == [int(row["index"]) for row in rows]
    for error, row in zip(cell["errors"], rows):
        assert (error["true"], error["predicted"]) == (true_digit, predicted_digit)
        assert error["probability"] == pytest.approx(float(row["probability"]), abs=1e-4)
        assert error["top_3"][0]["digit"] == predicted_digit
        assert len(error["pixels"]) == 784
    probabilities = [error["probability"] for error in cell["errors"]]
    assert probabilities == sorted(probabilities, reverse=True)


def test_softmax_regression_templates_are_its_weights(client, output_root, run_names):
    from mnist_cli.inspection.source import load_model, locate_model

    name = run_names["softmax"]
    result = client.get(f"/api/runs/{name}/templates").json()
    kernel = load_model(locate_model(output_root / name)).layers[0].get_weights()[0]
    templates = np.array(result["templates"])
    assert templates.shape == (10, 784)
    assert np.allclose(templates * result["scale"], kernel.T, atol=1e-4 * result["scale"])
    assert np.abs(templates).max() == pytest.approx(1.0)
    hidden = client.get(f"/api/runs/{run_names['hidden']}/templates")
    assert_json_error(hidden, 404, "hidden layers")


# ------------------------------------------------------------------------------------------
# Errors: every one is JSON with a 4xx status


@pytest.mark.parametrize("name", ["nope", "..", "%2E%2E%2Fetc", "%2Fetc%2Fpasswd",
                                  "outputs%2Fhidden"])
def test_unknown_or_path_like_run_names_are_404(client, name):
    for endpoint in SERVE_ENDPOINTS:
        response = client.get(f"/api/runs/{name}{endpoint}")
        assert response.status_code == 404, (endpoint, response.text)
        assert response.headers["content-type"].startswith("application/json")
    # A plain unknown name reaches the registry; a path-like one does not even match a route.
    expected = ("no run called",) if name == "nope" else ()
    assert_json_error(client.post(f"/api/runs/{name}/predict", json={}), 404, *expected)


def test_uploads_that_are_not_digit_images(client, run_names):
    url = f"/api/runs/{run_names['hidden']}/predict-image"
    assert_json_error(client.post(url, content=b"not an image at all"), 422,
                      "is not an image Pillow can read")
    assert_json_error(client.post(url, content=b""), 422, "is empty")
    assert_json_error(client.post(url, content=png_bytes(np.full((50, 50), 255, np.uint8))),
                      422, "is blank")
    assert_json_error(client.post(url, content=png_bytes(np.zeros((9, 9), np.uint8))[:40]),
                      422, "the upload")
    assert_json_error(client.post(url, content=bomb_png()), 422,
                      "too large to decode safely")


def test_uploads_over_the_size_limit_are_413(client, run_names):
    url = f"/api/runs/{run_names['hidden']}/predict-image"
    too_large = b"\0" * (MAX_UPLOAD_BYTES + 1)
    assert_json_error(client.post(url, content=too_large), 413, "limit")

    def chunks():  # no Content-Length: the limit holds while the body streams in
        for _ in range(MAX_UPLOAD_BYTES // 65536 + 2):
            yield b"\0" * 65536

    assert_json_error(client.post(url, content=chunks()), 413, "limit")


@pytest.mark.parametrize("payload, fragment", [
    ("{not json", "must be JSON"),
    ("[1, 2]", "JSON object"),
    (json.dumps({"width": 0, "height": 10, "pixels": ""}), "width"),
    (json.dumps({"width": 10, "height": True, "pixels": ""}), "height"),
    (json.dumps({"width": 10, "height": 10, "pixels": 5}), "base64 string"),
    (json.dumps({"width": 10, "height": 10, "pixels": "***"}), "not valid base64"),
    (json.dumps({"width": 10, "height": 10, "pixels": "AAAA"}), "not width x height"),
])
def test_malformed_drawings_are_400(client, run_names, payload, fragment):
    response = client.post(f"/api/runs/{run_names['hidden']}/predict", content=payload,
                           headers={"content-type": "application/json"})
    assert_json_error(response, 400, fragment)


def test_a_blank_drawing_is_422(client, run_names):
    blank = np.full((280, 280), 255, dtype=np.uint8)
    response = client.post(f"/api/runs/{run_names['hidden']}/predict",
                           json=drawing_payload(blank))
    assert_json_error(response, 422, "the drawing: is blank")


@pytest.mark.parametrize("query, fragment", [
    ("", "true must be a digit"),
    ("?true=4", "pred must be a digit"),
    ("?true=10&pred=1", "true must be a digit"),
    ("?true=-1&pred=1", "true must be a digit"),
    ("?true=3&pred=3", "is not an error"),
])
def test_bad_confusion_cells_are_400(client, run_names, query, fragment):
    assert_json_error(client.get(f"/api/runs/{run_names['hidden']}/errors{query}"), 400,
                      fragment)


def test_wrong_methods_and_paths_are_json_errors(client, run_names):
    assert_json_error(client.get(f"/api/runs/{run_names['hidden']}/predict"), 405)
    assert_json_error(client.get("/api/nothing-here"), 404)
    assert client.get("/static/../registry.py").status_code == 404


def test_another_host_name_is_refused_on_loopback(output_root):
    from mnist_cli.serve.server import LOOPBACK_NAMES

    guarded = TestClient(create_app(RunRegistry(output_root), list(LOOPBACK_NAMES)),
                         base_url="http://127.0.0.1:8000")
    assert guarded.get("/api/runs").status_code == 200
    assert guarded.get("/api/runs", headers={"host": "attacker.example"}).status_code == 400


def _tree(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns)
            for path in sorted(folder.rglob("*"))}


def test_no_request_writes_to_disk(client, output_root, run_names, test_digits, tmp_path,
                                   monkeypatch):
    monkeypatch.chdir(tmp_path)
    before, before_here = _tree(output_root), _tree(tmp_path)
    name = run_names["softmax"]
    drawing = as_drawing(test_digits[0][4])
    client.get("/")
    client.get("/api/runs")
    for endpoint in SERVE_ENDPOINTS:
        client.get(f"/api/runs/{name}{endpoint}")
    client.post(f"/api/runs/{name}/predict", json=drawing_payload(drawing))
    client.post(f"/api/runs/{name}/predict-image", content=png_bytes(drawing))
    client.post(f"/api/runs/{name}/predict-image", content=b"junk")
    assert _tree(output_root) == before
    assert _tree(tmp_path) == before_here


def test_latest_on_the_command_line_is_the_newest_run(output_root, run_names, tmp_path):
    assert [run.name for run in RunRegistry(output_root, ["latest"]).runs()] == [
        run_names["softmax"]]
    result = invoke("serve", "latest", "--out", tmp_path)
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: latest: no run in {tmp_path} yet; train one")


def test_runs_given_by_path_are_served_by_their_folder_name(output_root, run_names):
    registry = RunRegistry(output_root, [output_root / run_names["hidden"]])
    served = TestClient(create_app(registry))
    listing = served.get("/api/runs").json()
    assert [run["name"] for run in listing["runs"]] == [run_names["hidden"]]
    assert served.get(f"/api/runs/{run_names['softmax']}").status_code == 404


# ------------------------------------------------------------------------------------------
# The command


def test_serve_without_runs_or_with_a_bad_run_is_one_error_line(tmp_path):
    for arguments in (["--out", tmp_path / "empty"], [tmp_path / "not-a-run"]):
        result = invoke("serve", *arguments)
        assert result.exit_code != 0
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), result.output


def test_serve_on_a_port_in_use_is_one_error_line(output_root):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = invoke("serve", "--out", output_root, "--port", port)
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"Error: cannot listen on 127.0.0.1:{port}: Address already in use (another server "
        "uses it: choose another with --port)"]


@pytest.mark.slow
def test_serve_prints_the_address_warns_off_loopback_and_stops_on_ctrl_c(output_root):
    from urllib.request import urlopen

    process, address = start_mnist_serve(output_root, "--host", "0.0.0.0")
    try:
        assert address.startswith("http://0.0.0.0:")
        port = address.rstrip("/").rsplit(":", 1)[1]
        with urlopen(f"http://127.0.0.1:{port}/api/runs", timeout=30) as response:
            listing = json.loads(response.read())
        assert len(listing["runs"]) == 2
    finally:
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert "Warning: listening on 0.0.0.0" in stderr
    assert "Traceback" not in stderr and "Stopped." in stdout


def test_a_loaded_run_answers_without_reading_the_output_root(output_root, run_names,
                                                              test_digits, monkeypatch):
    """Once loaded, a run's predictions cost no scan of the output root (which reads every
    run's config.yaml and metrics.json): a hundred runs would otherwise slow every request."""
    from mnist_cli.serve import registry as registry_module

    registry = RunRegistry(output_root)
    served = TestClient(create_app(registry))
    name = run_names["hidden"]
    payload = drawing_payload(as_drawing(test_digits[0][5]))
    assert served.post(f"/api/runs/{name}/predict", json=payload).status_code == 200
    scans = []
    original = registry_module.find_runs
    monkeypatch.setattr(registry_module, "find_runs",
                        lambda root: scans.append(root) or original(root))
    for _ in range(3):
        assert served.post(f"/api/runs/{name}/predict", json=payload).status_code == 200
    assert scans == []
    assert served.get("/api/runs").status_code == 200 and len(scans) == 1  # listing rescans


def test_a_sigmoid_output_is_answered_as_scores(mnist_path, tmp_path, test_digits):
    """Nielsen's nets end in sigmoids (quadratic loss): ten scores that need not sum to 1,
    which the page must not print as probabilities."""
    config = write_tiny_config(tmp_path / "sigmoid.yaml", mnist_path, tmp_path / "outputs",
                               name="sigmoid", model={"output_activation": "sigmoid"},
                               train={"epochs": 1, "loss": "quadratic"})
    assert invoke("train", "--config", config).exit_code == 0
    served = TestClient(create_app(RunRegistry(tmp_path / "outputs")))
    answer = served.post("/api/runs/latest/predict",
                         json=drawing_payload(as_drawing(test_digits[0][6]))).json()
    assert answer["output_kind"] == "scores"
    assert all(0.0 <= score <= 1.0 for score in answer["probabilities"])
    assert answer["digit"] == int(np.argmax(answer["probabilities"]))
