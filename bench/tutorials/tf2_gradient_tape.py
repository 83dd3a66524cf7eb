"""The TensorFlow 2 784-512-256-10 tutorial's loop, as written: Dense(512, relu),
Dense(256, relu), Dense(10), pixels / 255, Dataset.from_tensor_slices((x, y)).batch(200)
(never shuffled), loss = reduce_sum(square(out - y)) / batch_size, SGD(0.001), 30 epochs;
then scored on the 10000 test images (the tutorial prints only the loss).

    python bench/tutorials/tf2_gradient_tape.py --seed 0 --data mnist.npz
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["KERAS_BACKEND"] = "tensorflow"

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow import keras  # noqa: E402
from tutorial_data import arguments, load, report  # noqa: E402

BATCH, EPOCHS = 200, 30


def main() -> None:
    options = arguments(__doc__.splitlines()[0])
    x_train, y_train, x_test, y_test = load(options.data)
    keras.utils.set_random_seed(options.seed)
    x = tf.convert_to_tensor(x_train.reshape(-1, 784), dtype=tf.float32) / 255.0
    y = tf.one_hot(y_train, depth=10)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH)
    model = keras.Sequential([keras.layers.Dense(512, activation="relu"),
                              keras.layers.Dense(256, activation="relu"),
                              keras.layers.Dense(10)])
    optimizer = keras.optimizers.SGD(learning_rate=0.001)
    accuracies = []
    test_x = x_test.reshape(-1, 784).astype(np.float32) / 255.0
    for _ in range(EPOCHS):
        for batch_x, batch_y in dataset:
            with tf.GradientTape() as tape:
                out = model(batch_x)
                loss = tf.reduce_sum(tf.square(out - batch_y)) / BATCH
            gradients = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        predicted = np.argmax(model(test_x).numpy(), axis=1)
        accuracies.append(float(np.mean(predicted == y_test)))
    report(accuracies[-1], options.seed, after_epoch_1=accuracies[0], after_epoch_10=accuracies[9])


if __name__ == "__main__":
    main()
