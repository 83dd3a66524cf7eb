"""Does `mnist predict` see a photographed-looking digit the way `mnist evaluate` sees the
original? Prints one JSON object with the agreement.

`predict` has to undo whatever a user's picture does differently from MNIST: size, polarity,
position. This script takes test digits, prepares each one differently from MNIST (scaled up
to 200x200 with bilinear interpolation, inverted to dark ink on light paper, pasted off-centre
at a random position on a larger canvas of a random size), saves them as PNG, classifies them
with the real CLI (`mnist predict RUN --json`, one process for all of them), and compares
with what `mnist evaluate RUN --predictions FILE` predicted for the very same test digits
from the dataset itself. Both go through the CLI, as a user would run them.

The agreement is the fraction of digits on which both give the same digit; the accuracy of
each against the true labels is printed too. A good preprocessing agrees on at least 95%.

Example:
    MNIST_DATA=../shared/data/mnist.npz python bench/predict_agreement.py \
        outputs/keras-784-500-10-20250101-120000 --count 100 --seed 0
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

DIGIT_SIDE = 200


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="a run directory made by `mnist train`")
    parser.add_argument("--count", type=int, default=100, help="test digits to try (100)")
    parser.add_argument("--seed", type=int, default=0, help="which digits and offsets (0)")
    parser.add_argument("--data", type=Path, default=None,
                        help="the dataset (.npz); default: $MNIST_DATA")
    parser.add_argument("--keep", type=Path, default=None,
                        help="keep the PNGs (and the preprocessed network inputs) in this folder")
    return parser.parse_args()


def run_cli(*arguments: str) -> subprocess.CompletedProcess:
    """`mnist ARGUMENTS...` through this interpreter, so the checkout under test is used."""
    return subprocess.run([sys.executable, "-m", "mnist_cli", *arguments],
                          capture_output=True, text=True, check=False)


def disguise(digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """A 28x28 MNIST digit (light on black) as a user might send it: 200x200, dark ink on
    white, somewhere off-centre on a larger, not necessarily square canvas."""
    enlarged = Image.fromarray(digit).resize((DIGIT_SIDE, DIGIT_SIDE), Image.Resampling.BILINEAR)
    inverted = Image.fromarray(255 - np.asarray(enlarged))
    width, height = (int(side) for side in rng.integers(260, 480, size=2))
    canvas = Image.new("L", (width, height), 255)
    left = int(rng.integers(0, width - DIGIT_SIDE + 1))
    top = int(rng.integers(0, height - DIGIT_SIDE + 1))
    canvas.paste(inverted, (left, top))
    return canvas


def read_predictions(path: Path) -> dict[int, int]:
    with open(path, newline="", encoding="utf-8") as handle:
        return {int(row["index"]): int(row["predicted"]) for row in csv.DictReader(handle)}


def main() -> int:
    arguments = parse_arguments()
    data_path = arguments.data or os.environ.get("MNIST_DATA")
    if data_path is None:
        sys.exit("set MNIST_DATA or pass --data: the test digits are read from the dataset")
    with np.load(data_path) as archive:
        test_images, test_labels = archive["x_test"], archive["y_test"]
    rng = np.random.default_rng(arguments.seed)

    with tempfile.TemporaryDirectory() as temporary:
        folder = arguments.keep or Path(temporary)
        folder.mkdir(parents=True, exist_ok=True)
        predictions_file = Path(temporary) / "predictions.csv"
        started = time.perf_counter()
        evaluated = run_cli("evaluate", str(arguments.run_dir), "--data", str(data_path),
                            "--out", temporary, "--predictions", str(predictions_file))
        if evaluated.returncode != 0:
            sys.exit(f"mnist evaluate failed:\n{evaluated.stderr}")
        evaluate_seconds = time.perf_counter() - started
        evaluate_predictions = read_predictions(predictions_file)
        available = np.array(sorted(evaluate_predictions))
        chosen = np.sort(rng.choice(available, size=min(arguments.count, len(available)),
                                    replace=False))
        paths = []
        for index in chosen:
            path = folder / f"test{index:05d}-label{test_labels[index]}.png"
            disguise(test_images[index], rng).save(path)
            paths.append(path)

        started = time.perf_counter()
        predict_arguments = ["predict", str(arguments.run_dir), *map(str, paths), "--json"]
        if arguments.keep:
            predict_arguments += ["--save-preprocessed", str(folder / "preprocessed")]
        predicted = run_cli(*predict_arguments)
        predict_seconds = time.perf_counter() - started
        if predicted.returncode != 0:
            sys.exit(f"mnist predict failed:\n{predicted.stderr}")
        results = json.loads(predicted.stdout)

    predict_digits = np.array([result["digit"] for result in results])
    evaluate_digits = np.array([evaluate_predictions[int(index)] for index in chosen])
    true_digits = test_labels[chosen].astype(np.int64)
    disagreements = [
        {"index": int(index), "true": int(true), "evaluate": int(original),
         "predict": int(disguised)}
        for index, true, original, disguised
        in zip(chosen, true_digits, evaluate_digits, predict_digits)
        if original != disguised
    ]
    report = {
        "run": str(arguments.run_dir),
        "digits": int(len(chosen)),
        "seed": arguments.seed,
        "preparation": f"{DIGIT_SIDE}x{DIGIT_SIDE} bilinear, inverted (dark on light), "
                       "random position on a 260-479 px canvas",
        "agreement": float(np.mean(predict_digits == evaluate_digits)),
        "predict_accuracy": float(np.mean(predict_digits == true_digits)),
        "evaluate_accuracy": float(np.mean(evaluate_digits == true_digits)),
        "disagreements": disagreements,
        "evaluate_seconds": round(evaluate_seconds, 2),
        "predict_seconds": round(predict_seconds, 2),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
