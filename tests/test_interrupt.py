"""The pieces of resuming that need no training: the Ctrl-C handler, the checkpoint file, the
per-epoch shuffling seeds and the checks `--resume` makes before Keras is imported."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest

from mnist_cli.atomic_files import remove_temporaries
from mnist_cli.config import Config
from mnist_cli.errors import RunDirError
from mnist_cli.runs import CHECKPOINT_FILE
from mnist_cli.training import interrupt
from mnist_cli.training.checkpoints import (
    Checkpoint,
    find_resume_point,
    read_checkpoint,
    write_checkpoint,
)
from mnist_cli.training.engines.contract import epoch_permutation, epoch_seed


def test_first_ctrl_c_asks_to_stop_second_one_quits():
    before = signal.getsignal(signal.SIGINT)
    with interrupt.stop_on_sigint(notice=""):
        assert not interrupt.stop_requested()
        os.kill(os.getpid(), signal.SIGINT)
        assert interrupt.stop_requested()  # no exception: training stops at its next batch
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before


def _checkpoint(**changes) -> Checkpoint:
    values = dict(
        epochs_done=2,
        seed=4,
        data_fingerprint="abc",
        batches_done=5,
        metric_variables=[np.array(1.5, np.float32)],
        states={
            "history": {"rows": [{"epoch": 1, "loss": 0.5}, {"epoch": 2, "loss": 0.25}]},
            "model": {"variables": [np.arange(6, dtype=np.float32).reshape(2, 3),
                                    np.array([7], np.uint32)]},
            "optimizer": {"variables": [np.array(10, np.int64), np.ones(3, np.float32)]},
            "early_stopping": {"best_value": float("nan"), "best_epoch": 2,
                               "stopped_early": False,
                               "best_weights": [np.zeros((2, 3), np.float32)]},
            "schedule": {"plateau_rate": None, "best_weights": []},
        },
    )
    values.update(changes)
    return Checkpoint(**values)


def test_checkpoint_round_trip(tmp_path: Path):
    """Every state comes back under its key: JSON values as they were, lists of arrays
    with their dtypes and shapes."""
    path = tmp_path / CHECKPOINT_FILE
    original = _checkpoint()
    write_checkpoint(path, original)
    loaded = read_checkpoint(path)
    assert (loaded.epochs_done, loaded.batches_done, loaded.seed) == (2, 5, 4)
    assert loaded.history == original.history
    assert set(loaded.states) == set(original.states)
    assert np.isnan(loaded.states["early_stopping"]["best_value"])
    assert loaded.states["schedule"] == {"plateau_rate": None, "best_weights": []}
    pairs = [(loaded.metric_variables, original.metric_variables)] + [
        (loaded.states[key][name], original.states[key][name])
        for key, name in (("model", "variables"), ("optimizer", "variables"),
                          ("early_stopping", "best_weights"))]
    for got, expected in pairs:
        assert len(got) == len(expected)
        for a, b in zip(got, expected):
            assert a.dtype == b.dtype and np.array_equal(a, b)
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT_FILE]  # no temporary left


def test_the_checkpointer_saves_and_restores_every_registered_state(tmp_path: Path):
    """The registry is the whole contract: a new kind of state needs only a key, state()
    and load_state(), and a resume refuses a checkpoint that lacks one of them."""
    from mnist_cli.runs import RunDir
    from mnist_cli.training.checkpoints import Checkpointer

    class Counter:
        def __init__(self, key: str, value: int) -> None:
            self.key, self.value = key, value

        def state(self) -> dict:
            return {"value": self.value, "arrays": [np.full(2, self.value)]}

        def load_state(self, state: dict) -> None:
            self.value = state["value"]
            assert np.array_equal(state["arrays"][0], np.full(2, self.value))

    model = type("Model", (), {"metrics_variables": []})()
    saving = Checkpointer(RunDir(tmp_path), model, [Counter("a", 3), Counter("b", 7)],
                          seed=1, fingerprint="f")
    saving.states[0].value = 4
    saving.save_epoch(0)
    counters = [Counter("a", 0), Counter("b", 0)]
    Checkpointer(RunDir(tmp_path), model, counters, seed=1, fingerprint="f").restore(
        read_checkpoint(tmp_path / CHECKPOINT_FILE))
    assert [counter.value for counter in counters] == [4, 7]
    more = Checkpointer(RunDir(tmp_path), model, [*counters, Counter("c", 0)], seed=1,
                        fingerprint="f")
    with pytest.raises(RunDirError, match="has no c state"):
        more.restore(read_checkpoint(tmp_path / CHECKPOINT_FILE))
    with pytest.raises(ValueError, match="share a key"):
        Checkpointer(RunDir(tmp_path), model, [Counter("a", 0), Counter("a", 1)], seed=1,
                     fingerprint="f")


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_a_damaged_checkpoint_is_one_clear_error(tmp_path: Path, damage: str):
    path = tmp_path / CHECKPOINT_FILE
    write_checkpoint(path, _checkpoint())
    contents = path.read_bytes()
    path.write_bytes({"truncate": contents[: len(contents) // 2], "garbage": b"x" * 100,
                      "empty": b""}[damage])
    with pytest.raises(RunDirError, match="the checkpoint is unreadable.*delete it to restart"):
        read_checkpoint(path)


def test_epoch_shuffles_depend_on_seed_and_epoch_only():
    first = epoch_permutation(3, 5, 100)
    assert np.array_equal(first, epoch_permutation(3, 5, 100))
    assert not np.array_equal(first, epoch_permutation(3, 6, 100))
    assert not np.array_equal(first, epoch_permutation(4, 5, 100))
    np.random.seed(epoch_seed(3, 5))  # what the fit engine does at the start of epoch 5
    assert np.array_equal(np.random.permutation(100), first)


def _run_dir(tmp_path: Path, **config) -> Path:
    run = tmp_path / "run-20250101-000000"
    run.mkdir()
    (run / "config.yaml").write_text(Config.model_validate(config).to_yaml())
    return run


def test_resume_point_of_a_run_killed_before_its_first_epoch(tmp_path: Path):
    run = _run_dir(tmp_path, seed=4)
    (run / ".history.abc123.tmp.csv").write_text("half")
    point = find_resume_point(run)
    assert point.checkpoint is None and point.config.seed == 4
    assert [path.name for path in remove_temporaries(run)] == [".history.abc123.tmp.csv"]


def test_resume_refuses_a_checkpoint_that_disagrees_with_config_yaml(tmp_path: Path):
    run = _run_dir(tmp_path, seed=5, train={"epochs": 10})
    write_checkpoint(run / CHECKPOINT_FILE, _checkpoint())  # seed 4
    with pytest.raises(RunDirError, match="saved with seed 4 but .* says seed 5"):
        find_resume_point(run)
