"""`MODEL.md`, written beside an exported file: what goes in and out, what the graph does to
the pixels, how well it does, how it was trained, and a few lines that run it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from mnist_cli.data import pixel_table

if TYPE_CHECKING:
    from mnist_cli.export.exporting import ExportResult
    from mnist_cli.inspection.source import ModelSource

FORMAT_TITLES = {"onnx": "ONNX", "saved_model": "TensorFlow SavedModel", "litert": "LiteRT"}


def preprocessing_text(config: Any, raw: bool) -> str:
    """What the run did to each pixel, in words: inside the graph, or the caller's job."""
    data = config.data
    if data.binarize:
        rule = (f"each pixel becomes 1.0 when pixel / 255 > {data.binarize_threshold:g} "
                f"(uint8 value {int(np.argmax(pixel_table(data) > 0))} or more), else 0.0")
    elif data.scale:
        rule = "each pixel is divided by 255 (float32, 0.0 to 1.0)"
    else:
        rule = "each pixel is taken as it is, as float32 0.0 to 255.0"
    shape = "flattened row by row to 784 features" if data.flatten else "kept as 28x28"
    if raw:
        return (f"None inside the file: the input is the network's features. Make them from "
                f"28x28 uint8 pixels as the training did: {rule}; {shape}.")
    return (f"Inside the file, so give it the pixels as they are (0 = background, 255 = ink, "
            f"white on black as in MNIST): {rule}; {shape}.")


def _output_text(config: Any) -> str:
    activation = config.model.output_activation
    if activation == "softmax":
        what = "the probability of each digit 0-9 (a softmax: they sum to 1)"
    else:
        what = (f"a score for each digit 0-9 (the network's {activation} outputs, not "
                "probabilities that sum to 1)")
    return f"The output holds {what}; the predicted digit is its largest entry."


def _example(result: ExportResult) -> str:
    name = result.path.name
    input_name = result.input.name
    if result.raw:
        make = ('digits = np.zeros((1, 784), np.float32)  # your features, prepared as '
                'described above')
    else:
        make = "digits = np.zeros((1, 28, 28), np.uint8)  # your 28x28 pixels, batch first"
    if result.format_name == "onnx":
        lines = ["import numpy as np, onnxruntime",
                 f'session = onnxruntime.InferenceSession("{name}")',
                 make,
                 f'outputs = session.run(None, {{"{input_name}": digits}})[0]',
                 "print(outputs.argmax(axis=1))"]
    elif result.format_name == "saved_model":
        lines = ["import numpy as np, tensorflow as tf",
                 f'serve = tf.saved_model.load("{name}").signatures["serving_default"]',
                 make,
                 f'outputs = serve({input_name}=tf.constant(digits))'
                 f'["{result.output.name}"].numpy()',
                 "print(outputs.argmax(axis=1))"]
    else:
        lines = ["import numpy as np; from ai_edge_litert.interpreter import Interpreter",
                 f'interpreter = Interpreter(model_path="{name}"); '
                 "interpreter.allocate_tensors()",
                 make,
                 "given, returned = interpreter.get_input_details()[0], "
                 "interpreter.get_output_details()[0]",
                 'interpreter.set_tensor(given["index"], digits); interpreter.invoke(); '
                 'print(interpreter.get_tensor(returned["index"]).argmax(axis=1))']
    return "\n".join(lines)


def model_card_text(result: ExportResult, source: ModelSource, metrics: dict[str, Any],
                    input_dtype: str) -> str:
    """The whole MODEL.md."""
    config = source.config
    train = config.train
    agreement = result.agreement
    layers = "-".join(str(size) for size in config.model.stack())
    size_text = f"{result.size_bytes / 1e6:.2f} MB" if result.size_bytes >= 1e5 else \
        f"{result.size_bytes / 1e3:.1f} kB"
    test_accuracy = metrics.get("test_accuracy")
    accuracy_text = (f"{test_accuracy:.4f}" if isinstance(test_accuracy, (int, float))
                     else "not recorded")
    what = "the bare network" if result.raw else "the network behind its preprocessing"
    batch_note = (" (the interpreter starts with a batch of 1: `resize_tensor_input` and "
                  "`allocate_tensors` for another)" if result.format_name == "litert" else "")
    return f"""# {source.name}: {FORMAT_TITLES[result.format_name]}

`{result.path.name}` ({size_text}): {what}, a Dense MNIST digit classifier made by
`mnist export --format {result.format_name}{' --raw' if result.raw else ''}`.

## Input and output

| | name | shape | dtype |
|---|---|---|---|
| input | `{result.input.name}` | {result.input.shape_text()} | {result.input.dtype} |
| output | `{result.output.name}` | {result.output.shape_text()} | {result.output.dtype} |

The batch comes first and may have any size{batch_note}. {_output_text(config)}

## Preprocessing

{preprocessing_text(config, result.raw)}

## Accuracy and the check

Test accuracy {accuracy_text} on {metrics.get('num_test', '?')} test digits of
{metrics.get('data_source', 'the dataset')} (the run's `metrics.json`).

Checked when exported: run with {formats_runtime(result.format_name)} on the run's
{agreement.digits} test digits (as {input_dtype} input), the file predicted the same digit
as the Keras model on {agreement.same_prediction} of {agreement.digits}, its probabilities
at most {agreement.max_difference:.2g} from the Keras model's (allowed:
{agreement.tolerance:g}), its own accuracy {agreement.accuracy:.4f}.

## How it was trained

- Network: {layers}, hidden activation {config.model.hidden_activation}, output
  {config.model.output_activation}, dropout {config.model.dropout:g}
- Loss {train.loss}, optimizer {train.optimizer} (learning rate {train.learning_rate:g}),
  batch {train.batch_size}, {metrics.get('epochs_completed', '?')} epochs of {train.epochs},
  {metrics.get('num_train', '?')} training digits, seed {config.seed}
- Run `{source.name}`; its `config.yaml` holds every setting.

## Use it

```python
{_example(result)}
```
"""


def formats_runtime(format_name: str) -> str:
    from mnist_cli.export.formats import FORMATS

    return FORMATS[format_name].runtime
