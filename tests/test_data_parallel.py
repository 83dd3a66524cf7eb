"""Data parallel training (`runtime.devices`) on 4 CPU devices: the same numbers as on one.

XLA makes 4 CPU devices when `XLA_FLAGS=--xla_force_host_platform_device_count=4` is set
before JAX starts, so every run here is a `mnist train` subprocess with that variable; the
one-device reference runs in the same setting with `runtime.devices: 1`. Splitting a batch
over devices changes only the order in which its gradients are summed: the numbers agree
to float32 rounding.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_tiny_config

from mnist_cli.runs import read_history

pytestmark = pytest.mark.slow  # trainings on four virtual devices, in subprocesses

pytest.importorskip("jax", reason='data parallel training runs on JAX: pip install -e ".[jax]"')

TIMING = {"seconds", "train_seconds", "samples_per_second", "peak_memory_mib"}
FOUR_CPUS = "--xla_force_host_platform_device_count=4"


def train(tmp_path: Path, mnist_path: Path, engine: str, devices: int | str,
          batch_size: int = 64, model: dict | None = None) -> subprocess.CompletedProcess:
    name = f"{engine}-{devices}-{batch_size}"
    # 1800 training and 200 validation samples in batches of 64: every batch, the short
    # last ones included (8 samples), splits into 4 equal parts.
    config = write_tiny_config(tmp_path / f"{name}.yaml", mnist_path, tmp_path / name,
                               model={"layers": [784, 32, 10], "dropout": 0.1,
                                      **(model or {})},
                               train={"engine": engine, "batch_size": batch_size},
                               runtime={"devices": devices, "backend": "jax"})
    environment = dict(os.environ, XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} {FOUR_CPUS}")
    return subprocess.run([sys.executable, "-m", "mnist_cli", "train", "-c", str(config)],
                          capture_output=True, text=True, env=environment, timeout=300)


def numbers(output_root: Path) -> tuple[list[dict], dict]:
    (run,) = output_root.iterdir()
    history = [{key: value for key, value in row.items() if key not in TIMING}
               for row in read_history(run / "history.csv")]
    metrics = json.loads((run / "metrics.json").read_text())
    return history, metrics


@pytest.mark.parametrize(("engine", "model"), [
    ("fast", None), ("fit", None), ("fast", {"batch_norm": True, "l2": 0.001})],
    ids=["fast", "fit", "fast-batch-norm-l2"])
def test_four_devices_train_as_one(tmp_path, mnist_path, engine, model):
    """With batch normalization, each step's moments are those of the whole batch (the
    padding rows of the last one masked out), however it is split across the devices."""
    for devices in (1, 4):
        result = train(tmp_path, mnist_path, engine, devices, model=model)
        assert result.returncode == 0, result.stderr
    one_history, one_metrics = numbers(tmp_path / f"{engine}-1-64")
    four_history, four_metrics = numbers(tmp_path / f"{engine}-4-64")
    assert one_metrics["devices"] == {"count": 1, "platform": "cpu"}
    assert four_metrics["devices"] == {"count": 4, "platform": "cpu"}
    assert len(four_history) == len(one_history) == 2
    for one_row, four_row in zip(one_history, four_history):
        for key, value in one_row.items():
            assert four_row[key] == pytest.approx(value, abs=1e-5), key
    for key in ("test_loss", "test_accuracy"):
        assert four_metrics[key] == pytest.approx(one_metrics[key], abs=1e-5), key


def test_devices_that_do_not_divide_the_batch_are_one_error_line(tmp_path, mnist_path):
    result = train(tmp_path, mnist_path, "fast", 4, batch_size=66)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(
        "Error: runtime.devices: 4 devices split every batch in 4 equal parts, but "
        "train.batch_size has 66 samples")
    output_root = tmp_path / "fast-4-66"
    assert not output_root.exists() or not any(output_root.iterdir())  # no run left behind

    too_many = train(tmp_path, mnist_path, "fast", 8)
    assert too_many.returncode == 2
    assert "8 devices asked for, but JAX sees 4" in too_many.stderr
