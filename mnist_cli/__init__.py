"""mnist-cli: train and inspect Dense MNIST classifiers from YAML configs."""

__version__ = "0.1.0"
