"""The Keras 784-500-10 tutorial, as its code does it: the 70000 digits of mnist_784 (here
the same rows from mnist.npz: the 60000 training images, then the 10000 test images),
x[x > 0] = 1, one-hot labels, train_test_split(test_size=0.25), Dense(500, relu),
Dense(10, softmax), Adam(), categorical cross-entropy, fit(batch_size=300, epochs=20),
accuracy on the 17500 held-out digits.

    python bench/tutorials/keras_tutorial.py --seed 2 --data mnist.npz
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["KERAS_BACKEND"] = "tensorflow"

import keras  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from tutorial_data import arguments, load, report  # noqa: E402


def main() -> None:
    options = arguments(__doc__.splitlines()[0])
    x_train, y_train, x_test, y_test = load(options.data)
    x = np.concatenate([x_train, x_test]).reshape(-1, 784).astype(np.float32)
    y = keras.utils.to_categorical(np.concatenate([y_train, y_test]), 10)
    x[x > 0] = 1
    train_x, test_x, train_y, test_y = train_test_split(x, y, test_size=0.25,
                                                        random_state=options.seed)
    keras.utils.set_random_seed(options.seed)
    model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(500, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(), loss="categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(train_x, train_y, batch_size=300, epochs=20, verbose=0)
    _, accuracy = model.evaluate(test_x, test_y, verbose=0)
    report(accuracy, options.seed, num_test=len(test_y))


if __name__ == "__main__":
    main()
