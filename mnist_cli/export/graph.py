"""The Keras model that is exported: the run's network, behind its own preprocessing.

A consumer of an exported file has 28x28 uint8 pixels, not the run's features. The exported
model therefore starts with the run's preprocessing: each pixel value 0..255 is looked up in
the run's pixel table (`data.pixel_table`: scaling or binarizing, exactly as training did,
so a gather reproduces the training features bit for bit), then the image is reshaped to
the network's input (flattened to 784 for a Dense net). `--raw` exports the bare network on
those features instead. Import this module only after `runtime.start`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

IMAGE_SHAPE = (28, 28)
PIXELS_INPUT = "pixels"
FEATURES_INPUT = "features"


class PixelFeatures(keras.layers.Layer):
    """uint8 pixels -> the float32 feature of each pixel value, by a lookup in `table` (256,).

    A lookup rather than arithmetic: the table holds the very float32 values the training
    data had (a binarized run's threshold included), and every runtime gathers exactly.
    """

    def __init__(self, table: np.ndarray, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.table = np.asarray(table, dtype=np.float32)

    def call(self, pixels: Any) -> Any:
        table = keras.ops.convert_to_tensor(self.table)
        return keras.ops.take(table, keras.ops.cast(pixels, "int32"), axis=0)


@dataclass(frozen=True)
class ExportGraph:
    """The model to export, the input it takes, and how to make that input from uint8 pixels."""

    model: Any
    input_name: str
    input_shape: tuple[int | None, ...]
    input_dtype: str
    raw: bool

    def input_signature(self) -> list[Any]:
        """The signature `model.export` traces: batch first, any batch size."""
        return [keras.InputSpec(shape=self.input_shape, dtype=self.input_dtype,
                                name=self.input_name)]


def network_input_shape(network: Any) -> tuple[int, ...]:
    """The shape of one sample the network takes ((784,) for a flattened Dense net)."""
    return tuple(int(size) for size in network.input_shape[1:])


def export_graph(network: Any, pixel_table: np.ndarray, raw: bool) -> ExportGraph:
    """The exported model: `network` alone (`raw`), or uint8 pixels -> lookup -> reshape ->
    `network`."""
    sample_shape = network_input_shape(network)
    if raw:
        return ExportGraph(network, FEATURES_INPUT, (None, *sample_shape), "float32", raw=True)
    pixels = keras.Input(shape=IMAGE_SHAPE, dtype="uint8", name=PIXELS_INPUT)
    features = PixelFeatures(pixel_table, name="pixel_features")(pixels)
    if sample_shape != IMAGE_SHAPE:
        features = keras.layers.Reshape(sample_shape, name="flatten")(features)
    probabilities = network(features)
    model = keras.Model(pixels, probabilities, name="mnist_classifier")
    return ExportGraph(model, PIXELS_INPUT, (None, *IMAGE_SHAPE), "uint8", raw=False)
