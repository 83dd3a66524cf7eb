"""Plain Keras 3 script that does the whole job of `mnist train -c configs/quickstart.yaml`:
import Keras, load MNIST, scale the pixels, build 784-128-10 (ReLU, softmax), Adam 1e-3, fit 3
epochs of batch 128 holding out 10% for validation, evaluate on the test set, save the model.
The reference bench/whole_run.py times as a whole process.

Example:
    python bench/plain_quickstart.py --data ../shared/data/mnist.npz --out /tmp/model.keras
"""

from __future__ import annotations

import argparse
import os


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True, help="where the model is saved (.keras)")
    parser.add_argument("--backend", choices=["tensorflow", "jax"], default="tensorflow")
    arguments = parser.parse_args()
    os.environ["KERAS_BACKEND"] = arguments.backend
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    import keras
    import numpy as np

    with np.load(arguments.data) as data:
        x_train, y_train = data["x_train"], data["y_train"]
        x_test, y_test = data["x_test"], data["y_test"]
    x_train = x_train.reshape(-1, 784).astype("float32") / 255
    x_test = x_test.reshape(-1, 784).astype("float32") / 255
    y_train = keras.utils.to_categorical(y_train, 10)
    y_test = keras.utils.to_categorical(y_test, 10)

    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(128, activation="relu"),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=128, epochs=3, validation_split=0.1, verbose=0)
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    model.save(arguments.out)
    print(f"test accuracy {accuracy:.4f}, loss {loss:.4f}")


if __name__ == "__main__":
    main()
