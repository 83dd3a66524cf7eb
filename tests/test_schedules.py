"""Learning-rate schedules (`train.schedule`): the rate of every epoch by formula, the rates
history.csv records, reduce-on-plateau's state across a resume, and an augmented,
scheduled run resumed after its first epoch equal to the uninterrupted one."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import stop_after_epoch, write_tiny_config

from mnist_cli.cli import cli
from mnist_cli.config import Schedule
from mnist_cli.runs import read_history
from mnist_cli.runtime import activate_backend
from mnist_cli.training.checkpoints import Checkpointer
from mnist_cli.training.schedules import LearningRateSchedule, scheduled_rate


@pytest.fixture(autouse=True)
def keras_backend() -> str:
    return activate_backend("auto")


class _Rate:
    def __init__(self) -> None:
        self.value = None

    def assign(self, value: float) -> None:
        self.value = value


class _Optimizer:
    def __init__(self) -> None:
        self.learning_rate = _Rate()


def rates(settings: dict, epochs: int, base: float = 0.1) -> list[float]:
    return [scheduled_rate(Schedule(**settings), base, epoch, epochs) for epoch in range(epochs)]


def test_each_schedule_gives_the_rates_of_its_formula():
    assert rates({"name": "constant"}, 3) == [0.1, 0.1, 0.1]
    assert rates({"name": "step", "step_epochs": 2, "factor": 0.5}, 5) == pytest.approx(
        [0.1, 0.1, 0.05, 0.05, 0.025])
    assert rates({"name": "exponential", "factor": 0.9}, 3) == pytest.approx([0.1, 0.09, 0.081])
    cosine = rates({"name": "cosine", "warmup_epochs": 2, "min_learning_rate": 0.01}, 6)
    assert cosine[:2] == pytest.approx([0.05, 0.1])  # the warm-up: r/W, 2r/W
    assert cosine[2] == pytest.approx(0.1)
    assert cosine[3] == pytest.approx(0.01 + 0.09 * 0.5 * (1 + math.cos(math.pi / 4)))
    assert cosine[4] == pytest.approx(0.055)  # half way down: the mean of r and the floor
    assert all(later < earlier for earlier, later in zip(cosine[2:], cosine[3:]))


def test_cosine_restarts_go_back_to_the_base_rate_at_each_cycle_of_growing_length():
    restarts = rates({"name": "cosine_restarts", "warmup_epochs": 1, "cycle_epochs": 2,
                      "cycle_mult": 2, "min_learning_rate": 0.01}, 1 + 2 + 4 + 2)
    assert restarts[0] == pytest.approx(0.1)  # the one warm-up epoch
    # Cycles of 2 then 4 epochs, each from r down along its own half cosine, then a third.
    assert restarts[1:3] == pytest.approx([0.1, 0.055])
    assert restarts[3:7] == pytest.approx(
        [0.01 + 0.09 * 0.5 * (1 + math.cos(math.pi * step / 4)) for step in range(4)])
    assert restarts[7:] == pytest.approx([0.1, 0.1 - 0.09 * 0.5 * (1 - math.cos(math.pi / 8))])
    equal = rates({"name": "cosine_restarts", "cycle_epochs": 3, "cycle_mult": 1}, 9)
    assert equal[:3] == pytest.approx(equal[3:6]) and equal[3:6] == pytest.approx(equal[6:])


def test_reduce_on_plateau_waits_patience_epochs_and_keeps_its_state():
    settings = Schedule(name="plateau", patience=2, factor=0.5, monitor="val_loss",
                        min_learning_rate=0.03)
    schedule = LearningRateSchedule(settings, 0.1, 10, _Optimizer())
    seen = []
    for epoch, value in enumerate([1.0, 0.9, 0.95, 0.92, 0.91, 0.93, 0.94, 0.95]):
        schedule.epoch_started(epoch)
        seen.append(schedule.optimizer.learning_rate.value)
        schedule.update({"epoch": epoch + 1, "val_loss": value})
    # No improvement after epoch 2 (0.9): two epochs later halved, two more halved again,
    # then held at the floor.
    assert seen == pytest.approx([0.1, 0.1, 0.1, 0.1, 0.05, 0.05, 0.03, 0.03])
    resumed = LearningRateSchedule(settings, 0.1, 10, _Optimizer())
    resumed.load_state(schedule.state())
    resumed.epoch_started(8)
    assert resumed.optimizer.learning_rate.value == schedule.rate(8)
    assert resumed.state() == schedule.state()


def train(folder: Path, mnist_path: Path, name: str, **sections) -> Path:
    config = write_tiny_config(folder / f"{name}.yaml", mnist_path, folder / name, name=name,
                               **sections)
    result = CliRunner().invoke(cli, ["train", "-c", str(config)])
    assert result.exit_code == 0, result.output
    (run_dir,) = (folder / name).iterdir()
    return run_dir


SECTIONS = {
    "data": {"subset": {"train": 1000, "test": 200},
             "augment": {"rotation": 10.0, "translation": 1.5, "elastic_alpha": 30.0,
                         "elastic_sigma": 5.0}},
    "train": {"epochs": 3, "tensorboard": False,
              "schedule": {"name": "plateau", "patience": 1, "factor": 0.5,
                           "monitor": "loss", "min_delta": 10.0}},
}


@pytest.mark.slow
def test_history_shows_the_rate_of_each_epoch_and_a_resumed_run_is_the_uninterrupted_one(
        tmp_path, mnist_path, monkeypatch):
    """An augmented run whose plateau schedule halves the rate after every epoch but the
    first (which sets the best loss; none improves on it by 10): stopped after its first
    epoch (as Ctrl-C stops it), then resumed, it has the very history of the run never
    stopped."""
    reference = read_history(train(tmp_path, mnist_path, "whole", **SECTIONS) / "history.csv")
    assert [row["learning_rate"] for row in reference] == [0.001, 0.001, 0.0005]

    original = stop_after_epoch(monkeypatch, 0)
    config = write_tiny_config(tmp_path / "stopped.yaml", mnist_path, tmp_path / "stopped",
                               name="stopped", **SECTIONS)
    assert CliRunner().invoke(cli, ["train", "-c", str(config)]).exit_code == 130
    monkeypatch.setattr(Checkpointer, "save_epoch", original)
    (run_dir,) = (tmp_path / "stopped").iterdir()
    result = CliRunner().invoke(cli, ["train", "--resume", str(run_dir)])
    assert result.exit_code == 0, result.output
    resumed = read_history(run_dir / "history.csv")
    for key in ("loss", "accuracy", "val_loss", "learning_rate"):
        assert [row[key] for row in resumed] == [row[key] for row in reference]
