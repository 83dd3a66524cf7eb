"""Bad input, everywhere: one line naming the problem and the fix, exit 2 for usage and config
errors and 1 for runtime failures, no traceback, and no existing file touched.

A table covers every case the robustness issue lists, through the real command line; a
property-based test (hypothesis) then throws hundreds of generated malformed configs at
`mnist train --dry-run` and expects a clean one-line error every time.
"""

from __future__ import annotations

import copy
import errno
import gzip
import hashlib
import os
import string
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from conftest import make_synthetic_mnist
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mnist_cli.cli import cli
from mnist_cli.config import (
    Config,
    DataConfig,
    ModelConfig,
    OutputConfig,
    RuntimeConfig,
    TrainConfig,
)
from mnist_cli.data import write_idx

BASE = {
    "name": "bad",
    "seed": 0,
    "data": {"validation_split": 0.1},
    "model": {"layers": [784, 16, 10]},
    "train": {"epochs": 1, "batch_size": 32},
}


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file under `folder`: its content digest and modification time."""
    return {
        str(path.relative_to(folder)): (hashlib.sha256(path.read_bytes()).hexdigest(),
                                        path.stat().st_mtime_ns)
        for path in sorted(folder.rglob("*")) if path.is_file()
    }


class Workspace:
    """A folder with a valid small dataset and config; cases spoil one thing each."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.arrays = make_synthetic_mnist(400, 100, seed=1)
        self.npz = self.save_npz("mnist.npz", self.arrays)
        self.outputs = folder / "outputs"
        self.config = self.write_config("base.yaml", {})

    def write_config(self, name: str, changes: dict, text: str | None = None) -> Path:
        path = self.folder / name
        if text is None:
            data = copy.deepcopy(BASE)
            data["data"]["path"] = str(self.npz)
            data["output"] = {"root": str(self.outputs)}
            for section, values in changes.items():
                if isinstance(values, dict) and isinstance(data.get(section), dict):
                    data[section].update(values)
                else:
                    data[section] = values
            text = yaml.safe_dump(data)
        path.write_text(text)
        return path

    def save_npz(self, name: str, arrays: dict) -> Path:
        path = self.folder / name
        np.savez(path, **arrays)
        return path

    def train(self, *arguments: str) -> list[str]:
        return ["train", "-c", str(self.config), *arguments]

    def idx_folder(self, spoil: Callable[[Path], None]) -> Path:
        folder = self.folder / "idx"
        folder.mkdir()
        names = {"x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
                 "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte"}
        for key, name in names.items():
            write_idx(folder / name, self.arrays[key])
        spoil(folder)
        return folder


def _wrong_magic(folder: Path) -> None:
    path = folder / "train-images-idx3-ubyte"
    path.write_bytes(b"\x00\x00\x08\x01" + path.read_bytes()[4:])


def _short_idx(folder: Path) -> None:
    path = folder / "t10k-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes()[:-10])


def _data(workspace: Workspace, path: Path) -> list[str]:
    return workspace.train("--set", f"data.path={path}")


def _npz_with(workspace: Workspace, **changes: np.ndarray) -> list[str]:
    arrays = dict(workspace.arrays, **changes)
    return _data(workspace, workspace.save_npz("spoilt.npz", arrays))


def _truncated_npz(workspace: Workspace) -> list[str]:
    path = workspace.folder / "truncated.npz"
    path.write_bytes(workspace.npz.read_bytes()[:5000])
    return _data(workspace, path)


