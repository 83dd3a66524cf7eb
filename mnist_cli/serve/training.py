"""Training started from the page: an ordinary `mnist train` process, one at a time.

The page sends a few choices (layers, optimizer, learning rate, epochs, augmentation on or
off); they are laid over the server's base config (`mnist serve --train-config`, else the
built-in defaults) and checked like any config, then `python -m mnist_cli train` runs in
its own process with its output root the server's: its run directory is the CLI's, and
the page follows it as it follows any run still training. Stopping it is a Ctrl-C
(SIGINT): it ends at the end of the epoch under way, its checkpoint kept, resumable with
`mnist train --resume`. Nothing trains inside a request.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import yaml

from mnist_cli import choices
from mnist_cli.config import build_config, read_yaml_mapping
from mnist_cli.config.schema import MAX_SNAPSHOT_WEIGHTS
from mnist_cli.errors import MnistCliError

STACKS = ("784-10", "784-30-10", "784-100-10", "784-500-10", "784-1500-10", "784-512-256-10")
"""The layer stacks offered: the bundled recipes' (softmax regression, Nielsen, Keras,
dense-augmented, TF2) and a 100-unit net between them."""

AUGMENT = {"rotation": 10, "scale": 0.1, "shear": 8, "translation": 1.5,
           "elastic_alpha": 30, "elastic_sigma": 5}
"""Augmentation on: the distortions of configs/dense-augmented.yaml."""

MAX_EPOCHS = 100
RUN_LINE = "Run directory: "  # how `mnist train` names the folder it trains into


class TrainingRefused(MnistCliError):
    """Training from the page is off on this server (HTTP 403)."""

    status = 403


class TrainingBusy(MnistCliError):
    """A training started from the page is still running (HTTP 409)."""

    status = 409


class FormError(MnistCliError):
    """The page's choices are not ones it offers (HTTP 400)."""

    status = 400


def form_choices() -> dict[str, Any]:
    """What the page's form offers, and its defaults."""
    return {"layers": list(STACKS), "optimizers": list(choices.OPTIMIZERS),
            "max_epochs": MAX_EPOCHS,
            "defaults": {"layers": "784-100-10", "optimizer": "adam", "learning_rate": 0.001,
                         "epochs": 5, "augment": False}}


def config_from_form(form: Any, base: dict[str, Any]) -> dict[str, Any]:
    """The page's choices laid over `base` (a config as plain data), checked."""
    if not isinstance(form, dict):
        raise FormError("send the training as a JSON object: layers, optimizer, "
                        "learning_rate, epochs, augment")
    layers, optimizer = form.get("layers"), form.get("optimizer")
    rate, epochs, augment = form.get("learning_rate"), form.get("epochs"), form.get("augment")
    if layers not in STACKS:
        raise FormError(f"layers must be one of {', '.join(STACKS)} (got {layers!r})")
    if optimizer not in choices.OPTIMIZERS:
        raise FormError(f"optimizer must be one of {', '.join(choices.OPTIMIZERS)} "
                        f"(got {optimizer!r})")
    if (not isinstance(rate, (int, float)) or isinstance(rate, bool)
            or not 0 < rate <= 10):
        raise FormError(f"learning_rate must be a number above 0 and at most 10 (got {rate!r})")
    if (not isinstance(epochs, int) or isinstance(epochs, bool)
            or not 1 <= epochs <= MAX_EPOCHS):
        raise FormError(f"epochs must be a whole number from 1 to {MAX_EPOCHS} (got {epochs!r})")
    if not isinstance(augment, bool):
        raise FormError(f"augment must be true or false (got {augment!r})")
    data = {key: (dict(value) if isinstance(value, dict) else value)
            for key, value in base.items()}
    stack = [int(size) for size in layers.split("-")]
    data["name"] = f"page-{layers}"
    data.setdefault("model", {})["layers"] = stack
    data["model"].pop("dropout", None)  # a base's per-layer choices need not fit the stack
    train = data.setdefault("train", {})
    train.update(optimizer=optimizer, learning_rate=float(rate), epochs=epochs)
    train.pop("steps", None)
    for key in ("momentum", "nesterov", "weight_decay"):  # one optimizer's settings only
        train.pop(key, None)
    train["snapshots"] = False
    data.setdefault("data", {})["augment"] = dict(AUGMENT) if augment else None
    config = build_config(data, "the page's training")
    # Every epoch kept for the page's epoch slider, where the net is small enough.
    config.train.snapshots = config.model.weight_count() <= MAX_SNAPSHOT_WEIGHTS
    return config.to_dict()


