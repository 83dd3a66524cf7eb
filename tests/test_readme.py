"""Every command the README shows, run as written, in its order, from a folder laid out like
a fresh clone (the bundled configs/ and sweeps/ beside an empty outputs/), on the real MNIST.

Only what a command needs from outside is supplied, as a user would: a Ctrl-C'd training
before `mnist train --resume latest`, a digit picture for `mnist predict`, and, for the two
servers (`mnist serve`, `tensorboard`), a request to the page before they are stopped with
Ctrl-C. The commands are read from the README itself, so a new one is walked too.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
SERVERS = {"serve": re.compile(r"Open (http://\S+) in a browser"),
           "tensorboard": re.compile(r"(http://\S+:\d+/?)")}

pytestmark = pytest.mark.slow


def readme_commands() -> list[str]:
    """The commands of the README's shell blocks, comments dropped, in order; `pip install`
    and `pytest` (this suite) aside, and the set-up line's `... && mnist train ...` kept
    as its last part."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(encoding="utf-8"), re.S):
        for line in block.splitlines():
            line = line.split(" #")[0].strip()
            if not line or line.startswith(("git clone", "export ", "pytest")):
                continue
            commands.append(line.split("&&")[-1].strip())
    return commands


def test_the_readme_lists_the_commands_this_test_walks():
    commands = readme_commands()
    assert commands[0] == "mnist train -c configs/keras-784-500-10.yaml"
    assert {shlex.split(command)[1] for command in commands if command.startswith("mnist ")} >= {
        "train", "evaluate", "show-errors", "predict", "runs", "compare", "serve", "export",
        "sweep"}


@pytest.fixture
def clone(tmp_path, monkeypatch) -> Path:
    if not os.environ.get("MNIST_DATA"):
        pytest.skip("the README's commands train on the real MNIST: set MNIST_DATA")
    for folder in ("configs", "sweeps"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    from PIL import Image

    with np.load(os.environ["MNIST_DATA"]) as mnist:
        Image.fromarray(255 - mnist["x_test"][0]).save(tmp_path / "my-digit.png")  # dark ink
    return tmp_path


def _environment() -> dict[str, str]:
    bin_folder = str(Path(sys.executable).parent)  # `mnist` and `tensorboard` of this venv
    return {**os.environ, "PATH": f"{bin_folder}{os.pathsep}{os.environ.get('PATH', '')}"}


def _start(command: str, folder: Path) -> subprocess.Popen:
    return subprocess.Popen(command, shell=True, cwd=folder, env=_environment(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)


def _stop(process: subprocess.Popen) -> str:
    os.killpg(process.pid, signal.SIGINT)
    try:
        rest, _ = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        rest, _ = process.communicate()
    return rest


def _read_until(process: subprocess.Popen, pattern: re.Pattern, seen: list[str]) -> re.Match:
    for line in process.stdout:
        seen.append(line)
        match = pattern.search(line)
        if match:
            return match
    raise AssertionError(f"never printed {pattern.pattern!r}:\n{''.join(seen)}")


def _interrupted_training(folder: Path) -> None:
    """What `--resume latest` is for: a training stopped with Ctrl-C after its first epoch."""
    process = _start("mnist train -c configs/quickstart.yaml", folder)
    seen: list[str] = []
    _read_until(process, re.compile(r"epoch 1/3"), seen)
    rest = _stop(process)
    assert process.returncode == 130, "".join(seen) + rest
    assert "Resume with: mnist train --resume" in rest


def _server(command: str, folder: Path) -> str:
    """Start a server command as written, open its page, then Ctrl-C it."""
    name = "serve" if command.startswith("mnist ") else shlex.split(command)[0]
    process = _start(command, folder)
    seen: list[str] = []
    try:
        address = _read_until(process, SERVERS[name], seen).group(1)
        with urllib.request.urlopen(address, timeout=60) as response:
            assert response.status == 200
            page = response.read().decode("utf-8", "replace")
    finally:
        rest = _stop(process)
    assert "Traceback" not in "".join(seen) + rest
    return page


def test_every_readme_command_runs_as_written(clone):
    for command in readme_commands():
        words = shlex.split(command)
        if words[:2] == ["mnist", "serve"] or words[0] == "tensorboard":
            assert "<" in _server(command, clone)  # an HTML page
            continue
        if words[:3] == ["mnist", "train", "--resume"]:
            _interrupted_training(clone)
        result = subprocess.run(command, shell=True, cwd=clone, env=_environment(), text=True,
                                capture_output=True, timeout=900)
        assert result.returncode == 0, f"$ {command}\n{result.stdout}\n{result.stderr}"
        assert "Traceback" not in result.stderr, f"$ {command}\n{result.stderr}"
    assert (clone / "curves.png").is_file()
    assert list((clone / "outputs").glob("quickstart-*/export/onnx/model.onnx"))