def _corrupt_npz(workspace: Workspace) -> list[str]:
    path = workspace.folder / "corrupt.npz"
    np.savez_compressed(path, **workspace.arrays)
    contents = bytearray(path.read_bytes())
    contents[len(contents) // 3: len(contents) // 3 + 64] = bytes(64)
    path.write_bytes(bytes(contents))
    return _data(workspace, path)


def _gzip_not_idx(workspace: Workspace) -> list[str]:
    folder = workspace.idx_folder(lambda folder: None)
    (folder / "train-images-idx3-ubyte").unlink()
    with gzip.open(folder / "train-images-idx3-ubyte.gz", "wb") as handle:
        handle.write(b"<html>Not Found</html>")
    return _data(workspace, folder)


def _not_a_run(workspace: Workspace) -> list[str]:
    folder = workspace.folder / "holiday-photos"
    folder.mkdir()
    (folder / "beach.jpg").write_bytes(b"\xff\xd8")
    return ["train", "--resume", str(folder)]


def _finished_run(workspace: Workspace) -> list[str]:
    run = workspace.outputs / "bad-20250101-120000"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(Config().to_yaml())
    (run / "metrics.json").write_text('{"test_accuracy": 0.97}\n')
    return ["train", "--resume", str(run)]


def _fake_model(workspace: Workspace) -> list[str]:
    folder = workspace.folder / "sent-by-a-stranger"
    folder.mkdir()
    (folder / "model.keras").write_bytes(b"PK\x03\x04 this is not a Keras archive")
    return ["evaluate", str(folder / "model.keras"), "-c", str(workspace.config)]


def _output_is_a_file(workspace: Workspace) -> list[str]:
    blocker = workspace.folder / "not-a-folder"
    blocker.write_text("a file where the output folder should be")
    return workspace.train("--out", str(blocker / "runs"))


def _read_only_output(workspace: Workspace) -> list[str]:
    if os.geteuid() == 0:
        pytest.skip("root can write into read-only folders")
    folder = workspace.folder / "read-only"
    folder.mkdir()
    folder.chmod(0o500)
    return workspace.train("--out", str(folder))


def _full_disk(workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    def no_space(descriptor: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    return workspace.train()


def _a_bug(workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    def broken(*arguments, **options):
        raise RuntimeError("something nobody foresaw")

    monkeypatch.setattr("mnist_cli.config.load_config", broken)
    return workspace.train()


def _config(name: str, changes: dict | None = None, text: str | None = None):
    return lambda workspace: ["train", "-c", str(
        workspace.write_config(name, changes or {}, text))]


# (case, arguments for `mnist`, exit code, a phrase of the one error line)
CASES = [
    ("empty YAML", _config("empty.yaml", text=""), 2, "the config file is empty"),
    ("YAML syntax error", _config("syntax.yaml", text="name: x\ntrain:\n  epochs: [3\n"), 2,
     "line 4, column 1: YAML syntax error"),
    ("a list, not a mapping", _config("list.yaml", text="- 784\n- 10\n"), 2,
     "the config must be a mapping of keys"),
    ("a section that is a list", _config("section.yaml", {"train": [1, 2]}), 2,
     "train: must be a mapping of keys, not a list"),
    ("unknown key", _config("unknown.yaml", {"train": {"epoch": 3}}), 2,
     "train.epoch: unknown key"),
    ("misspelt optimizer", _config("optimizer.yaml", {"train": {"optimizer": "adma"}}), 2,
     "train.optimizer: must be one of 'adam', 'adamw', 'sgd' or 'rmsprop'"),
    ("misspelt activation", _config("activation.yaml", {"model": {"hidden_activation": "rleu"}}),
     2, "model.hidden_activation: must be one of"),
    ("negative layer size", _config("layer.yaml", {"model": {"layers": [784, -16, 10]}}), 2,
     "model.layers[1]: must be greater than 0"),
    ("zero batch size", _config("zero-batch.yaml", {"train": {"batch_size": 0}}), 2,
     "train.batch_size: must be greater than 0"),
    ("negative epochs", _config("negative-epochs.yaml", {"train": {"epochs": -2}}), 2,
     "train.epochs: must be greater than 0"),
    ("zero subset", _config("subset.yaml", {"data": {"subset": {"train": 0}}}), 2,
     "data.subset.train: must be greater than 0"),
    ("batch size larger than the data", lambda workspace: workspace.train("--batch-size", "500"),
     2, "train.batch_size: 500 is larger than the 360 training samples"),
    ("learning rate 0", _config("rate-zero.yaml", {"train": {"learning_rate": 0}}), 2,
     "train.learning_rate: must be greater than 0"),
    ("negative learning rate", lambda workspace: workspace.train(
        "--set", "train.learning_rate=-0.1"), 2, "train.learning_rate: must be greater than 0"),
    ("non-numeric epochs", _config("epochs-text.yaml", {"train": {"epochs": "ten"}}), 2,
     "train.epochs: must be a valid integer"),
    ("epochs: yes", _config("epochs-yes.yaml", text="train:\n  epochs: yes\n"), 2,
     "train.epochs: must be a number, not true"),
    ("missing data file", lambda workspace: _data(workspace, workspace.folder / "nope.npz"), 1,
     "nope.npz does not exist"),
    ("truncated .npz", _truncated_npz, 1, "not a readable .npz archive"),
    ("corrupt .npz", _corrupt_npz, 1, "corrupt.npz"),
    ("IDX wrong magic number", lambda workspace: _data(workspace, workspace.idx_folder(
        _wrong_magic)), 1, "magic number 0x00000801"),
    ("IDX shorter than its header", lambda workspace: _data(workspace, workspace.idx_folder(
        _short_idx)), 1, "truncated: the header promises 100 values"),
    ("gzip that is not IDX", _gzip_not_idx, 1, "not an IDX file: wrong magic number"),
    ("label 10", lambda workspace: _npz_with(
        workspace, y_train=np.where(np.arange(400) == 7, 10, workspace.arrays["y_train"])), 1,
     "labels span 0..10; expected class numbers 0-9"),
    ("negative label", lambda workspace: _npz_with(
        workspace, y_test=workspace.arrays["y_test"].astype(np.int64) - 1), 1,
     "labels span -1..8"),
    ("images and labels of different counts", lambda workspace: _npz_with(
        workspace, y_train=workspace.arrays["y_train"][:-3]), 1,
     "x_train has 400 images but y_train has 397 labels"),
    ("not a run directory", _not_a_run, 1, "not a run directory (no config.yaml)"),
    ("--resume of a finished run", _finished_run, 1, "this run already finished"),
    ("--resume with a config", lambda workspace: [
        "train", "--resume", str(workspace.folder), "-c", str(workspace.config)], 2,
     "--resume continues the run with its own config.yaml: drop --config"),
    ("--resume with --seed 0", lambda workspace: [
        "train", "--resume", str(workspace.folder), "--seed", "0"], 2, "drop --seed"),
    ("--no-summary without --dry-run", lambda workspace: [
        "train", "-c", str(workspace.config), "--no-summary"], 2,
     "--no-summary goes with --dry-run"),
    (".keras that is not a model", _fake_model, 1, "is not a Keras model that can be loaded"),
    ("output folder under a file", _output_is_a_file, 1, "cannot create the output folder"),
    ("read-only output folder", _read_only_output, 1, "is not writable"),
    ("full disk", _full_disk, 1, "no space left on the device"),
    ("an unexpected exception", _a_bug, 1,
     "unexpected RuntimeError: something nobody foresaw (a bug"),
]


@pytest.mark.parametrize("make_arguments, exit_code, phrase",
                         [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_input_gets_one_line_and_changes_nothing(tmp_path, monkeypatch, make_arguments,
                                                     exit_code, phrase):
    workspace = Workspace(tmp_path)
    needs_monkeypatch = make_arguments in (_full_disk, _a_bug)
    arguments = (make_arguments(workspace, monkeypatch) if needs_monkeypatch
                 else make_arguments(workspace))
    before = snapshot(tmp_path)
    result = CliRunner().invoke(cli, arguments)
    monkeypatch.undo()
    lines = result.output.strip().splitlines()
    assert result.exit_code == exit_code, result.output
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert phrase in lines[0]
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert snapshot(tmp_path) == before, "a file was written, changed or removed"


def test_an_unexpected_exception_shows_its_traceback_on_request(tmp_path, monkeypatch):
    workspace = Workspace(tmp_path)
    arguments = _a_bug(workspace, monkeypatch)
    monkeypatch.setenv("MNIST_CLI_TRACEBACK", "1")
    result = CliRunner().invoke(cli, arguments)
    assert isinstance(result.exception, RuntimeError)


# ------------------------------------------------------------------- generated configs

SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig,
            "runtime": RuntimeConfig, "output": OutputConfig}
# Fields that take a number, and numbers that are out of their range.
NUMBERS = {
    ("seed",): st.integers(max_value=-1) | st.integers(min_value=2**32),
    ("train", "epochs"): st.integers(max_value=0),
    ("train", "batch_size"): st.integers(max_value=0),
    ("train", "learning_rate"): st.floats(max_value=0.0) | st.sampled_from(
        [float("inf"), float("nan")]),
    ("train", "momentum"): st.floats(min_value=1.0, allow_infinity=False) | st.floats(
        max_value=-1e-9, allow_infinity=False),
    ("model", "dropout"): st.floats(min_value=1.0, allow_infinity=False),
    ("model", "l2"): st.floats(max_value=-1e-9, allow_infinity=False),
    ("train", "label_smoothing"): st.floats(min_value=1.0, allow_infinity=False),
    ("data", "binarize_threshold"): st.floats(min_value=1.0) | st.floats(max_value=-1e-9),
    ("data", "validation_split"): st.floats(max_value=-1e-9, allow_infinity=False)
    | st.floats(min_value=1.01, max_value=1e6).filter(lambda value: not value.is_integer()),
}
CHOICES = {
    ("train", "optimizer"): {"adam", "adamw", "sgd", "rmsprop"},
    ("train", "loss"): {"categorical_crossentropy", "mse", "quadratic"},
    ("train", "engine"): {"auto", "fit", "fast"},
    ("model", "hidden_activation"): {"relu", "sigmoid", "tanh", "softmax", "linear", "elu",
                                     "selu", "gelu", "softplus", "swish"},
    ("model", "output_activation"): {"softmax", "sigmoid", "linear"},
    ("data", "dataset"): {"mnist", "fashion_mnist", "openml"},
    ("runtime", "backend"): {"auto", "tensorflow", "jax", "torch"},
}
BROKEN_YAML = ["key: [1, 2\n", "  oops: {\n", "\tname: tab\n", "a: b: c\n", "- item\n",
               "x: *nowhere\n", "x: !!python/object/apply:os.system ['echo owned']\n",
               "'unclosed: 1\n", "x: @reserved\n"]


def _numeric(text: str) -> bool:
    try:
        float(text.strip())
    except ValueError:
        return False
    return True


non_numbers = (
    st.text(max_size=10).filter(lambda text: not _numeric(text))
    | st.booleans() | st.none() | st.lists(st.integers(), max_size=3)
    | st.dictionaries(st.text(max_size=5), st.integers(), max_size=2)
)
scalars = st.integers() | st.floats(allow_nan=False) | st.text(max_size=10) | st.booleans()


@st.composite
def malformed_configs(draw) -> tuple[str, str]:
    """(kind, YAML text) of a config with exactly one kind of mistake, always invalid."""
    kind = draw(st.sampled_from([
        "unknown key", "number out of range", "not a number", "misspelt choice",
        "section not a mapping", "document not a mapping", "bad layers", "bad name",
        "broken YAML",
    ]))
    document = copy.deepcopy(BASE)
    if kind == "unknown key":
        section = draw(st.sampled_from([None, *SECTIONS]))
        known = set(Config.model_fields) if section is None else set(
            SECTIONS[section].model_fields)
        key = draw(st.text(string.ascii_lowercase + "_", min_size=1, max_size=12).filter(
            lambda name: name not in known))
        target = document if section is None else document.setdefault(section, {})
        target[key] = draw(scalars)
    elif kind in ("number out of range", "not a number"):
        path = draw(st.sampled_from(sorted(NUMBERS)))
        value = draw(NUMBERS[path] if kind == "number out of range" else non_numbers)
        target = document
        for part in path[:-1]:
            target = target.setdefault(part, {})
        target[path[-1]] = value
    elif kind == "misspelt choice":
        path = draw(st.sampled_from(sorted(CHOICES)))
        value = draw(st.text(max_size=15).filter(lambda text: text not in CHOICES[path])
                     | st.integers() | st.lists(st.sampled_from(sorted(CHOICES[path])),
                                                min_size=1, max_size=2))
        document.setdefault(path[0], {})[path[1]] = value
    elif kind == "section not a mapping":
        document[draw(st.sampled_from(sorted(SECTIONS)))] = draw(
            scalars | st.none() | st.lists(scalars, max_size=3))
    elif kind == "document not a mapping":
        document = draw(scalars | st.none() | st.lists(scalars, max_size=4))
    elif kind == "bad layers":
        document["model"]["layers"] = draw(st.one_of(
            st.lists(st.just(784), max_size=1),
            st.lists(st.integers(min_value=1, max_value=1000), min_size=2, max_size=5).filter(
                lambda sizes: sizes[0] != 784 or sizes[-1] != 10),
            st.tuples(st.just(784), st.integers(max_value=0), st.just(10)).map(list),
            st.tuples(st.just(784), non_numbers, st.just(10)).map(list),
            scalars,
        ))
    elif kind == "bad name":
        document["name"] = draw(
            st.text(min_size=1, max_size=20).filter(
                lambda name: not set(name) <= set(string.ascii_letters + string.digits + "._-")
                or name.startswith("."))
            | st.sampled_from(["", "../../etc", "/tmp/x", "." * 3, "a" * 101]))
    text = yaml.safe_dump(document, allow_unicode=True)
    if kind == "broken YAML":
        text += draw(st.sampled_from(BROKEN_YAML))
    return kind, text


@pytest.fixture(scope="module")
def generated() -> Counter:
    counts: Counter = Counter()
    yield counts
    print(f"\nproperty test: {sum(counts.values())} malformed configs generated, every one "
          f"refused with one clean line and exit 2; by kind: {dict(sorted(counts.items()))}")


@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=malformed_configs())
def test_generated_malformed_configs_get_one_clean_line(tmp_path_factory, generated, case):
    kind, text = case
    path = tmp_path_factory.getbasetemp() / "generated.yaml"
    path.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(cli, ["train", "-c", str(path), "--dry-run", "--no-summary"])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2, f"{kind}:\n{text}\n{result.output}"
    assert len(lines) == 1 and lines[0].startswith(f"Error: {path}"), result.output
    assert "Traceback" not in result.output
    generated[kind] += 1


@settings(max_examples=100, deadline=None)
@given(contents=st.text(max_size=60).map(str.encode) | st.binary(max_size=60))
def test_any_file_is_a_config_or_one_clean_line(tmp_path_factory, contents):
    """Arbitrary bytes: a valid config (`{}` is one: all defaults) or one line and exit 2."""
    path = tmp_path_factory.getbasetemp() / "arbitrary.yaml"
    path.write_bytes(contents)
    result = CliRunner().invoke(cli, ["train", "-c", str(path), "--dry-run", "--no-summary"])
    assert result.exit_code in (0, 2), result.output
    if result.exit_code == 2:
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output
