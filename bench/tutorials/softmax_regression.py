"""TensorFlow r1.1 "MNIST for ML beginners", as its code does it, in TensorFlow 1 graph mode.

y = softmax(x W + b) with W, b = 0; cross-entropy through softmax_cross_entropy_with_logits,
averaged over the batch; GradientDescentOptimizer(0.5); 1000 steps of next_batch(100) from
55000 training images (read_data_sets keeps the first 5000 for validation and reshuffles
the training set at the start of every pass); accuracy on the 10000 test images.

    python bench/tutorials/softmax_regression.py --seed 0 --data mnist.npz
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tutorial_data import arguments, load, report  # noqa: E402

VALIDATION_SIZE = 5000


class DataSet:
    """What read_data_sets' DataSet.next_batch does: a reshuffled pass at every epoch start."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, rng: np.random.RandomState):
        self.images, self.labels, self.rng = images, labels, rng
        self.position, self.order = len(labels), None

    def next_batch(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        if self.position + size > len(self.labels):
            # The tutorial's DataSet stitches the end of one pass to the start of the next;
            # 55000 is a multiple of 100, so every batch lies within one pass.
            self.order = self.rng.permutation(len(self.labels))
            self.position = 0
        rows = self.order[self.position:self.position + size]
        self.position += size
        return self.images[rows], self.labels[rows]


def main() -> None:
    options = arguments(__doc__.splitlines()[0])
    x_train, y_train, x_test, y_test = load(options.data)
    features = lambda images: images.reshape(len(images), 784).astype(np.float32) / 255.0  # noqa: E731
    one_hot = lambda labels: np.eye(10, dtype=np.float32)[labels]  # noqa: E731
    train = DataSet(features(x_train[VALIDATION_SIZE:]), one_hot(y_train[VALIDATION_SIZE:]),
                    np.random.RandomState(options.seed))

    tf.compat.v1.disable_eager_execution()
    tf.compat.v1.set_random_seed(options.seed)
    x = tf.compat.v1.placeholder(tf.float32, [None, 784])
    W = tf.Variable(tf.zeros([784, 10]))
    b = tf.Variable(tf.zeros([10]))
    y = tf.matmul(x, W) + b
    y_ = tf.compat.v1.placeholder(tf.float32, [None, 10])
    cross_entropy = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=y_, logits=y))
    train_step = tf.compat.v1.train.GradientDescentOptimizer(0.5).minimize(cross_entropy)
    correct = tf.equal(tf.argmax(y, 1), tf.argmax(y_, 1))
    accuracy = tf.reduce_mean(tf.cast(correct, tf.float32))
    with tf.compat.v1.Session() as session:
        session.run(tf.compat.v1.global_variables_initializer())
        for _ in range(1000):
            batch_xs, batch_ys = train.next_batch(100)
            session.run(train_step, feed_dict={x: batch_xs, y_: batch_ys})
        score = session.run(accuracy, feed_dict={x: features(x_test), y_: one_hot(y_test)})
    report(score, options.seed)


if __name__ == "__main__":
    main()
