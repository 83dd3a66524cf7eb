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

Example:
    MNIST_DATA=../shared/data/mnist.npz python bench/serve_latency.py \
        outputs/keras-784-500-10-20250101-120000 --requests 100
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import platform
import statistics
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
    return parser.parse_args()


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
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def send_over_loopback(body: bytes) -> None:
        connection.request("POST", url, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        assert response.status == 200

    loopback = time_requests(send_over_loopback, bodies)
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
        "target_median_ms": 50,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
    }, indent=2))


if __name__ == "__main__":
    main()
