"""A user's own digit images: `decoding` reads a file safely into grey levels, `mnist_style`
makes them look like an MNIST digit (28x28, fitted into 20x20, centred by centre of mass).
Imports neither Keras nor TensorFlow: preparing an image stays instant."""

from mnist_cli.images.decoding import save_digit_png
from mnist_cli.images.mnist_style import load_digit_bytes, load_digit_image, prepare_digit

__all__ = ["load_digit_bytes", "load_digit_image", "prepare_digit", "save_digit_png"]
