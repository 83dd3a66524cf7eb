"""What `mnist export` costs and how closely each file agrees with the Keras model: for each
format (and `--raw`), a fresh `mnist export RUN --json` process, as a user runs it, into a
temporary folder. Prints one JSON object: per export the file size, the seconds Keras took
to write it, the seconds of the check, the whole command's wall time, and the agreement on
the run's test digits (same predicted digit, largest probability difference).

Example:
    MNIST_DATA=../shared/data/mnist.npz python bench/export.py \
        outputs/keras-784-500-10-20250101-120000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXPORTS = [("onnx", False), ("onnx", True), ("saved_model", False), ("litert", False)]
FILE_NAMES = {"onnx": "model.onnx", "saved_model": "saved_model", "litert": "model.tflite"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--formats", nargs="*", default=None,
                        help="only these formats (onnx, saved_model, litert)")
    arguments = parser.parse_args()
    environment = dict(os.environ, MNIST_CLI_JAX_CACHE="off")
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for format_name, raw in EXPORTS:
            if arguments.formats and format_name not in arguments.formats:
                continue
            out = Path(folder) / f"{format_name}{'-raw' if raw else ''}" / FILE_NAMES[format_name]
            out.parent.mkdir()
            command = [sys.executable, "-m", "mnist_cli", "export", str(arguments.run_dir),
                       "--format", format_name, "--out", str(out), "--json"]
            if raw:
                command.append("--raw")
            started = time.perf_counter()
            ran = subprocess.run(command, capture_output=True, text=True, env=environment,
                                 check=False)
            wall = time.perf_counter() - started
            if ran.returncode != 0:
                results.append({"format": format_name, "raw": raw,
                                "error": (ran.stderr or ran.stdout).strip().splitlines()[-1:]})
                continue
            report = json.loads(ran.stdout[ran.stdout.index("{"):])
            results.append({key: report[key] for key in (
                "format", "raw", "size_bytes", "export_seconds", "check_seconds", "test_digits",
                "same_prediction", "max_probability_difference", "accuracy")}
                | {"command_seconds": round(wall, 2)})
    print(json.dumps({"run": str(arguments.run_dir), "exports": results}, indent=2))


if __name__ == "__main__":
    main()
