"""Nielsen's network.py, in its style, in NumPy: 784-30-10 sigmoid, weights and biases
N(0, 1), quadratic cost, SGD with eta 3.0 over mini-batches of 10 (the mean of the m
gradients), 30 epochs over 50000 training images reshuffled every epoch (mnist_loader keeps
the last 10000 for validation), the test accuracy after the last epoch (and the best).

Written here with the mini-batch as one matrix instead of a loop over its 10 images: the
same sums, in a different order.

    python bench/tutorials/nielsen_network.py --seed 0 --data mnist.npz
"""

from __future__ import annotations

import numpy as np
from tutorial_data import arguments, load, report

SIZES = (784, 30, 10)
EPOCHS, MINI_BATCH, ETA = 30, 10, 3.0


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


class Network:
    def __init__(self, sizes: tuple[int, ...], rng: np.random.RandomState) -> None:
        self.biases = [rng.randn(size, 1) for size in sizes[1:]]
        self.weights = [rng.randn(after, before) for before, after in zip(sizes[:-1], sizes[1:])]

    def feedforward(self, a: np.ndarray) -> np.ndarray:
        """`a`: (784, n) columns of images."""
        for b, w in zip(self.biases, self.weights):
            a = sigmoid(w @ a + b)
        return a

    def update_mini_batch(self, x: np.ndarray, y: np.ndarray, eta: float) -> None:
        """One step of gradient descent on the columns `x` (784, m), targets `y` (10, m)."""
        activations, zs = [x], []
        for b, w in zip(self.biases, self.weights):
            zs.append(w @ activations[-1] + b)
            activations.append(sigmoid(zs[-1]))
        # The quadratic cost's derivative (a - y) times sigmoid'(z), then backwards.
        delta = (activations[-1] - y) * activations[-1] * (1 - activations[-1])
        gradients_b, gradients_w = [None] * 2, [None] * 2
        for layer in (1, 0):
            gradients_b[layer] = delta.sum(axis=1, keepdims=True)
            gradients_w[layer] = delta @ activations[layer].T
            if layer:
                a = activations[layer]
                delta = (self.weights[layer].T @ delta) * a * (1 - a)
        m = x.shape[1]
        self.weights = [w - (eta / m) * g for w, g in zip(self.weights, gradients_w)]
        self.biases = [b - (eta / m) * g for b, g in zip(self.biases, gradients_b)]

    def evaluate(self, x: np.ndarray, labels: np.ndarray) -> int:
        return int(np.sum(np.argmax(self.feedforward(x), axis=0) == labels))


def main() -> None:
    options = arguments(__doc__.splitlines()[0])
    x_train, y_train, x_test, y_test = load(options.data)
    columns = lambda images: (images.reshape(len(images), 784) / 255.0).T  # noqa: E731
    training_x, training_y = columns(x_train[:50000]), np.eye(10)[y_train[:50000]].T
    test_x = columns(x_test)
    rng = np.random.RandomState(options.seed)
    network = Network(SIZES, rng)
    correct = []
    for _ in range(EPOCHS):
        order = rng.permutation(training_x.shape[1])
        for start in range(0, len(order), MINI_BATCH):
            rows = order[start:start + MINI_BATCH]
            network.update_mini_batch(training_x[:, rows], training_y[:, rows], ETA)
        correct.append(network.evaluate(test_x, y_test))  # "Epoch j: n / 10000"
    report(correct[-1] / len(y_test), options.seed, best_epoch_accuracy=max(correct) / len(y_test))


if __name__ == "__main__":
    main()
