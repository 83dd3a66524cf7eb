"""The config's sections: what a run trains on (`data`), the network (`model`) and how it is
trained (`train`), each key with its type, range, default and description. Every model
forbids unknown keys and refuses true/false for a number (`Strict`).
"""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from mnist_cli import choices

NUM_CLASSES = 10
IMAGE_SIDE = 28
NUM_FEATURES = IMAGE_SIDE * IMAGE_SIDE

Activation = Literal[choices.ACTIVATIONS]
OutputActivation = Literal[choices.OUTPUT_ACTIVATIONS]


def plain_types(annotation: Any) -> set[Any]:
    """The classes a field's annotation admits, looking through Annotated, unions, Optional."""
    arguments = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return plain_types(arguments[0])
    if origin in (typing.Union, types.UnionType):
        return set().union(*(plain_types(argument) for argument in arguments))
    return {annotation}


def _is_number_field(annotation: Any) -> bool:
    kinds = plain_types(annotation) - {type(None)}
    return bool(kinds) and kinds <= {int, float}


class Strict(BaseModel):
    """Unknown keys are errors; so are infinities, NaN, and true/false given for a number.

    Pydantic would read `epochs: yes` (YAML's true) as 1 and `learning_rate: .inf` as a rate:
    both are typos a user wants to hear about, not settings.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_true_false_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, bool) and info.field_name is not None:
            field_info = cls.model_fields.get(info.field_name)
            if field_info is not None and _is_number_field(field_info.annotation):
                raise ValueError(f"must be a number, not {str(value).lower()}")
        return value


class Subset(Strict):
    """Use only part of the data, for quick runs. `train` samples are drawn at random (seeded)
    from the training set; `test` takes the first N test images so their indices stay those
    of the official test set."""

    train: Annotated[int, Field(gt=0)] | None = Field(
        default=None, description="Training images to keep, drawn at random (seeded).")
    test: Annotated[int, Field(gt=0)] | None = Field(
        default=None, description="Test images to keep: the first N of the test set.")


class Augment(Strict):
    """Distortions of the training images, drawn anew for every image in every epoch
    (`data/augment.py`); validation and test images are never distorted. Each range is
    symmetric: a value is drawn uniformly in [-range, range]. 0 turns a distortion off."""

    rotation: Annotated[float, Field(ge=0.0, le=180.0)] = Field(
        default=0.0, description="Largest rotation, in degrees.")
    scale: Annotated[float, Field(ge=0.0, lt=1.0)] = Field(
        default=0.0, description="Largest change of size, a fraction: 0.1 scales by 0.9 to 1.1.")
    shear: Annotated[float, Field(ge=0.0, lt=90.0)] = Field(
        default=0.0, description="Largest horizontal shear angle, in degrees.")
    translation: Annotated[float, Field(ge=0.0, le=14.0)] = Field(
        default=0.0, description="Largest shift along each axis, in pixels.")
    elastic_alpha: Annotated[float, Field(ge=0.0, le=200.0)] = Field(
        default=0.0, description="Elastic distortion (Simard 2003): the scale of the smoothed "
        "random displacement field, in pixels; 0 turns it off.")
    elastic_sigma: Annotated[float, Field(ge=1.0, le=20.0)] = Field(
        default=6.0, description="The width, in pixels, of the Gaussian that smooths the "
        "elastic field: larger is smoother.")
    stroke: Annotated[float, Field(ge=0.0, le=1.0)] = Field(
        default=0.0, description="Pen width: each image is thickened (a 3x3 dilation) or "
        "thinned (a 3x3 erosion) by up to this fraction of one such step, about one pixel "
        "each side at 1.")
    contrast: Annotated[float, Field(ge=0.0, lt=1.0)] = Field(
        default=0.0, description="Faint ink: each image's intensity is multiplied by 1 - u, "
        "u drawn in [0, contrast).")


class DataConfig(Strict):
    dataset: Literal[choices.DATASETS] = Field(
        default="mnist", description="mnist and fashion_mnist: a local copy or Keras's "
        "download; openml: scikit-learn's fetch_openml('mnist_784').")
    path: str | None = Field(
        default=None,
        description="A .npz in the Keras layout, or a folder of IDX files (gzipped or not).",
    )
    scale: bool = Field(default=True, description="Divide pixels by 255 to get [0, 1].")
    binarize: bool = Field(
        default=False,
        description="Pixels brighter than `binarize_threshold` (a fraction of full intensity: "
        "pixel / 255 > threshold) become 1, the rest 0; threshold 0 means every pixel > 0.",
    )
    binarize_threshold: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.5
    flatten: bool = Field(
        default=True,
        description="Flatten 28x28 images to 784 features in preprocessing; if false the model "
        "starts with a Flatten layer instead.",
    )
    validation_split: Annotated[int | float, Field(ge=0)] = Field(
        default=0.1,
        description="Held-out part of the TRAINING set: a fraction in [0, 1) or a count (>= 1); "
        "0 trains on every training image and reports no validation metrics.",
    )
    split: Literal[choices.TEST_SPLITS] = Field(
        default="official",
        description="'official': the dataset's own training and test sets (60000/10000); "
        "'pooled': both pooled in that order, then a seeded random `test_fraction` is the "
        "test set (scikit-learn's train_test_split).",
    )
    test_fraction: Annotated[float, Field(gt=0.0, lt=1.0)] = Field(
        default=0.25, description="split: pooled only: the share of the pooled digits tested on."
    )
    subset: Subset | None = None
    augment: Augment | None = Field(
        default=None, description="Distort the training images every epoch (none when absent).")

    @model_validator(mode="before")
    @classmethod
    def _openml_split_is_split(cls, values: Any) -> Any:
        """`openml_split: official|random`, the key of earlier versions, still reads."""
        if isinstance(values, dict) and "openml_split" in values and "split" not in values:
            values = dict(values)
            legacy = values.pop("openml_split")
            values["split"] = {"random": "pooled"}.get(legacy, legacy)
        return values

    @field_validator("subset", mode="before")
    @classmethod
    def _subset_shorthand(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return {"train": value}
        return value

    @field_validator("validation_split")
    @classmethod
    def _split_is_fraction_or_count(cls, value: int | float) -> int | float:
        if value >= 1.0 and not float(value).is_integer():
            raise ValueError("must be a fraction below 1 or a whole number of samples")
        return value


class LayerSpec(Strict):
    """One Dense layer of the long form."""

    units: Annotated[int, Field(gt=0)]
    activation: Activation | None = None
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = Field(
        default=0.0, description="Dropout after this layer.")


class Initializer(Strict):
    """A Keras initializer by name with its arguments, e.g. {name: random_normal, stddev: 1.0}."""

    model_config = ConfigDict(extra="allow")
    name: str


def _layer_kind(item: Any) -> str:
    return "layer" if isinstance(item, (dict, LayerSpec)) else "size"


LayerItem = Annotated[
    Annotated[Annotated[int, Field(gt=0)], Tag("size")] | Annotated[LayerSpec, Tag("layer")],
    Discriminator(_layer_kind),
]


class ModelConfig(Strict):
    layers: list[LayerItem] = Field(
        default_factory=lambda: [NUM_FEATURES, 128, NUM_CLASSES],
        description="Sizes from input to output, e.g. [784, 500, 10]; items after the first "
        "may be mappings {units, activation, dropout}.",
    )
    hidden_activation: Activation = "relu"
    output_activation: OutputActivation = "softmax"
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = Field(
        default=0.0, description="Dropout after every hidden layer (a layer's own overrides it)."
    )
    kernel_initializer: str | Initializer = Field(
        default="glorot_uniform", description="Any Keras initializer by name, or a mapping "
        "with its arguments: {name: random_normal, stddev: 1.0}.")
    bias_initializer: str | Initializer = Field(default="zeros",
                                                description="As kernel_initializer.")
    l2: Annotated[float, Field(ge=0.0, lt=1.0)] = Field(
        default=0.0, description="L2 penalty on every Dense kernel (Keras kernel_regularizer): "
        "l2 * sum(kernel^2) per layer, added to the loss (and to the logged loss); 0: none.")
    max_norm: Annotated[float, Field(gt=0.0)] | None = Field(
        default=None, description="Max-norm constraint on every Dense kernel (Keras MaxNorm, "
        "axis 0): after each update, each unit's incoming weight vector is scaled back to at "
        "most this L2 norm; null: none.")
    batch_norm: bool = Field(
        default=False, description="A BatchNormalization layer after every hidden Dense layer "
        "(after its activation, before its dropout).")

    @field_validator("layers", mode="before")
    @classmethod
    def _no_true_false_sizes(cls, layers: Any) -> Any:
        if isinstance(layers, list):
            for position, item in enumerate(layers):
                if isinstance(item, bool):
                    raise ValueError(
                        f"item {position} is {str(item).lower()}, not a layer size such as 128"
                    )
        return layers

    @field_validator("layers")
    @classmethod
    def _layers_shape(cls, layers: list) -> list:
        if len(layers) < 2:
            raise ValueError("needs at least an input size and an output size, e.g. [784, 10]")
        if not isinstance(layers[0], int):
            raise ValueError("the first item is the input size, a number such as 784")
        return layers

    @property
    def input_size(self) -> int:
        return int(self.layers[0])

    def dense_layers(self) -> list[LayerSpec]:
        """The long form of every Dense layer after the input, defaults filled in."""
        specs: list[LayerSpec] = []
        last = len(self.layers) - 1
        for position, item in enumerate(self.layers[1:], start=1):
            default_activation = (
                self.output_activation if position == last else self.hidden_activation
            )
            default_dropout = 0.0 if position == last else self.dropout
            if isinstance(item, int):
                specs.append(
                    LayerSpec(units=item, activation=default_activation, dropout=default_dropout)
                )
            else:
                specs.append(
                    LayerSpec(
                        units=item.units,
                        activation=item.activation or default_activation,
                        dropout=item.dropout if "dropout" in item.model_fields_set
                        else default_dropout,
                    )
                )
        return specs

    @property
    def outputs_probabilities(self) -> bool:
        """Whether the outputs are probabilities (a softmax), or only scores per digit."""
        return self.dense_layers()[-1].activation == "softmax"

    def stack(self) -> list[int]:
        """The layer sizes as plain numbers, e.g. [784, 500, 10]."""
        return [self.input_size] + [spec.units for spec in self.dense_layers()]

    def weight_count(self) -> int:
        """The Dense layers' weights and biases, e.g. 397,510 for 784-500-10."""
        stack = self.stack()
        return sum((inputs + 1) * units for inputs, units in zip(stack, stack[1:]))


