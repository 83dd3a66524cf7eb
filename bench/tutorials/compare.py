"""Each bundled recipe beside its tutorial's own procedure, over several seeds.

For every recipe: the tutorial's published figure, the reference script of this folder (the
tutorial's procedure in the framework it used) and `mnist train -c configs/<recipe>.yaml`,
each run once per seed in a fresh process, on the real MNIST test set of that recipe.
Prints a Markdown table (mean ± standard deviation over seeds, min-max) and, with --json,
every run's numbers.

    python bench/tutorials/compare.py --seeds 5 --data ../shared/data/mnist.npz
    python bench/tutorials/compare.py --seeds 2 --only softmax nielsen
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent.parent

# (key, config, reference script, the tutorial's own figure)
RECIPES = (
    ("softmax", "softmax-784-10", "softmax_regression.py", "about 92%"),
    ("nielsen", "nielsen-784-30-10", "nielsen_network.py", "about 95% (95.42% at best)"),
    ("keras", "keras-784-500-10", "keras_tutorial.py", "97.30% (472 of 17500 wrong)"),
    ("tf2", "tf2-784-512-256-10", "tf2_gradient_tape.py", "loss only (92.4% scored here)"),
)


def run(command: list[str], environment: dict[str, str]) -> tuple[dict, float]:
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=environment,
                            cwd=PROJECT)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1]), seconds


def reference(script: str, seed: int, environment: dict[str, str]) -> tuple[float, float]:
    numbers, seconds = run([sys.executable, str(HERE / script), "--seed", str(seed)],
                           environment)
    return numbers["test_accuracy"], seconds


def mnist_cli(config: str, seed: int, environment: dict[str, str]) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as output:
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "mnist_cli", "train", "-c", f"configs/{config}.yaml",
             "--seed", str(seed), "--out", output],
            capture_output=True, text=True, env=environment, cwd=PROJECT)
        seconds = time.perf_counter() - started
        if result.returncode != 0:
            raise RuntimeError(f"mnist train -c {config} failed:\n{result.stderr[-3000:]}")
        (metrics_path,) = Path(output).glob("*/metrics.json")
        metrics = json.loads(metrics_path.read_text())
    return metrics["test_accuracy"], seconds


def summary(values: list[float]) -> str:
    mean = statistics.mean(values)
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return (f"{mean:.2%} ± {spread:.2%} ({min(values):.2%}-{max(values):.2%})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (default 5)")
    parser.add_argument("--only", nargs="*", choices=[recipe[0] for recipe in RECIPES])
    parser.add_argument("--data", default=os.environ.get("MNIST_DATA"))
    parser.add_argument("--json", type=Path, help="also write every run's numbers here")
    options = parser.parse_args()
    if not options.data:
        parser.error("give --data PATH or set MNIST_DATA to the mnist.npz file")
    environment = {**os.environ, "MNIST_DATA": str(Path(options.data).resolve())}
    started = time.perf_counter()
    results = []
    for key, config, script, published in RECIPES:
        if options.only and key not in options.only:
            continue
        runs = {"reference": [], "mnist_cli": [], "reference_seconds": [],
                "mnist_cli_seconds": []}
        for seed in range(options.seeds):
            accuracy, seconds = reference(script, seed, environment)
            runs["reference"].append(accuracy)
            runs["reference_seconds"].append(round(seconds, 1))
            accuracy, seconds = mnist_cli(config, seed, environment)
            runs["mnist_cli"].append(accuracy)
            runs["mnist_cli_seconds"].append(round(seconds, 1))
            print(f"{config} seed {seed}: reference {runs['reference'][-1]:.4f}, "
                  f"mnist-cli {runs['mnist_cli'][-1]:.4f}", file=sys.stderr, flush=True)
        results.append({"recipe": config, "published": published, **runs})
    print(f"| config | tutorial's figure | reference script here ({options.seeds} seeds) "
          "| mnist-cli (same seeds) | difference of means |")
    print("|---|---|---|---|---|")
    for result in results:
        difference = statistics.mean(result["mnist_cli"]) - statistics.mean(result["reference"])
        print(f"| `{result['recipe']}.yaml` | {result['published']} | "
              f"{summary(result['reference'])} | {summary(result['mnist_cli'])} | "
              f"{difference * 100:+.2f} points |")
    print(f"\n{time.perf_counter() - started:.0f} s in all")
    if options.json:
        options.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
