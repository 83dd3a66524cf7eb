"""Benchmark: `mnist train` against a plain Keras script, side by side, on the real MNIST.

The network is configs/keras-784-500-10.yaml's (784-500-10 ReLU/softmax, Adam 1e-3, batch 300,
binarized pixels) on the protocol of bench/plain_keras.py: the official split, pixels / 255 >
0.5, 54000 training images after a 10% validation split (`BENCHMARK_PROTOCOL`). Every candidate
runs in a fresh process, in interleaved rounds (the order rotates from round to round, so
a slow minute of a noisy machine does not land on one candidate), and the table gives the
medians:

- `plain`: bench/plain_keras.py, `model.fit` as a user writes it, TensorFlow backend;
- `mnist <backend> <engine>`: `mnist train` with each backend (jax, tensorflow, torch) and
  engine (fast, fit; torch has fit only); the JAX fast engine twice: with its compile cache
  `warm` (filled by a run before the rounds) and `cold` (an empty cache folder for every
  run). A backend that is not installed is left out, with a note.

Per candidate: fit seconds (the plain script: `model.fit`; mnist-cli: `train_seconds` of
metrics.json, the engine's whole work: data to the device, compiling, the epochs, the
per-epoch history and checkpoint writes), seconds per epoch, training samples per second,
test accuracy and peak resident memory (ru_maxrss); ratios against the plain script of the
same epochs. Also: the wall time of `mnist --help`, and of `import keras` per backend.

Example:
    python bench/run.py --rounds 3
    python bench/run.py --rounds 5 --epochs 5 20 --data /data/mnist.npz --json results.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parent.parent
RECIPE = PROJECT / "configs" / "keras-784-500-10.yaml"
PLAIN_SCRIPT = PROJECT / "bench" / "plain_keras.py"
TRAIN_SAMPLES = 54000  # 60000 minus the 10% validation split, in both programs
# The recipe's tutorial protocol (a pooled split, no validation) differs from the plain
# script's; the benchmark compares the two programs on one protocol.
BENCHMARK_PROTOCOL = ("data.split=official", "data.binarize_threshold=0.5",
                      "data.validation_split=0.1")

# (name, backend, engine, JAX compile cache: "warm", "cold" or None)
CANDIDATES = [
    ("mnist jax fast (warm cache)", "jax", "fast", "warm"),
    ("mnist jax fast (cold cache)", "jax", "fast", "cold"),
    ("mnist jax fit", "jax", "fit", None),
    ("mnist tensorflow fast", "tensorflow", "fast", None),
    ("mnist tensorflow fit", "tensorflow", "fit", None),
    ("mnist torch fit", "torch", "fit", None),
]
PLAIN = "plain Keras (tensorflow, model.fit)"


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--epochs", type=int, nargs="+", default=[5, 20],
                        help="epoch counts to measure (default: 5 20; 20 is the recipe)")
    parser.add_argument("--data", type=Path, default=None,
                        help="MNIST .npz (default: $MNIST_DATA, else ../shared/data/mnist.npz)")
    parser.add_argument("--only", nargs="*", default=None, metavar="TEXT",
                        help="run only the candidates whose name contains one of these")
    parser.add_argument("--help-runs", type=int, default=5,
                        help="`mnist --help` runs per round (default 5)")
    parser.add_argument("--json", type=Path, default=None,
                        help="where to write the results (default outputs/bench/run-<time>.json)")
    return parser.parse_args()


def data_path(given: Path | None) -> Path:
    candidates = [given, os.environ.get("MNIST_DATA"),
                  PROJECT.parent / "shared" / "data" / "mnist.npz"]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate).resolve()
    sys.exit("No MNIST .npz found: pass --data PATH or set MNIST_DATA")


def clean_environment(**extra: str) -> dict[str, str]:
    """The environment of a candidate: no backend, cache or thread settings inherited."""
    removed = ("KERAS_BACKEND", "JAX_COMPILATION_CACHE_DIR", "MNIST_CLI_JAX_CACHE",
               "XLA_FLAGS", "TF_CPP_MIN_LOG_LEVEL")
    environment = {key: value for key, value in os.environ.items() if key not in removed}
    environment.update(extra)
    return environment


def cpu_pressure() -> float | None:
    """The share of the last 10 s in which some task waited for a CPU (Linux PSI), in %."""
    try:
        line = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    fields = dict(item.split("=") for item in line.split()[1:])
    return float(fields["avg10"])


def run_plain(epochs: int, data: Path) -> dict[str, Any]:
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, str(PLAIN_SCRIPT), "--epochs", str(epochs), "--data", str(data)],
        capture_output=True, text=True, env=clean_environment(), check=False, timeout=900)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"plain_keras.py failed:\n{result.stderr[-2000:]}")
    report = json.loads(result.stdout.strip().splitlines()[-1])
    return {
        "fit_seconds": report["fit_seconds"],
        "test_accuracy": report["test_accuracy"],
        "peak_memory_mib": report["peak_rss_mib"],
        "import_seconds": report["import_seconds"],
        "wall_seconds": round(wall, 3),
    }


def run_mnist(epochs: int, data: Path, backend: str, engine: str, cache: Path | None,
              scratch: Path) -> dict[str, Any]:
    output_root = Path(tempfile.mkdtemp(prefix="runs-", dir=scratch))
    environment = clean_environment(MNIST_CLI_JAX_CACHE=str(cache) if cache else "off")
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "mnist_cli", "train", "-c", str(RECIPE), "--epochs", str(epochs),
         "--backend", backend, "--engine", engine, "--set", f"data.path={data}",
         *[argument for setting in BENCHMARK_PROTOCOL for argument in ("--set", setting)],
         # As a user runs it, TensorBoard log included (its cost: bench/tensorboard_cost.py).
         "--out", str(output_root)],
        capture_output=True, text=True, env=environment, check=False, timeout=900)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"mnist train failed:\n{result.stdout[-1000:]}\n{result.stderr[-2000:]}")
    (run_dir,) = output_root.iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    epoch_seconds = [float(line.split(",")[-1]) for line in
                     (run_dir / "history.csv").read_text().splitlines()[1:]]
    shutil.rmtree(output_root, ignore_errors=True)
    return {
        "fit_seconds": metrics["train_seconds"],
        "test_accuracy": metrics["test_accuracy"],
        "peak_memory_mib": metrics["peak_memory_mib"],
        "first_epoch_seconds": epoch_seconds[0],
        "later_epoch_median_seconds": statistics.median(epoch_seconds[1:])
        if len(epoch_seconds) > 1 else None,
        "wall_seconds": round(wall, 3),
        "backend_version": metrics["versions"]["backend_version"],
    }


def time_command(arguments: list[str], environment: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(arguments, capture_output=True, env=environment, check=True, timeout=120)
    return time.perf_counter() - started


def mnist_command() -> list[str]:
    """The `mnist` entry point as a user runs it (the console script beside this Python)."""
    script = Path(sys.executable).with_name("mnist")
    return [str(script)] if script.exists() else [sys.executable, "-m", "mnist_cli"]


def import_keras_seconds(backend: str) -> float:
    code = ("import time; started = time.perf_counter(); import keras; "
            "print(time.perf_counter() - started)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=clean_environment(KERAS_BACKEND=backend,
                                                  TF_CPP_MIN_LOG_LEVEL="2"),
                            check=True, timeout=300)
    return float(result.stdout.strip().splitlines()[-1])


def summarize(runs: list[dict[str, Any]], epochs: int) -> dict[str, Any]:
    def median(key: str) -> float | None:
        values = [run[key] for run in runs if run.get(key) is not None]
        return round(statistics.median(values), 4) if values else None

    fit = median("fit_seconds")
    return {
        "runs": len(runs),
        "fit_seconds": fit,
        "fit_seconds_all": [run["fit_seconds"] for run in runs],
        "seconds_per_epoch": round(fit / epochs, 4),
        "samples_per_second": round(TRAIN_SAMPLES * epochs / fit),
        "test_accuracy": median("test_accuracy"),
        "peak_memory_mib": median("peak_memory_mib"),
        "first_epoch_seconds": median("first_epoch_seconds"),
        "later_epoch_median_seconds": median("later_epoch_median_seconds"),
        "wall_seconds": median("wall_seconds"),
    }


def versions() -> dict[str, str]:
    code = ("import importlib.metadata as m, json; print(json.dumps({name: m.version(name) "
            "for name in ('keras', 'tensorflow', 'jax', 'jaxlib', 'numpy')}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=False)
    found = json.loads(result.stdout) if result.returncode == 0 else {}
    return {"python": platform.python_version(), **found}


def machine() -> str:
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}"


def print_table(results: dict[str, Any]) -> None:
    for epochs, table in results["candidates"].items():
        plain = table[PLAIN]
        print(f"\n{epochs} epochs (medians of {plain['runs']} runs each)")
        header = (f"{'candidate':<36} {'fit s':>7} {'s/epoch':>8} {'samples/s':>10} "
                  f"{'ratio':>6} {'test acc':>8} {'Δ pts':>6} {'peak MiB':>9} {'mem×':>5}")
        print(header)
        print("-" * len(header))
        for name, row in table.items():
            ratio = row["fit_seconds"] / plain["fit_seconds"]
            points = 100 * (row["test_accuracy"] - plain["test_accuracy"])
            memory = row["peak_memory_mib"] / plain["peak_memory_mib"]
            print(f"{name:<36} {row['fit_seconds']:>7.2f} {row['seconds_per_epoch']:>8.3f} "
                  f"{row['samples_per_second']:>10,} {ratio:>6.2f} "
                  f"{100 * row['test_accuracy']:>7.2f}% {points:>+6.2f} "
                  f"{row['peak_memory_mib']:>9.0f} {memory:>5.2f}")
    startup = results["startup"]
    print(f"\nmnist --help: {startup['mnist_help_seconds']:.3f} s wall (median of "
          f"{len(startup['mnist_help_seconds_all'])})")
    for backend, seconds in startup["import_keras_seconds"].items():
        print(f"import keras ({backend} backend): {seconds:.2f} s (median)")


def main() -> None:
    arguments = parse_arguments()
    data = data_path(arguments.data)
    candidates = [(PLAIN, None, None, None), *CANDIDATES]
    if arguments.only:
        candidates = [candidate for candidate in candidates
                      if any(text in candidate[0] for text in arguments.only)
                      or candidate[0] == PLAIN]
    installed = [backend for backend in ("jax", "tensorflow", "torch")
                 if importlib.util.find_spec(backend) is not None]
    missing = sorted({backend for _, backend, _, _ in candidates
                      if backend and backend not in installed})
    if missing:
        print(f"not installed, left out: {', '.join(missing)}", flush=True)
        candidates = [candidate for candidate in candidates if candidate[1] not in missing]
    scratch = Path(tempfile.mkdtemp(prefix="mnist-bench-"))
    warm_cache = scratch / "jax-cache-warm"
    runs: dict[tuple[int, str], list[dict[str, Any]]] = {}
    help_times: list[float] = []
    import_times: dict[str, list[float]] = {backend: [] for backend in installed}
    pressure_at_start = cpu_pressure()
    started = time.time()
    try:
        if any(candidate[3] == "warm" for candidate in candidates):
            print("warming the JAX compile cache ...", flush=True)
            run_mnist(min(arguments.epochs), data, "jax", "fast", warm_cache, scratch)
        for round_index in range(arguments.rounds):
            for epochs in arguments.epochs:
                shift = round_index % len(candidates)
                for name, backend, engine, cache in candidates[shift:] + candidates[:shift]:
                    pressure = cpu_pressure()
                    if name == PLAIN:
                        run = run_plain(epochs, data)
                    else:
                        folder = warm_cache if cache == "warm" else (
                            Path(tempfile.mkdtemp(prefix="jax-cache-cold-", dir=scratch))
                            if cache == "cold" else None)
                        run = run_mnist(epochs, data, backend, engine, folder, scratch)
                    run["cpu_pressure_avg10_before"] = pressure
                    runs.setdefault((epochs, name), []).append(run)
                    print(f"round {round_index + 1}/{arguments.rounds}, {epochs} epochs, "
                          f"{name}: fit {run['fit_seconds']:.2f} s, test accuracy "
                          f"{run['test_accuracy']:.4f}, peak {run['peak_memory_mib']:.0f} MiB"
                          + (f" (CPU pressure {pressure:.0f}% before)" if pressure else ""),
                          flush=True)
            environment = clean_environment()
            for _ in range(arguments.help_runs):
                help_times.append(time_command([*mnist_command(), "--help"], environment))
            for backend in import_times:
                import_times[backend].append(import_keras_seconds(backend))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine(),
        "versions": versions(),
        "data": str(data),
        "rounds": arguments.rounds,
        "minutes": round((time.time() - started) / 60, 1),
        "cpu_pressure_avg10": {"start": pressure_at_start, "end": cpu_pressure()},
        "candidates": {},
        "ratios_to_plain": {},
        "startup": {
            "mnist_help_seconds": round(statistics.median(help_times), 3),
            "mnist_help_seconds_all": [round(value, 3) for value in help_times],
            "import_keras_seconds": {backend: round(statistics.median(values), 2)
                                     for backend, values in import_times.items()},
        },
        "runs": {f"{epochs} epochs / {name}": values for (epochs, name), values in runs.items()},
    }
    for epochs in arguments.epochs:
        table = {name: summarize(runs[(epochs, name)], epochs)
                 for name, *_ in candidates if (epochs, name) in runs}
        results["candidates"][str(epochs)] = table
        plain = table[PLAIN]
        results["ratios_to_plain"][str(epochs)] = {
            name: {
                "fit_time": round(row["fit_seconds"] / plain["fit_seconds"], 3),
                "test_accuracy_points": round(
                    100 * (row["test_accuracy"] - plain["test_accuracy"]), 2),
                "peak_memory": round(row["peak_memory_mib"] / plain["peak_memory_mib"], 3),
            }
            for name, row in table.items() if name != PLAIN
        }
    print_table(results)
    target = arguments.json or PROJECT / "outputs" / "bench" / (
        f"run-{time.strftime('%Y%m%d-%H%M%S')}.json")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nJSON: {target}")


if __name__ == "__main__":
    main()
