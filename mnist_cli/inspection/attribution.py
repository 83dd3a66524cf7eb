"""What a Dense stack looks at, computed in NumPy from its weights: the gradient of an
answer with respect to the input pixels (saliency: gradient x input), the smallest
fast-gradient-sign nudge (FGSM, Goodfellow et al. 2015) that changes the answer, and the
first layer's units as 28x28 weight images.

NumPy rather than the Keras backend: a Dense stack's backward pass is a few matrix
products, the same on every backend, and needs no autodiff. The forward pass here matches
the Keras model in inference mode (dropout off, batch normalisation with its moving
statistics); `tests/test_serve.py` checks that both give the same probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import erf

FLIP_STEPS = np.geomspace(0.002, 0.5, 32)
"""The nudges tried, as a share of the inputs' range, smallest first: the first that
changes the answer is reported."""


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


SELU_ALPHA, SELU_SCALE = 1.6732632423543772, 1.0507009873554805


def _activate(name: str, z: np.ndarray) -> np.ndarray:
    if name == "relu":
        return np.maximum(z, 0.0)
    if name == "sigmoid":
        return _sigmoid(z)
    if name == "tanh":
        return np.tanh(z)
    if name == "linear":
        return z
    if name == "softmax":
        shifted = np.exp(z - z.max(axis=-1, keepdims=True))
        return shifted / shifted.sum(axis=-1, keepdims=True)
    if name == "elu":
        return np.where(z > 0, z, np.expm1(np.minimum(z, 0.0)))
    if name == "selu":
        return SELU_SCALE * np.where(z > 0, z, SELU_ALPHA * np.expm1(np.minimum(z, 0.0)))
    if name == "gelu":  # Keras's default, the exact one
        return 0.5 * z * (1.0 + erf(z / np.sqrt(2.0)))
    if name == "softplus":
        return np.logaddexp(0.0, z)
    if name in ("swish", "silu"):
        return z * _sigmoid(z)
    raise ValueError(f"no gradient for the activation {name!r}")


def _backward(name: str, z: np.ndarray, a: np.ndarray, upstream: np.ndarray) -> np.ndarray:
    """d(loss)/dz from d(loss)/da, for a = activation(z)."""
    if name == "relu":
        return upstream * (z > 0)
    if name == "sigmoid":
        return upstream * a * (1.0 - a)
    if name == "tanh":
        return upstream * (1.0 - a * a)
    if name == "linear":
        return upstream
    if name == "softmax":
        return a * (upstream - (upstream * a).sum(axis=-1, keepdims=True))
    if name == "elu":
        return upstream * np.where(z > 0, 1.0, np.exp(np.minimum(z, 0.0)))
    if name == "selu":
        return upstream * SELU_SCALE * np.where(z > 0, 1.0, SELU_ALPHA * np.exp(np.minimum(z, 0.0)))
    if name == "gelu":
        density = np.exp(-0.5 * z * z) / np.sqrt(2.0 * np.pi)
        return upstream * (0.5 * (1.0 + erf(z / np.sqrt(2.0))) + z * density)
    if name == "softplus":
        return upstream * _sigmoid(z)
    if name in ("swish", "silu"):
        s = _sigmoid(z)
        return upstream * (s + z * s * (1.0 - s))
    raise ValueError(f"no gradient for the activation {name!r}")


@dataclass
class _Dense:
    kernel: np.ndarray
    bias: np.ndarray
    activation: str


@dataclass
class _Scale:
    """Batch normalisation in inference mode: y = x * scale + shift."""

    scale: np.ndarray
    shift: np.ndarray


class DenseStack:
    """A Keras Dense stack's inference computation, forward and backward, in float64."""

    def __init__(self, layers: list[_Dense | _Scale]) -> None:
        self.layers = layers

    @classmethod
    def of(cls, model: Any) -> DenseStack:
        """The stack of `model` (Dense, BatchNormalization, Dropout and Flatten layers)."""
        import keras

        layers: list[_Dense | _Scale] = []
        for layer in model.layers:
            if isinstance(layer, keras.layers.Dense):
                kernel, bias = (np.asarray(w, dtype=np.float64) for w in layer.get_weights())
                layers.append(_Dense(kernel, bias, layer.activation.__name__))
            elif isinstance(layer, keras.layers.BatchNormalization):
                gamma, beta, mean, variance = (np.asarray(w, dtype=np.float64)
                                               for w in layer.get_weights())
                scale = gamma / np.sqrt(variance + layer.epsilon)
                layers.append(_Scale(scale, beta - mean * scale))
            elif not isinstance(layer, (keras.layers.Dropout, keras.layers.Flatten)):
                raise ValueError(f"no gradient for a {type(layer).__name__} layer")
        return cls(layers)

    @property
    def first_units(self) -> int:
        return int(self.layers[0].kernel.shape[1])

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
        """The outputs for inputs `x` (n, 784), and each Dense layer's (pre-activation,
        activation) for the backward pass."""
        trace = []
        values = x
        for layer in self.layers:
            if isinstance(layer, _Scale):
                values = values * layer.scale + layer.shift
                continue
            z = values @ layer.kernel + layer.bias
            values = _activate(layer.activation, z)
            trace.append((z, values))
        return values, trace

    def _input_gradient(self, trace: list[tuple[np.ndarray, np.ndarray]],
                        upstream: np.ndarray, skip_last_activation: bool) -> np.ndarray:
        dense_index = len(trace)
        for layer in reversed(self.layers):
            if isinstance(layer, _Scale):
                upstream = upstream * layer.scale
                continue
            dense_index -= 1
            z, a = trace[dense_index]
            if not (skip_last_activation and dense_index == len(trace) - 1):
                upstream = _backward(layer.activation, z, a, upstream)
            upstream = upstream @ layer.kernel.T
        return upstream

    def saliency(self, x: np.ndarray) -> dict[str, Any]:
        """Gradient x input for the predicted digit's score before the output activation
        (its logit): which inked pixels pushed the answer up (positive) or down."""
        outputs, trace = self.forward(x[np.newaxis])
        digit = int(np.argmax(outputs[0]))
        upstream = np.zeros_like(outputs)
        upstream[0, digit] = 1.0
        gradient = self._input_gradient(trace, upstream, skip_last_activation=True)[0]
        return {"digit": digit, "map": gradient * x}

    def smallest_flip(self, x: np.ndarray, high: float) -> dict[str, Any] | None:
        """The smallest FGSM step, x + eps * sign(gradient of the loss of the current
        answer), kept within 0..high, that changes the answer; None if none of
        `FLIP_STEPS` does."""
        outputs, trace = self.forward(x[np.newaxis])
        digit = int(np.argmax(outputs[0]))
        # The cross-entropy of the current answer, -log(output[digit]), grows fastest along
        # this gradient (any output activation: its derivative goes through the chain).
        upstream = np.zeros_like(outputs)
        upstream[0, digit] = -1.0 / max(float(outputs[0, digit]), 1e-12)
        direction = np.sign(self._input_gradient(trace, upstream, skip_last_activation=False)[0])
        candidates = np.clip(x + np.outer(FLIP_STEPS * high, direction), 0.0, high)
        answers, _ = self.forward(candidates)
        flipped = np.flatnonzero(answers.argmax(axis=1) != digit)
        if not len(flipped):
            return None
        first = int(flipped[0])
        new_digit = int(answers[first].argmax())
        return {"epsilon": float(FLIP_STEPS[first]), "digit": new_digit,
                "probability": float(answers[first, new_digit]), "input": candidates[first]}

    def first_layer_units(self, x: np.ndarray, count: int) -> list[dict[str, Any]]:
        """The first layer's `count` units that `x` excites most, strongest first: each
        unit's 784 weights as an image scaled to -1..1, and its activation."""
        first = self.layers[0]
        assert isinstance(first, _Dense)
        z = x @ first.kernel + first.bias
        activation = _activate(first.activation, z[np.newaxis])[0]
        order = np.argsort(-activation, kind="stable")[:count]
        units = []
        for unit in order:
            weights = first.kernel[:, unit]
            largest = float(np.abs(weights).max()) or 1.0
            units.append({"unit": int(unit), "activation": round(float(activation[unit]), 5),
                          "weights": (weights / largest).round(3).tolist()})
        return units
