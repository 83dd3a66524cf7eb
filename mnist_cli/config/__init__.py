"""The experiment config: `schema` says what a config may hold, `loading` reads one from
YAML, `--set` overrides and flags. A new config key goes in `schema`."""

from mnist_cli.config.loading import (
    apply_override,
    build_config,
    describe_validation_error,
    load_config,
    parse_override,
    read_yaml_mapping,
)
from mnist_cli.config.schema import (
    IMAGE_SIDE,
    NUM_CLASSES,
    NUM_FEATURES,
    Augment,
    Config,
    DataConfig,
    EarlyStopping,
    Initializer,
    LayerSpec,
    ModelConfig,
    OutputConfig,
    RuntimeConfig,
    Schedule,
    Subset,
    TrainConfig,
)

__all__ = [
    "IMAGE_SIDE",
    "NUM_CLASSES",
    "NUM_FEATURES",
    "Augment",
    "Config",
    "DataConfig",
    "EarlyStopping",
    "Initializer",
    "LayerSpec",
    "ModelConfig",
    "OutputConfig",
    "RuntimeConfig",
    "Schedule",
    "Subset",
    "TrainConfig",
    "apply_override",
    "build_config",
    "describe_validation_error",
    "load_config",
    "parse_override",
    "read_yaml_mapping",
]
