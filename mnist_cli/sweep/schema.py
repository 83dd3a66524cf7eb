"""The sweep file's schema: the base config, the search space over its keys, the sampler,
the metric, the number of trials and the pruning.

A sweep file names its base config by path (relative to the sweep file); the sweep folder
keeps a resolved copy (`SavedSweep`) holding the whole base config instead, so a sweep can be
resumed, or joined by another worker, without the files it started from. Imports neither
Keras nor Optuna.
"""

from __future__ import annotations

import copy
import itertools
import math
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from mnist_cli import choices
from mnist_cli.config import Config, build_config, read_yaml_mapping
from mnist_cli.config.loading import apply_override, describe_validation_error
from mnist_cli.config.schema import ConfigDumper, Strict
from mnist_cli.errors import ConfigError

GRID_LIMIT = 10_000  # points of a grid: more is a typo in a range, not a sweep


class Parameter(Strict):
    """One searched config key: a list of `choices`, or a range from `low` to `high`
    (whole numbers when both ends are, optionally on a log scale or in steps)."""

    choices: list[Any] | None = None
    low: int | float | None = None
    high: int | float | None = None
    log: bool = False
    step: Annotated[int | float, Field(gt=0)] | None = None

    @field_validator("choices")
    @classmethod
    def _plain_choices(cls, values: list[Any] | None) -> list[Any] | None:
        if values is None:
            return None
        if not values:
            raise ValueError("needs at least one choice")
        for value in values:
            if value is not None and not isinstance(value, (bool, int, float, str)):
                raise ValueError(
                    f"a choice must be a number, a string, true/false or null (got {value!r}); "
                    "to vary one item of a list use its position, e.g. model.layers.1"
                )
        return values

    @model_validator(mode="after")
    def _one_kind(self) -> Parameter:
        has_range = self.low is not None or self.high is not None
        if self.choices is not None:
            if has_range or self.log or self.step is not None:
                raise ValueError("give either choices or a range (low, high), not both")
            return self
        if self.low is None or self.high is None:
            raise ValueError("needs choices: [...] or a range with both low and high")
        if isinstance(self.low, bool) or isinstance(self.high, bool):
            raise ValueError("low and high must be numbers")
        if self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError("a log scale needs low > 0")
        if self.log and self.step is not None:
            raise ValueError("a range has either log: true or a step, not both")
        if self.kind == "int" and self.step is not None and not float(self.step).is_integer():
            raise ValueError("a range of whole numbers needs a whole step")
        return self

    @property
    def kind(self) -> str:
        """'choices', 'int' (both ends whole numbers) or 'float'."""
        if self.choices is not None:
            return "choices"
        if isinstance(self.low, int) and isinstance(self.high, int):
            return "int"
        return "float"

    def grid_values(self, key: str) -> list[Any]:
        """Every value a grid visits: the choices, or the range in its steps."""
        if self.kind == "choices":
            return list(self.choices)
        if self.kind == "int" and not self.log:
            step = int(self.step or 1)
            return list(range(int(self.low), int(self.high) + 1, step))
        if self.kind == "float" and self.step is not None:
            # The steps that fit in the range (the tolerance keeps `high` when it is on one).
            count = math.floor((self.high - self.low) / self.step + 1e-9) + 1
            return [round(self.low + index * self.step, 12) for index in range(count)]
        raise ConfigError(
            f"space.{key}: a grid needs choices or a range with a step (a log range has no "
            "grid points): write choices: [...]"
        )

    def example(self) -> Any:
        """A value from the space, to check early that the key fits the base config."""
        return self.choices[0] if self.kind == "choices" else self.low


class Pruning(Strict):
    """Stopping unpromising trials early on the per-epoch validation metric."""

    method: Literal[choices.SWEEP_PRUNERS] = "median"
    startup_trials: Annotated[int, Field(ge=0)] = Field(
        default=3, description="median: trials that run to the end before any is pruned.")
    warmup_epochs: Annotated[int, Field(ge=0)] = Field(
        default=1, description="median: epochs of every trial that are never pruned.")
    min_epochs: Annotated[int, Field(ge=1)] = Field(
        default=1, description="successive_halving: epochs before the first rung.")
    reduction_factor: Annotated[int, Field(ge=2)] = Field(
        default=3, description="successive_halving: 1 in reduction_factor trials goes on.")


