"""Start-up: what `mnist` imports before it has work for a backend, and what it prints.

`mnist --help`, `mnist train --help` and a config check (`--dry-run --no-summary`) must
not import Keras, TensorFlow or JAX: each is seconds of start-up. TensorFlow's own native
log lines are hidden (tested with a real TensorFlow in test_engines.py); here, with a
stand-in TensorFlow that fails to import, what it wrote and the error still reach the user.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
QUICKSTART = PROJECT / "configs" / "quickstart.yaml"

IMPORTED_AFTER = """
import json, sys
from mnist_cli.cli import cli
try:
    cli.main({arguments!r}, prog_name="mnist", standalone_mode=False)
except SystemExit:
    pass
heavy = ("keras", "tensorflow", "jax", "torch", "matplotlib", "sklearn")
print("IMPORTED " + json.dumps(sorted(name for name in heavy if name in sys.modules)))
"""


@pytest.mark.parametrize("arguments", [
    ["--help"],
    ["train", "--help"],
    ["train", "-c", str(QUICKSTART), "--dry-run", "--no-summary"],
], ids=["help", "train-help", "dry-run-no-summary"])
def test_help_and_config_checks_import_no_backend(arguments: list[str]):
    result = subprocess.run([sys.executable, "-c", IMPORTED_AFTER.format(arguments=arguments)],
                            capture_output=True, text=True, check=False, cwd=PROJECT)
    assert result.returncode == 0, result.stderr
    line = [text for text in result.stdout.splitlines() if text.startswith("IMPORTED ")][-1]
    # A dry run reads the data and splits it (scikit-learn), as training would.
    allowed = ["sklearn"] if "--dry-run" in arguments else []
    assert json.loads(line.removeprefix("IMPORTED ")) == allowed
    if arguments[-1] == "--no-summary":
        assert "layers: [784, 128, 10]" in result.stdout  # the resolved config was printed


def test_a_failing_tensorflow_import_still_shows_its_messages(tmp_path: Path):
    """TensorFlow's import runs with file descriptor 2 redirected (to hide its log lines);
    when the import fails, what it wrote there is shown, then the error."""
    fake = tmp_path / "fake" / "tensorflow"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        "import os\n"
        "os.write(2, b'native: libtensorflow_framework.so.2: cannot open shared object\\n')\n"
        "raise ImportError('libtensorflow_framework.so.2: cannot open shared object file')\n"
    )
    environment = dict(os.environ, PYTHONPATH=str(tmp_path / "fake"))
    environment.pop("KERAS_BACKEND", None)
    result = subprocess.run(
        [sys.executable, "-m", "mnist_cli", "train", "-c", str(QUICKSTART), "--backend",
         "tensorflow", "--out", str(tmp_path / "outputs")],
        capture_output=True, text=True, check=False, env=environment, cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0] == "native: libtensorflow_framework.so.2: cannot open shared object"
    assert lines[-1].startswith("Error: unexpected ImportError: libtensorflow_framework.so.2")
    assert not (tmp_path / "outputs").exists()  # it failed before making a run directory