class EarlyStopping(Strict):
    monitor: Literal[choices.MONITORED_METRICS] = Field(
        default="val_loss", description="The history column watched.")
    patience: Annotated[int, Field(ge=0)] = Field(
        default=3, description="Epochs without improvement before training stops.")
    min_delta: Annotated[float, Field(ge=0.0)] = Field(
        default=0.0, description="The smallest change that counts as an improvement.")
    restore_best_weights: bool = Field(
        default=True, description="End with the weights of the best epoch.")


class Schedule(Strict):
    """How the learning rate changes from epoch to epoch (`training/schedules.py`); the rate
    of epoch e (0-based) with base rate r, E epochs and W warm-up epochs."""

    name: Literal[choices.SCHEDULES] = Field(
        default="constant", description="constant: r; step: r * factor^((e-W) // "
        "step_epochs); exponential: r * factor^(e-W); cosine: from r at e = W down to "
        "min_learning_rate at e = E along half a cosine; cosine_restarts: the same half "
        "cosine over cycles of cycle_epochs, cycle_epochs * cycle_mult, ... epochs, back to "
        "r at the start of each (SGDR); plateau: r, multiplied by factor after `patience` "
        "epochs without improvement of `monitor`.")
    warmup_epochs: Annotated[int, Field(ge=0)] = Field(
        default=0, description="First epochs ramping linearly up to r: r/W, 2r/W, ..., r.")
    step_epochs: Annotated[int, Field(gt=0)] = Field(
        default=10, description="step only: epochs between two reductions.")
    cycle_epochs: Annotated[int, Field(gt=0)] = Field(
        default=10, description="cosine_restarts only: epochs of the first cycle.")
    cycle_mult: Annotated[int, Field(ge=1)] = Field(
        default=2, description="cosine_restarts only: each cycle is this many times as long "
        "as the one before (1: all equal). End training with a cycle: with 10 and 2, after "
        "10, 30, 70, 150, ... epochs past the warm-up.")
    factor: Annotated[float, Field(gt=0.0, lt=1.0)] = Field(
        default=0.5, description="step, plateau: the multiplier of a reduction; "
        "exponential: the multiplier per epoch.")
    min_learning_rate: Annotated[float, Field(ge=0.0)] = Field(
        default=0.0, description="cosine: the final rate; cosine_restarts: the rate each "
        "cycle ends at; plateau: the lowest rate.")
    patience: Annotated[int, Field(ge=1)] = Field(
        default=2, description="plateau only: epochs without improvement before a reduction.")
    monitor: Literal[choices.MONITORED_METRICS] = Field(
        default="val_loss", description="plateau only: the history column watched.")
    min_delta: Annotated[float, Field(ge=0.0)] = Field(
        default=0.0, description="plateau only: the smallest change that counts as an "
        "improvement.")


