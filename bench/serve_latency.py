"""How long does `mnist serve` take to answer a drawing? Prints one JSON object.

The page sends the canvas (280x280 grey levels, base64 in JSON) to `POST
/api/runs/<run>/predict` while the user draws; the answer must come back fast enough for the
bars to follow the pen (the target is a median of at most 50 ms). This script takes test
digits drawn the way the canvas holds them (enlarged to 280x280, black ink on white), warms
the server up with a few requests, then times `--requests` predictions, each a different
digit, in two setups:

- `in_process`: Starlette's TestClient calling the application directly (the server's own
  work: JSON, MNIST-style preparation, the forward pass with the hidden activations);
- `loopback`: the real uvicorn server on 127.0.0.1, one keep-alive HTTP connection, as the
  browser talks to it (adds the HTTP and socket work).

With `--beside CONFIG`, a `mnist train --config CONFIG` process then trains on the same
machine (as a training started from the page does) and the loopback requests are timed
again beside it (`loopback_beside_training`); meanwhile the page's live stream of that run
is read, and each new checkpoint's delay is measured from the moment the file was written
to the moment the stream announced its weights (`live_epoch_delay`, target at most 1 s).

Example:
    MNIST_DATA=../shared/data/mnist.npz python bench/serve_latency.py \
        outputs/keras-784-500-10-20250101-120000 --requests 100 \
        --beside configs/keras-784-500-10.yaml
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

CANVAS_SIDE = 280
WARM_UP_REQUESTS = 5


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="a run directory made by `mnist train`")
    parser.add_argument("--requests", type=int, default=100, help="timed requests (100)")
    parser.add_argument("--data", type=Path, default=None,
                        help="the dataset (.npz) the digits come from; default: $MNIST_DATA")
    parser.add_argument("--backend", default="auto", help="Keras backend (auto)")
    parser.add_argument("--beside", type=Path, default=None, metavar="CONFIG",
                        help="time again while `mnist train --config CONFIG` runs beside")
    return parser.parse_args()


class BesideTraining:
    """`mnist train --config CONFIG` in its own process, into a temporary output root."""

    def __init__(self, config: Path) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="serve-latency-"))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mnist_cli", "train", "--config", str(config),
             "--out", str(self.root)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.run: Path | None = None
        for line in self.process.stdout:
            if line.startswith("Run directory: "):
                self.run = Path(line.split(": ", 1)[1].strip())
                break
        if self.run is None:
            raise SystemExit(f"mnist train --config {config} did not start")
        # Its output is read on, so that it never blocks on a full pipe.
        threading.Thread(target=self.process.stdout.read, daemon=True).start()
        while not (self.run / "checkpoint.npz").exists():
            if self.process.poll() is not None:
                raise SystemExit("the training beside ended before its first epoch")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def follow_live(port: int, run: str, delays: list[float], stop: threading.Event) -> None:
    """Read the live stream of `run`; for each new checkpoint, the seconds from its file's
    date (the stream's weights_version, in ns) to the event's arrival."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.request("GET", f"/api/runs/{run}/live")
    response = connection.getresponse()
    seen = None
    while not stop.is_set():
        line = response.readline()
        if not line:
            return
        if not line.startswith(b"data: "):
            continue
        arrived = time.time()
        version = json.loads(line[6:])["weights_version"]
        if version not in (None, "final", seen):
            if seen is not None:  # the first is a checkpoint written before the stream
                delays.append(arrived - int(version) / 1e9)
            seen = version


def canvas_payloads(data_path: Path, count: int) -> list[bytes]:
    """`count` test digits as the page sends them: the request bodies, ready to post."""
    with np.load(data_path) as data:
        digits = data["x_test"][:count]
    bodies = []
    for digit in digits:
        large = Image.fromarray(digit).resize((CANVAS_SIDE, CANVAS_SIDE),
                                              Image.Resampling.BILINEAR)
        ink_on_white = 255 - np.asarray(large, dtype=np.uint8)
        bodies.append(json.dumps({
            "width": CANVAS_SIDE, "height": CANVAS_SIDE,
            "pixels": base64.b64encode(ink_on_white.tobytes()).decode(),
        }).encode())
    return bodies


def summary(seconds: list[float]) -> dict[str, float]:
    milliseconds = np.array(seconds) * 1000.0
    return {
        "median_ms": round(float(np.median(milliseconds)), 2),
        "p95_ms": round(float(np.percentile(milliseconds, 95)), 2),
        "min_ms": round(float(milliseconds.min()), 2),
        "max_ms": round(float(milliseconds.max()), 2),
        "mean_ms": round(statistics.fmean(milliseconds), 2),
    }


def time_requests(send, bodies: list[bytes]) -> list[float]:
    for body in bodies[:WARM_UP_REQUESTS]:
        send(body)
    seconds = []
    for body in bodies:
        start = time.perf_counter()
        send(body)
        seconds.append(time.perf_counter() - start)
    return seconds


def main() -> None:
    arguments = parse_arguments()
    data_path = arguments.data or Path(os.environ.get("MNIST_DATA", ""))
    if not data_path.is_file():
        raise SystemExit("give the dataset with --data PATH or MNIST_DATA=PATH")

    from starlette.testclient import TestClient

    from mnist_cli import runtime
    from mnist_cli.serve.app import create_app
    from mnist_cli.serve.registry import RunRegistry
    from mnist_cli.serve.server import bind_socket

    registry = RunRegistry(arguments.run_dir.parent, [arguments.run_dir])
    (run,) = registry.runs()
    backend = runtime.start(arguments.backend)
    start = time.perf_counter()
    registry.load(run.name).warm_up()
    load_seconds = time.perf_counter() - start
    bodies = canvas_payloads(data_path, arguments.requests)
    url = f"/api/runs/{run.name}/predict"
    headers = {"Content-Type": "application/json"}

    client = TestClient(create_app(registry))

    def send_in_process(body: bytes) -> None:
        response = client.post(url, content=body, headers=headers)
        assert response.status_code == 200, response.text

    in_process = time_requests(send_in_process, bodies)

    import uvicorn

    listener = bind_socket("127.0.0.1", 0)
    port = listener.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(registry), log_level="warning",
                                           access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    connections = [http.client.HTTPConnection("127.0.0.1", port, timeout=30)]

    def send_over_loopback(body: bytes) -> None:
        connections[-1].request("POST", url, body=body, headers=headers)
        response = connections[-1].getresponse()
        response.read()
        assert response.status == 200

    loopback = time_requests(send_over_loopback, bodies)
    beside: dict | None = None
    if arguments.beside is not None:
        training = BesideTraining(arguments.beside)
        try:
            name = registry.add(training.run)
            delays: list[float] = []
            stop = threading.Event()
            reader = threading.Thread(target=follow_live, args=(port, name, delays, stop),
                                      daemon=True)
            reader.start()
            # A new connection: the first one idled past the server's keep-alive meanwhile.
            connections.append(http.client.HTTPConnection("127.0.0.1", port, timeout=30))
            beside_seconds = time_requests(send_over_loopback, bodies)
            while len(delays) < 3 and training.process.poll() is None:
                time.sleep(0.1)  # at least three epochs seen live
            stop.set()
            beside = {
                "config": str(arguments.beside),
                "loopback_beside_training": summary(beside_seconds),
                "live_epoch_delay": {
                    "epochs": len(delays),
                    "median_s": round(statistics.median(delays), 3) if delays else None,
                    "max_s": round(max(delays), 3) if delays else None,
                    "target_max_s": 1.0,
                },
            }
        finally:
            training.stop()
    server.should_exit = True
    thread.join(timeout=10)

    layers = registry.load(run.name).describe()["layers"]
    print(json.dumps({
        "run": run.name,
        "layers": "-".join(str(size) for size in layers),
        "backend": backend,
        "requests": len(bodies),
        "canvas": f"{CANVAS_SIDE}x{CANVAS_SIDE}",
        "model_load_and_warm_up_s": round(load_seconds, 2),
        "in_process": summary(in_process),
        "loopback": summary(loopback),
        **(beside or {}),
        "target_median_ms": 50,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
    }, indent=2))


if __name__ == "__main__":
    main()