class PageTraining:
    """The one training the page may have running, its process and its run directory."""

    def __init__(self, output_root: Path, base_config: Path | None, refusal: str | None):
        self.output_root = output_root
        # Read now: a broken base config is reported when the server starts.
        self.base = read_yaml_mapping(base_config) if base_config is not None else {}
        if base_config is not None:
            build_config(self.base, str(base_config))
        self.refusal = refusal  # why training is off (another --host), or None
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._log: Path | None = None
        self._config_file: Path | None = None
        self._run: Path | None = None
        self._stopping = False

    def start(self, form: Any) -> dict[str, Any]:
        if self.refusal is not None:
            raise TrainingRefused(self.refusal)
        config = config_from_form(form, self.base)
        with self._lock:
            if self._process is not None and self._process.poll() is None:
                raise TrainingBusy("a training started from this page is still running: "
                                   "stop it first")
            self._cleanup()
            handle, config_name = tempfile.mkstemp(prefix="mnist-page-", suffix=".yaml")
            with os.fdopen(handle, "w") as file:
                yaml.safe_dump(config, file, sort_keys=False)
            handle, log_name = tempfile.mkstemp(prefix="mnist-page-", suffix=".log")
            self._config_file, self._log = Path(config_name), Path(log_name)
            with os.fdopen(handle, "w") as log:
                # Its own session: a Ctrl-C in the server's terminal reaches the server,
                # which then stops the training itself (`shutdown`).
                self._process = subprocess.Popen(
                    [sys.executable, "-m", "mnist_cli", "train", "--config", config_name,
                     "--out", str(self.output_root)],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True)
            self._run = None
            self._stopping = False
        return self.status()

    def stop(self) -> dict[str, Any]:
        if self.refusal is not None:
            raise TrainingRefused(self.refusal)
        with self._lock:
            if self._process is None or self._process.poll() is not None:
                raise TrainingBusy("no training started from this page is running")
            self._process.send_signal(signal.SIGINT)
            self._stopping = True
        return self.status()

    def _log_lines(self) -> list[str]:
        if self._log is None:
            return []
        with contextlib.suppress(OSError):
            return self._log.read_text(errors="replace").splitlines()
        return []

    def status(self) -> dict[str, Any]:
        """Whether training from the page is allowed, and the newest training's state:
        starting, training, stopping, stopped, finished or failed (with its error line)."""
        with self._lock:
            answer: dict[str, Any] = {"allowed": self.refusal is None,
                                      "refusal": self.refusal, "form": form_choices()}
            if self._process is None:
                return {**answer, "state": None}
            lines = self._log_lines()
            if self._run is None:
                for line in lines:
                    if line.startswith(RUN_LINE):
                        self._run = Path(line[len(RUN_LINE):].strip())
            code = self._process.poll()
            if code is None:
                state = ("stopping" if self._stopping else
                         "training" if self._run is not None else "starting")
            elif code == 0:
                state = "finished"
            elif code == 130:
                state = "stopped"
            else:
                state = "failed"
            error = None
            if state == "failed":
                errors = [line for line in lines if line.startswith("Error")]
                error = (errors or lines or [f"mnist train exited with code {code}"])[-1]
            resume = (f"mnist train --resume {self._run}"
                      if state == "stopped" and self._run is not None else None)
            return {**answer, "state": state, "error": error, "resume": resume,
                    "run": self._run.name if self._run is not None else None}

    @property
    def run_path(self) -> Path | None:
        """The newest training's run directory, once `status()` has read it from the log."""
        return self._run

    def _cleanup(self) -> None:
        for path in (self._config_file, self._log):
            if path is not None:
                with contextlib.suppress(OSError):
                    path.unlink()

    def shutdown(self) -> str | None:
        """The server stops: a training still running is stopped as a Ctrl-C would (its
        checkpoint kept); returns its run folder's name, if any."""
        with self._lock:
            running = self._process is not None and self._process.poll() is None
            if running:
                self._process.send_signal(signal.SIGINT)
        if running:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=30)
        name = self.status()["run"] if running else None
        with self._lock:
            self._cleanup()
        return name
