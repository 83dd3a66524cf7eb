"""`mnist ensemble`: the committee's numbers by hand on a tiny case, and the command on two
tiny runs, with its refusals of members that do not share the test set or preprocessing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from conftest import write_tiny_config

from mnist_cli.cli import cli
from mnist_cli.inspection.ensemble import committee_report
from mnist_cli.runtime import activate_backend


@pytest.fixture(autouse=True)
def keras_backend() -> str:
    return activate_backend("auto")


def probabilities(rows: list[dict[int, float]]) -> np.ndarray:
    """(N, 10) probabilities from {digit: probability} per row, the rest spread evenly."""
    outputs = np.zeros((len(rows), 10))
    for position, row in enumerate(rows):
        rest = (1.0 - sum(row.values())) / (10 - len(row))
        outputs[position] = rest
        for digit, value in row.items():
            outputs[position, digit] = value
    return outputs


def test_the_committee_averages_probabilities_by_hand():
    labels = np.array([3, 5, 7])
    # Member a is right on digits 0 and 1, member b on digits 1 and 2; on digit 0 the
    # committee's mean (0.35 for 3 against 0.3 for 8) is right, on digit 2 it follows b.
    a = probabilities([{3: 0.6, 8: 0.3}, {5: 0.9}, {1: 0.5, 7: 0.3}])
    b = probabilities([{3: 0.1, 8: 0.3}, {5: 0.7}, {7: 0.8, 1: 0.1}])
    report = committee_report(labels, [a, b])
    assert report["member_accuracies"] == pytest.approx([2 / 3, 2 / 3])
    assert report["accuracy"] == 1.0 and report["num_errors"] == 0
    mean_true = [(0.6 + 0.1) / 2, (0.9 + 0.7) / 2, (0.3 + 0.8) / 2]
    assert report["loss"] == pytest.approx(-np.mean(np.log(mean_true)), rel=1e-6)
    matrix = np.array(report["confusion_matrix"])
    assert matrix[3, 3] == matrix[5, 5] == matrix[7, 7] == 1 and matrix.sum() == 3
    # A committee's mistake: both members lean to 8 on the first digit.
    report = committee_report(labels, [probabilities([{8: 0.5}, {5: 0.9}, {7: 0.9}]), b])
    assert report["num_errors"] == 1 and np.array(report["confusion_matrix"])[3, 8] == 1


def train_tiny(folder: Path, mnist_path: Path, name: str, seed: int) -> Path:
    config = write_tiny_config(folder / f"{name}.yaml", mnist_path, folder / name, name=name,
                               seed=seed, data={"subset": {"train": 600, "test": 200}},
                               train={"epochs": 1, "tensorboard": False})
    result = CliRunner().invoke(cli, ["train", "-c", str(config)])
    assert result.exit_code == 0, result.output
    (run_dir,) = (folder / name).iterdir()
    return run_dir


@pytest.mark.slow
def test_mnist_ensemble_reports_the_committee_and_refuses_mismatched_members(
        tmp_path, mnist_path):
    runs = [train_tiny(tmp_path, mnist_path, f"member{seed}", seed) for seed in (1, 2)]
    out = tmp_path / "committee"
    result = CliRunner().invoke(cli, ["ensemble", *map(str, runs), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    members = [json.loads((run / "metrics.json").read_text()) for run in runs]
    assert [member["accuracy"] for member in report["members"]] == [
        member["test_accuracy"] for member in members]
    assert report["num_samples"] == 200
    assert sum(map(sum, report["confusion_matrix"])) == 200
    assert {path.name for path in out.iterdir()} == {"ensemble.json", "confusion_matrix.png",
                                                     "errors.png"}
    text = CliRunner().invoke(cli, ["ensemble", *map(str, runs), "--out", str(out)])
    assert "Members (accuracy alone):" in text.output and "the committee" in text.output

    def variant(name: str, change) -> Path:
        copy = tmp_path / name
        shutil.copytree(runs[1], copy)
        config = yaml.safe_load((copy / "config.yaml").read_text())
        change(config["data"])
        (copy / "config.yaml").write_text(yaml.safe_dump(config))
        return copy

    other_test = variant("other-test", lambda data: data["subset"].update(test=100))
    other_pixels = variant("other-pixels", lambda data: data.update(binarize=True))
    for odd, words in ((other_test, "different test sets"),
                       (other_pixels, "prepare the test digits differently")):
        refused = CliRunner().invoke(cli, ["ensemble", str(runs[0]), str(odd)])
        assert refused.exit_code != 0 and words in refused.output, refused.output
        assert "Traceback" not in refused.output
    # A refused committee leaves no ensemble-<time> folder behind.
    assert not list(runs[0].parent.glob("ensemble-*"))
