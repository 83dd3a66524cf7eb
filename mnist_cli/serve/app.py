"""The Starlette application behind `mnist serve`: the page, and its JSON endpoints.

| method and path | answers |
|---|---|
| `GET /` | the page (`static/index.html`); its scripts and styles under `/static/` |
| `GET /api/runs` | the runs served, oldest first, and the name `latest` stands for |
| `GET /api/runs/{run}` | the run in one glance: layers, optimizer, epochs, test accuracy, curves |
| `POST /api/runs/{run}/predict` | a drawing (JSON: width, height, base64 grey levels): prediction |
| `POST /api/runs/{run}/predict-image` | an image file as the request body: prediction |
| `GET /api/runs/{run}/confusion` | the test set's confusion matrix |
| `GET /api/runs/{run}/errors?true=D&pred=D` | that cell's misclassified test digits |
| `GET /api/runs/{run}/templates` | a softmax regression's ten weight images |
| `POST /api/runs/{run}/explain` | a drawing: saliency, smallest FGSM flip, top first units |
| `GET /api/runs/{run}/live` | server-sent events: the run at each new epoch, until finished |
| `GET /api/training` | may the page train; its form's choices; the newest training |
| `POST /api/training` | start one (JSON: layers, optimizer, learning_rate, epochs, augment) |
| `POST /api/training/stop` | stop it at its epoch's end (its checkpoint kept) |

`?epoch=N` on predict, predict-image, explain, confusion, errors and templates answers with
epoch N's snapshot (train.snapshots) instead of the newest weights. A run is named, never
given as a path. Every error is JSON, `{"error": "..."}`, with a 4xx status for a bad
request (404 unknown run or epoch, 409 no epoch yet or a training already running, 403
training off, 413 too large, 422 not a digit image, 400 malformed) and 500 when the server
itself cannot answer (the run's data is missing). Only `POST /api/training` starts
anything: a `mnist train` process; the drawing and the upload are decoded in memory.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from mnist_cli.config import NUM_CLASSES
from mnist_cli.errors import ImageError, MnistCliError
from mnist_cli.runs import RunDir
from mnist_cli.serve.registry import (
    NoEpochYetError,
    RunRegistry,
    UnknownEpochError,
    UnknownRunError,
)
from mnist_cli.serve.training import PageTraining

STATIC_FOLDER = Path(__file__).parent / "static"

MAX_UPLOAD_BYTES = 5 * 1024 * 1024
"""An uploaded image (or a drawing's JSON) larger than this is refused before it is read
whole: a photo of a digit never needs more, and the server keeps its memory."""

MAX_DRAWING_SIDE = 2048
"""A drawing's width and height are at most this (the page sends 280x280)."""


class RequestError(MnistCliError):
    """A request the server cannot read: malformed JSON, a bad parameter (HTTP 400)."""

    status = 400


class TooLargeError(MnistCliError):
    """A request body over `MAX_UPLOAD_BYTES` (HTTP 413)."""

    status = 413


LIVE_POLL_SECONDS = 0.2
"""How often the live stream looks at a training run's files (a few stat calls)."""


def _status_of(error: MnistCliError) -> int:
    if isinstance(error, (UnknownRunError, UnknownEpochError)):
        return 404
    if isinstance(error, NoEpochYetError):
        return 409
    if isinstance(error, ImageError):
        return 422
    return getattr(error, "status", 500)


def _error_response(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _read_body(request: Request, what: str) -> bytes:
    """The request body, refused with a 413 as soon as it exceeds `MAX_UPLOAD_BYTES`."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_UPLOAD_BYTES:
        raise TooLargeError(f"{what} is {int(declared):,} bytes, more than the limit of "
                            f"{MAX_UPLOAD_BYTES:,}: send a smaller image")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_UPLOAD_BYTES:
            raise TooLargeError(f"{what} is more than the limit of {MAX_UPLOAD_BYTES:,} "
                                "bytes: send a smaller image")
        chunks.append(chunk)
    return b"".join(chunks)


def _drawing_pixels(body: bytes) -> np.ndarray:
    """The drawing a page sends, `{"width": W, "height": H, "pixels": base64}` with one
    grey level (uint8) per pixel, row by row, as a (H, W) array."""
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise RequestError("the drawing must be JSON: {\"width\": W, \"height\": H, "
                           "\"pixels\": base64 of W*H grey levels}") from None
    if not isinstance(payload, dict):
        raise RequestError("the drawing must be a JSON object with width, height and pixels")
    width, height, pixels = payload.get("width"), payload.get("height"), payload.get("pixels")
    for value, key in ((width, "width"), (height, "height")):
        if (not isinstance(value, int) or isinstance(value, bool)
                or not 1 <= value <= MAX_DRAWING_SIDE):
            raise RequestError(f"the drawing's {key} must be a whole number from 1 to "
                               f"{MAX_DRAWING_SIDE} (got {value!r})")
    if not isinstance(pixels, str):
        raise RequestError("the drawing's pixels must be a base64 string")
    try:
        raw = base64.b64decode(pixels, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError("the drawing's pixels are not valid base64") from None
    if len(raw) != width * height:
        raise RequestError(f"the drawing has {len(raw)} pixels, not width x height = "
                           f"{width * height}")
    return np.frombuffer(raw, dtype=np.uint8).reshape(height, width)


def _drawn_digit(drawing: np.ndarray) -> np.ndarray:
    """A drawing prepared as `mnist predict` prepares an image (cropped, fitted, centred)."""
    from mnist_cli.images import prepare_digit

    try:
        return prepare_digit(drawing)
    except ImageError as error:
        raise ImageError(str(error).replace("the image", "the drawing", 1)) from None


def _digit_parameter(request: Request, key: str) -> int:
    value = request.query_params.get(key, "")
    if not value.isdigit() or not 0 <= int(value) < NUM_CLASSES:
        raise RequestError(f"{key} must be a digit 0-9 (got {value!r})")
    return int(value)


def _epoch_parameter(request: Request) -> int | None:
    value = request.query_params.get("epoch")
    if value is None or value == "":
        return None
    if not value.isdigit() or int(value) < 1:
        raise RequestError(f"epoch must be a whole number from 1 (got {value!r})")
    return int(value)


def _run_files(run: RunDir) -> tuple:
    """What changes when an epoch lands, moves on or the run ends (or goes away): the
    dates of its config, history, checkpoint, progress and metrics files."""
    stamps = []
    for path in (run.config, run.history, run.checkpoint, run.progress, run.metrics):
        try:
            stamps.append(path.stat().st_mtime_ns)
        except OSError:
            stamps.append(None)
    return tuple(stamps)


async def _json_body(request: Request) -> Any:
    """A JSON request body. Requiring the JSON content type keeps other web sites out: a
    page elsewhere can only send it after a CORS preflight, which this server never
    grants."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise RequestError("send JSON, with Content-Type: application/json")
    try:
        return json.loads(await _read_body(request, "the request"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise RequestError("the request is not valid JSON") from None


def create_app(registry: RunRegistry, allowed_hosts: list[str] | None = None,
               training: PageTraining | None = None,
               stopping: Callable[[], bool] = lambda: False) -> Starlette:
    """The application serving `registry`'s runs. `allowed_hosts` (the names the server is
    reached by) refuses requests for any other Host, so a web page elsewhere cannot reach
    a local server through a DNS name of its own; None accepts any. `training` starts runs
    from the page (None: the page cannot); `stopping` tells the live streams that the
    server is shutting down."""

    async def index(request: Request) -> FileResponse:
        return FileResponse(STATIC_FOLDER / "index.html")

    async def list_runs(request: Request) -> JSONResponse:
        runs = await run_in_threadpool(registry.runs)
        return JSONResponse({"runs": [run.to_dict() for run in runs],
                             "latest": runs[-1].name if runs else None})

    async def describe(request: Request) -> JSONResponse:
        name = request.path_params["run"]
        loaded = await run_in_threadpool(registry.load, name)
        return JSONResponse(await run_in_threadpool(loaded.describe))

    async def predict_drawing(request: Request) -> JSONResponse:
        epoch = _epoch_parameter(request)
        loaded = await run_in_threadpool(registry.load, request.path_params["run"])
        drawing = _drawing_pixels(await _read_body(request, "the drawing"))

        def answer() -> dict[str, Any]:
            return loaded.predict(_drawn_digit(drawing), epoch)

        return JSONResponse(await run_in_threadpool(answer))

    async def explain(request: Request) -> JSONResponse:
        epoch = _epoch_parameter(request)
        loaded = await run_in_threadpool(registry.load, request.path_params["run"])
        drawing = _drawing_pixels(await _read_body(request, "the drawing"))
        return JSONResponse(await run_in_threadpool(
            lambda: loaded.explain(_drawn_digit(drawing), epoch)))

    async def predict_image(request: Request) -> JSONResponse:
        from mnist_cli.images import load_digit_bytes

        epoch = _epoch_parameter(request)
        loaded = await run_in_threadpool(registry.load, request.path_params["run"])
        body = await _read_body(request, "the upload")

        def answer() -> dict[str, Any]:
            return loaded.predict(load_digit_bytes(body, "the upload"), epoch)

        return JSONResponse(await run_in_threadpool(answer))

    async def confusion(request: Request) -> JSONResponse:
        epoch = _epoch_parameter(request)
        loaded = await run_in_threadpool(registry.load, request.path_params["run"])
        return JSONResponse(await run_in_threadpool(loaded.confusion, epoch))

    async def errors(request: Request) -> JSONResponse:
        true_digit = _digit_parameter(request, "true")
        predicted_digit = _digit_parameter(request, "pred")
        if true_digit == predicted_digit:
            raise RequestError(f"true and pred are both {true_digit}: a digit classified as "
                               "itself is not an error")
        epoch = _epoch_parameter(request)
        loaded = await run_in_threadpool(registry.load, request.path_params["run"])
        return JSONResponse(await run_in_threadpool(loaded.errors, true_digit,
                                                    predicted_digit, epoch))

    async def templates(request: Request) -> JSONResponse:
        epoch = _epoch_parameter(request)
        loaded = await run_in_threadpool(registry.load, request.path_params["run"])
        result = await run_in_threadpool(loaded.templates, epoch)
        if result is None:
            return _error_response(f"{loaded.name} has hidden layers: weight templates exist "
                                   "only for a net without one (784-10)", 404)
        return JSONResponse(result)

    async def live(request: Request) -> StreamingResponse:
        name = request.path_params["run"]
        loaded = await run_in_threadpool(registry.load, name)

        async def events():
            seen = None
            while not stopping() and not await request.is_disconnected():
                stamps = await run_in_threadpool(_run_files, loaded.run)
                if stamps != seen:
                    seen = stamps
                    try:
                        described = await run_in_threadpool(loaded.describe)
                    except (MnistCliError, OSError):
                        return  # the run's folder went away: the stream ends
                    yield f"data: {json.dumps(described)}\n\n"
                    if described["finished"]:
                        return
                await asyncio.sleep(LIVE_POLL_SECONDS)

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store"})

    def trainer() -> PageTraining:
        if training is None:
            raise RequestError("this server cannot start trainings")
        return training

    def training_answer() -> dict[str, Any]:
        status = trainer().status()  # reads the run's folder from the training's log
        path = trainer().run_path
        if path is not None and registry.runs_given():
            registry.add(path)  # served beside the runs given on the command line
        return status

    async def training_status(request: Request) -> JSONResponse:
        if training is None:
            return JSONResponse({"allowed": False, "refusal": "this server cannot start "
                                 "trainings", "state": None})
        return JSONResponse(await run_in_threadpool(training_answer))

    async def training_start(request: Request) -> JSONResponse:
        form = await _json_body(request)
        await run_in_threadpool(trainer().start, form)
        return JSONResponse(await run_in_threadpool(training_answer), status_code=202)

    async def training_stop(request: Request) -> JSONResponse:
        await _json_body(request)
        await run_in_threadpool(trainer().stop)
        return JSONResponse(await run_in_threadpool(training_answer), status_code=202)

    async def library_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, MnistCliError)
        return _error_response(str(error), _status_of(error))

    async def http_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, HTTPException)
        return _error_response(str(error.detail), error.status_code)

    routes = [
        Route("/", index),
        Route("/api/runs", list_runs),
        Route("/api/runs/{run}", describe),
        Route("/api/runs/{run}/predict", predict_drawing, methods=["POST"]),
        Route("/api/runs/{run}/predict-image", predict_image, methods=["POST"]),
        Route("/api/runs/{run}/confusion", confusion),
        Route("/api/runs/{run}/errors", errors),
        Route("/api/runs/{run}/templates", templates),
        Route("/api/runs/{run}/explain", explain, methods=["POST"]),
        Route("/api/runs/{run}/live", live),
        Route("/api/training", training_status),
        Route("/api/training", training_start, methods=["POST"]),
        Route("/api/training/stop", training_stop, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC_FOLDER), name="static"),
    ]
    middleware = ([] if allowed_hosts is None else
                  [Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)])
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={MnistCliError: library_error, HTTPException: http_error},
    )
    app.state.registry = registry
    return app