class SweepSettings(Strict):
    """What a sweep file and the saved copy in the sweep folder have in common."""

    name: Annotated[str, Field(min_length=1, max_length=80)] = "sweep"
    space: dict[str, Parameter] = Field(default_factory=dict)
    sampler: Literal[choices.SWEEP_SAMPLERS] = "tpe"
    seed: Annotated[int, Field(ge=0, lt=2**31)] = 0
    trials: Annotated[int, Field(gt=0)] | None = None
    metric: Literal[choices.SWEEP_METRICS] = "val_accuracy"
    pruning: Pruning | None = None

    @field_validator("name")
    @classmethod
    def _safe_name(cls, name: str) -> str:
        return Config._safe_name(name)

    @field_validator("pruning", mode="before")
    @classmethod
    def _pruning_shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            return None if value == "none" else {"method": value}
        return value

    @model_validator(mode="after")
    def _space_and_count(self) -> SweepSettings:
        if not self.space:
            raise ValueError("space: name at least one config key to search, e.g. "
                             "train.learning_rate: {low: 0.0001, high: 0.01, log: true}")
        if self.sampler != "grid" and self.trials is None:
            raise ValueError(f"trials: how many trials the {self.sampler} sampler runs")
        return self

    @property
    def direction(self) -> str:
        return "minimize" if self.metric.endswith("loss") else "maximize"

    def grid(self) -> dict[str, list[Any]]:
        grid = {key: parameter.grid_values(key) for key, parameter in self.space.items()}
        size = 1
        for values in grid.values():
            size *= len(values)
        if size > GRID_LIMIT:
            raise ConfigError(f"space: the grid has {size} points (at most {GRID_LIMIT})")
        return grid

    def trial_count(self) -> int:
        """How many complete trials the sweep ends with: `trials`, or the whole grid."""
        if self.trials is not None:
            return self.trials
        return len(list(itertools.product(*self.grid().values())))


class SweepFile(SweepSettings):
    """The sweep file a user writes."""

    base: str | None = Field(default=None, description="The base config, relative to this file.")
    set: dict[str, Any] = Field(default_factory=dict,
                                description="Config keys every trial overrides, dotted.")


class SavedSweep(SweepSettings):
    """The sweep folder's `sweep.yaml`: the settings, with the whole base config."""

    base_config: dict[str, Any]
    storage: Literal["journal", "url"] = "journal"

    def trial_config(self, params: dict[str, Any], name: str, output_root: str) -> Config:
        """The config of one trial: the base with `params` (dotted keys) set."""
        data = copy.deepcopy(self.base_config)
        for key, value in params.items():
            apply_override(data, key.split("."), value)
        data["name"] = name
        data.setdefault("output", {})["root"] = output_root
        return build_config(data, f"trial {name} ({_describe_params(params)})")

    def to_yaml(self) -> str:
        return yaml.dump(self.model_dump(mode="json", exclude_none=True), Dumper=ConfigDumper,
                         sort_keys=False)


def _describe_params(params: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value}" for key, value in params.items())


def _validated(model: type[SweepSettings], data: dict[str, Any], source: str) -> SweepSettings:
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise ConfigError(f"{source}: {describe_validation_error(error)}") from None


def load_sweep_file(path: str | Path) -> SavedSweep:
    """Read and check a sweep file; resolve its base config (with `set`) once, and check
    that every searched key fits it, so a typo fails here rather than in trial 1."""
    path = Path(path)
    data = read_yaml_mapping(path)
    data.setdefault("name", path.stem)
    sweep = _validated(SweepFile, data, str(path))
    base: dict[str, Any] = {}
    if sweep.base is not None:
        base = read_yaml_mapping(path.parent / sweep.base)
    for key, value in sweep.set.items():
        apply_override(base, key.split("."), value)
    base_config = build_config(base, f"{path}: base {sweep.base or '(defaults)'} with set")
    return saved_sweep(sweep, base_config, str(path))


def seeds_sweep(config: Config, seeds: int) -> SavedSweep:
    """A sweep that repeats `config` with `seeds` seeds, from the config's own onward."""
    settings = SweepSettings(
        name=f"{config.name}-seeds"[:80],
        space={"seed": Parameter(choices=[config.seed + index for index in range(seeds)])},
        sampler="grid",
        trials=seeds,
        metric="val_accuracy" if config.data.validation_split > 0 else "accuracy",
    )
    return saved_sweep(settings, config, "--seeds")


def saved_sweep(settings: SweepSettings, base_config: Config, source: str) -> SavedSweep:
    fields = {name: getattr(settings, name) for name in SweepSettings.model_fields}
    saved = SavedSweep(**fields, base_config=base_config.to_dict())
    example = {key: parameter.example() for key, parameter in saved.space.items()}
    try:
        trial = saved.trial_config(example, "trial-check", "outputs")
    except ConfigError as error:
        raise ConfigError(f"{source}: space: {error}") from None
    if saved.metric.startswith("val_") and trial.data.validation_split == 0:
        # Checked here, not after trial 0 has trained for nothing.
        raise ConfigError(
            f"{source}: metric: {saved.metric} needs a validation set, and the base config "
            "holds none out: add data.validation_split (e.g. 0.1) under set:, or use "
            "metric: accuracy (the training accuracy)")
    if saved.sampler == "grid":
        saved.grid()
    return saved


def read_saved_sweep(path: str | Path) -> SavedSweep:
    return _validated(SavedSweep, read_yaml_mapping(path), str(path))
