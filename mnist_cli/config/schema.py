"""The experiment config's schema: every key, its type, range and default.

The sections live in `sections`; here are the runtime and output sections and the whole
`Config`, which checks what spans sections and writes a run's config.yaml. Every model
forbids unknown keys, so a typo is an error that names the key. The choices come from
`choices`. Imports neither Keras nor TensorFlow: validating a config stays instant.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, field_validator, model_validator

from mnist_cli import choices
from mnist_cli.config.sections import (  # noqa: F401  (the schema's names, in one place)
    IMAGE_SIDE,
    NUM_CLASSES,
    NUM_FEATURES,
    Augment,
    DataConfig,
    EarlyStopping,
    Initializer,
    LayerSpec,
    ModelConfig,
    Schedule,
    Strict,
    Subset,
    TrainConfig,
    plain_types,
)

MAX_SNAPSHOT_WEIGHTS = 1_000_000
"""train.snapshots keeps one float16 copy of the weights per epoch: at most 2 MB each."""


class RuntimeConfig(Strict):
    backend: Literal[choices.BACKEND_CHOICES] = Field(
        default="auto", description="Keras backend; 'auto' uses KERAS_BACKEND, else the fastest."
    )
    deterministic: bool = Field(
        default=False, description="The backend's deterministic kernels (slower on a GPU).")
    devices: Literal["all"] | Annotated[int, Field(ge=1)] = Field(
        default=1,
        description="Devices to train on, each batch split across them (data parallel, JAX "
        "backend): a number, or 'all'.",
    )

    @field_validator("devices", mode="before")
    @classmethod
    def _devices_not_true_false(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("must be a number of devices or 'all', not true/false")
        return value


class OutputConfig(Strict):
    root: str = Field(default="outputs",
                      description="The folder that receives <name>-<timestamp>/ run folders.")


class Config(Strict):
    name: Annotated[str, Field(min_length=1, max_length=100)] = Field(
        default="run", description="The run folder's name before its timestamp.")
    seed: Annotated[int, Field(ge=0, lt=2**32)] = Field(
        default=0, description="Seeds the weights, the splits, the shuffling and dropout.")
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)

    @field_validator("name")
    @classmethod
    def _safe_name(cls, name: str) -> str:
        allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
        if not set(name) <= allowed or name.startswith("."):
            raise ValueError(
                "use only letters, digits, '.', '_' and '-' (not starting with '.'): "
                "the name becomes a folder inside the output root"
            )
        return name

    @model_validator(mode="after")
    def _plateau_has_its_metric(self) -> Config:
        schedule = self.train.schedule
        if (schedule.name == "plateau" and schedule.monitor.startswith("val_")
                and self.data.validation_split == 0):
            raise ValueError(
                f"train.schedule.monitor: {schedule.monitor} needs a validation set but "
                "data.validation_split is 0; monitor loss or accuracy, or hold out a validation "
                "set")
        return self

    @model_validator(mode="after")
    def _early_stopping_has_its_metric(self) -> Config:
        settings = self.train.early_stopping
        if (settings is not None and settings.monitor.startswith("val_")
                and self.data.validation_split == 0):
            raise ValueError(
                f"train.early_stopping.monitor: {settings.monitor} needs a validation set but "
                "data.validation_split is 0; monitor loss or accuracy, or hold out a validation "
                "set"
            )
        return self

    @model_validator(mode="after")
    def _stack_fits_data(self) -> Config:
        stack = self.model.stack()
        if stack[0] != NUM_FEATURES:
            raise ValueError(
                f"model.layers: the first size is {stack[0]} but the {self.data.dataset} images "
                f"have {NUM_FEATURES} features (28x28): start the stack with {NUM_FEATURES}"
            )
        if stack[-1] != NUM_CLASSES:
            raise ValueError(
                f"model.layers: the last size is {stack[-1]} but there are {NUM_CLASSES} "
                f"classes: end the stack with {NUM_CLASSES}"
            )
        return self

    @model_validator(mode="after")
    def _snapshots_stay_small(self) -> Config:
        weights = self.model.weight_count()
        if self.train.snapshots and weights > MAX_SNAPSHOT_WEIGHTS:
            raise ValueError(
                f"train.snapshots: the net has {weights:,} weights, more than the "
                f"{MAX_SNAPSHOT_WEIGHTS:,} a per-epoch snapshot is kept for; set "
                "train.snapshots to false or use a smaller net")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain data, every default filled in: what `config.yaml` of a run holds."""
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.dump(self.to_dict(), Dumper=ConfigDumper, sort_keys=False)


class ConfigDumper(yaml.SafeDumper):
    """Block style for sections, flow style for short lists such as `layers: [784, 500, 10]`."""


def _represent_list(dumper: yaml.SafeDumper, items: list) -> yaml.Node:
    scalars = all(not isinstance(item, (dict, list)) for item in items)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", items, flow_style=scalars)


ConfigDumper.add_representer(list, _represent_list)
