"""What a run will train, decided before it starts: the prepared data, checked against the
batch size, and the number of epochs (a step budget, `train.steps`, sets it). `mnist train
--dry-run` checks a config with these very functions. Imports no Keras.
"""

from __future__ import annotations

from mnist_cli.config import Config
from mnist_cli.data import PreparedData, check_batch_size, prepare
from mnist_cli.errors import ConfigError, DatasetNotFound
from mnist_cli.training.engines.contract import batches_in_epoch, epochs_for_steps


def prepare_for_training(config: Config) -> tuple[PreparedData, Config]:
    """The data, checked against the batch size, and the config with the epochs its step
    budget takes: everything about a run that can be checked without training."""
    try:
        data = prepare(config)
    except DatasetNotFound as error:
        raise DatasetNotFound(f"{error}, or --set data.path=PATH") from None
    check_batch_size(config, data)
    return data, with_step_budget(config, len(data.y_train))


def with_step_budget(config: Config, train_count: int) -> Config:
    """`config` with `train.epochs` set to what its step budget takes (`train.steps`), so
    that the run's config.yaml, the progress lines and resume all count those epochs. An
    `epochs` given beside `steps` must agree with it."""
    train = config.train
    if train.steps is None:
        return config
    epochs = epochs_for_steps(train.steps, train_count, train.batch_size)
    if "epochs" in train.model_fields_set and train.epochs != epochs:
        raise ConfigError(
            f"train.epochs: {train.epochs} does not match train.steps: {train.steps} batches of "
            f"{train.batch_size} from {train_count} training images take {epochs} "
            f"epoch{'s' if epochs != 1 else ''}; "
            "give train.steps or train.epochs, not both"
        )
    config = config.model_copy(deep=True)
    config.train.epochs = epochs
    return config


def samples_trained(config: Config, train_count: int, epochs: int) -> int:
    """Training images seen in `epochs` epochs (fewer in the last epoch of a step budget)."""
    return sum(min(train_count, batches_in_epoch(config.train, epoch, train_count)
                   * config.train.batch_size) for epoch in range(epochs))
