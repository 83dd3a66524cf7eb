"""Every closed set of choices, defined once.

The config schema (`Literal[...]` fields) and the command line (`click.Choice`) both read
these tuples, so a new backend, engine or optimizer is added in one place and every error
message lists the same names. Importing this module imports nothing.
"""

BACKENDS = ("tensorflow", "jax", "torch")
BACKEND_CHOICES = ("auto", *BACKENDS)
ENGINES = ("auto", "fit", "fast")
FAST_BACKENDS = ("jax", "tensorflow")  # the backends the fast engine runs on
DATASETS = ("mnist", "fashion_mnist", "openml")
TEST_SPLITS = ("official", "pooled")  # data.split: where the test set comes from
SPLITS = ("test", "val", "train")  # what `mnist evaluate --split` can measure
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
# train.schedule.name
SCHEDULES = ("constant", "step", "exponential", "cosine", "cosine_restarts", "plateau")
LOSSES = ("categorical_crossentropy", "mse", "quadratic", "sum_squared_error")
ACTIVATIONS = (
    "relu", "sigmoid", "tanh", "softmax", "linear", "elu", "selu", "gelu", "softplus", "swish"
)
OUTPUT_ACTIVATIONS = ("softmax", "sigmoid", "linear")
MONITORED_METRICS = ("val_loss", "val_accuracy", "loss", "accuracy")
ERROR_SORT_KEYS = ("index", "confidence")  # `mnist show-errors --sort`
RUN_SORT_KEYS = ("date", "accuracy")  # `mnist runs --sort`
EXPORT_FORMATS = ("onnx", "saved_model", "litert")  # `mnist export --format`
SWEEP_SAMPLERS = ("grid", "random", "tpe")  # `mnist sweep`: how the next trial is chosen
SWEEP_PRUNERS = ("none", "median", "successive_halving")
# Never a test-set metric: that would be tuning on it. The training ones are for repeating a
# config that holds out no validation set (`--seeds`), where nothing is chosen.
SWEEP_METRICS = ("val_accuracy", "val_loss", "accuracy", "loss")