class TrainConfig(Strict):
    optimizer: Literal[choices.OPTIMIZERS] = "adam"
    learning_rate: Annotated[float, Field(gt=0.0)] = 0.001
    momentum: Annotated[float, Field(ge=0.0, lt=1.0)] = Field(
        default=0.0, description="sgd and rmsprop only.")
    nesterov: bool = Field(default=False, description="Nesterov momentum, sgd only.")
    weight_decay: Annotated[float, Field(ge=0.0, lt=1.0)] | None = Field(
        default=None, description="adamw only: decoupled weight decay, each step every "
        "trainable variable -= learning_rate * weight_decay * variable; null: Keras's 0.004.")
    clip_norm: Annotated[float, Field(gt=0.0)] | None = Field(
        default=None, description="Clip the gradients by their global norm (Keras "
        "global_clipnorm): when the norm over all gradients together exceeds this, all are "
        "scaled by clip_norm / norm; null: no clipping.")
    label_smoothing: Annotated[float, Field(ge=0.0, lt=1.0)] = Field(
        default=0.0, description="categorical_crossentropy only: the one-hot targets become "
        "y * (1 - s) + s / 10 in the training loss (Keras label_smoothing).")
    loss: Literal[choices.LOSSES] = Field(
        default="categorical_crossentropy",
        description="Per image, with y the one-hot label and a the 10 outputs: "
        "categorical_crossentropy -sum(y log a); mse mean((y - a)^2) over the 10 outputs "
        "(Keras's); quadratic 1/2 sum((y - a)^2) (Nielsen's); sum_squared_error "
        "sum((y - a)^2) (= 10 x mse = 2 x quadratic). Every loss is averaged over the batch.",
    )
    batch_size: Annotated[int, Field(gt=0)] = 128
    epochs: Annotated[int, Field(gt=0)] = Field(
        default=10, description="Passes over the training set (see steps).")
    steps: Annotated[int, Field(gt=0)] | None = Field(
        default=None,
        description="A budget of optimizer steps (batches) instead of whole epochs: training "
        "runs ceil(steps / batches per epoch) epochs, the last one cut short.",
    )
    shuffle: bool = Field(
        default=True,
        description="Reshuffle the training images every epoch (seeded); false visits them "
        "in the same order, in the same batches, every epoch.",
    )
    early_stopping: EarlyStopping | None = None
    schedule: Schedule = Field(default_factory=Schedule,
                               description="The learning rate per epoch (constant by default).")
    engine: Literal[choices.ENGINES] = Field(
        default="auto",
        description="'fit' is Keras's model.fit; 'fast' compiles a whole epoch into one program; "
        "'auto' picks 'fast' where the backend supports it.",
    )
    tensorboard: bool = Field(
        default=True,
        description="Write TensorBoard event files into the run directory (tensorboardX).",
    )
    histogram_every: Annotated[int, Field(ge=0)] = Field(
        default=0,
        description="TensorBoard histograms of every weight and of its gradient at epoch 1, "
        "every this many epochs and the last; 0: the final weights only, written after "
        "training (the log then costs training almost nothing).",
    )

    ema: Annotated[float, Field(gt=0.0, lt=1.0)] | None = Field(
        default=None,
        description="Polyak averaging: keep an exponential moving average of the weights, "
        "avg = ema * avg + (1 - ema) * w after every step (in the checkpoint), and test and "
        "save the average; e.g. 0.9999 averages about the last 10,000 steps. Per-epoch "
        "validation still scores the raw weights. null: off.",
    )
    snapshots: bool = Field(
        default=False,
        description="Keep the weights of every epoch (snapshots/epoch-NNNN.npz, float16) so "
        "that `mnist serve` can replay any epoch; for nets of up to 1,000,000 weights.",
    )

    @field_validator("early_stopping", mode="before")
    @classmethod
    def _early_stopping_shorthand(cls, value: Any) -> Any:
        if value is True:
            return {}
        if value is False:
            return None
        return value

    @model_validator(mode="after")
    def _one_choice_of_final_weights(self) -> TrainConfig:
        if (self.ema is not None and self.early_stopping is not None
                and self.early_stopping.restore_best_weights):
            raise ValueError("ema and early_stopping.restore_best_weights both choose the "
                             "final weights: set restore_best_weights to false, or ema to null")
        return self

    @model_validator(mode="after")
    def _momentum_needs_its_optimizer(self) -> TrainConfig:
        if self.nesterov and self.optimizer != "sgd":
            raise ValueError("nesterov applies to the sgd optimizer only")
        if self.momentum and self.optimizer in ("adam", "adamw"):
            raise ValueError(
                f"momentum applies to sgd and rmsprop; {self.optimizer} has its own (beta_1)")
        if self.weight_decay is not None and self.optimizer != "adamw":
            raise ValueError("weight_decay applies to the adamw optimizer only")
        if self.label_smoothing and self.loss != "categorical_crossentropy":
            raise ValueError("label_smoothing applies to the categorical_crossentropy loss only")
        return self
