"""The three export formats: which backend writes each, what it needs installed, how Keras
writes it, and how its own runtime loads and runs it.

ONNX is written on JAX (Keras converts through `jax2onnx`) when JAX is installed, else on
TensorFlow (through `tf2onnx`), and run with onnxruntime. SavedModel and LiteRT are
TensorFlow formats: Keras writes them on the TensorFlow backend only; they are run with
TensorFlow and with the LiteRT interpreter (`ai-edge-litert`). Nothing here imports a
backend at module level: `export_backend` runs before `runtime.start`.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mnist_cli.errors import ExportError, describe_error

EXPORT_EXTRA = 'pip install "mnist-cli[export]"'

def output_name(output_activation: str) -> str:
    """What the single ONNX output is called: probabilities after a softmax, else scores
    (a sigmoid's or a linear layer's outputs do not sum to 1)."""
    return "probabilities" if output_activation == "softmax" else "scores"



@dataclass(frozen=True)
class Tensor:
    """One input or output of an exported file, as its runtime reports it."""

    name: str
    shape: tuple[int | str | None, ...]
    dtype: str

    def shape_text(self) -> str:
        """`(batch, 28, 28)`: a free size (None, -1, or a converter's name for it such as
        `unk__36`) is the batch, the only one an exported model has."""
        return "(" + ", ".join(str(size) if isinstance(size, int) and size >= 0 else "batch"
                               for size in self.shape) + ")"


@dataclass(frozen=True)
class FormatInfo:
    keras_format: str  # `model.export(format=...)`
    file_name: str  # the default name of the exported file or folder
    runtime: str  # what the check runs it with, for messages and MODEL.md


FORMATS = {
    "onnx": FormatInfo("onnx", "model.onnx", "onnxruntime"),
    "saved_model": FormatInfo("tf_saved_model", "saved_model", "TensorFlow"),
    "litert": FormatInfo("litert", "model.tflite", "the LiteRT interpreter (ai-edge-litert)"),
}


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def export_backend(format_name: str) -> str:
    """The Keras backend that writes `format_name`, after checking that everything the export
    and its check need is installed (so a missing package is one line, before any work)."""
    needed: list[tuple[str, str]] = []  # (module, what it is for)
    if format_name == "onnx":
        if _installed("jax"):
            backend = "jax"
            needed.append(("jax2onnx", "jax2onnx, which converts the JAX model to ONNX"))
        else:
            backend = "tensorflow"
            needed.append(("tf2onnx", "tf2onnx, which converts the TensorFlow model to ONNX "
                                      "(or install the jax extra to convert through jax2onnx)"))
        needed.append(("onnx", "onnx, to name the output"))
        needed.append(("onnxruntime", "onnxruntime, which runs the file to check it"))
    else:
        backend = "tensorflow"
        if format_name == "litert":
            needed.append(("ai_edge_litert", "ai-edge-litert, the LiteRT interpreter that runs "
                                             "the file to check it"))
    if backend == "tensorflow":
        needed.insert(0, ("tensorflow", "TensorFlow, which writes this format"))
    missing = [why for module, why in needed if not _installed(module)]
    if missing:
        raise ExportError(
            f"--format {format_name} needs {'; '.join(missing)}: {EXPORT_EXTRA}"
        )
    return backend


def write(format_name: str, model: Any, input_signature: list[Any], path: Path,
          output: str) -> None:
    """Write `model` to `path` with Keras's own `model.export`; `output` names the ONNX
    output (the other formats keep the names their converter gives)."""
    from mnist_cli import runtime

    info = FORMATS[format_name]
    with runtime.native_stderr_captured():  # the converters' C++ log lines
        model.export(str(path), format=info.keras_format, input_signature=input_signature,
                     verbose=False)
    if format_name == "onnx":
        _rename_onnx_output(path, output)


def _rename_onnx_output(path: Path, name: str) -> None:
    """Give the single output a name that says what it is (the converter names it after the
    last operation, such as `softmax_out_0`)."""
    import onnx

    model = onnx.load(str(path))
    old = model.graph.output[0].name
    for node in model.graph.node:
        node.output[:] = [name if output == old else output for output in node.output]
        node.input[:] = [name if value == old else value for value in node.input]
    model.graph.output[0].name = name
    onnx.save(model, str(path))


class LoadedExport:
    """An exported file loaded by its own runtime: its input and output, and a way to run it."""

    def __init__(self, format_name: str, path: Path) -> None:
        self.format_name = format_name
        try:
            if format_name == "onnx":
                self._load_onnx(path)
            elif format_name == "saved_model":
                self._load_saved_model(path)
            else:
                self._load_litert(path)
        except ExportError:
            raise
        except Exception as error:  # each runtime has its own exception types
            raise ExportError(f"{FORMATS[format_name].runtime} cannot load the exported file "
                              f"({describe_error(error)})") from None

    def _load_onnx(self, path: Path) -> None:
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (given,), (returned,) = session.get_inputs(), session.get_outputs()
        self.input = Tensor(given.name, tuple(given.shape), _onnx_dtype(given.type))
        self.output = Tensor(returned.name, tuple(returned.shape), _onnx_dtype(returned.type))
        self._run = lambda batch: session.run([returned.name], {given.name: batch})[0]

    def _load_saved_model(self, path: Path) -> None:
        import tensorflow as tf

        signature = tf.saved_model.load(str(path)).signatures["serving_default"]
        (input_name, input_spec), = signature.structured_input_signature[1].items()
        (output_name, output_spec), = signature.structured_outputs.items()
        self.input = Tensor(input_name, tuple(input_spec.shape), input_spec.dtype.name)
        self.output = Tensor(output_name, tuple(output_spec.shape), output_spec.dtype.name)
        self._run = lambda batch: signature(**{input_name: tf.constant(batch)})[
            output_name].numpy()

    def _load_litert(self, path: Path) -> None:
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(path))
        (given,), (returned,) = (interpreter.get_input_details(),
                                 interpreter.get_output_details())
        self.input = Tensor(given["name"], tuple(int(size) for size in given["shape_signature"]),
                            np.dtype(given["dtype"]).name)
        self.output = Tensor(returned["name"],
                             tuple(int(size) for size in returned["shape_signature"]),
                             np.dtype(returned["dtype"]).name)

        def run(batch: np.ndarray) -> np.ndarray:
            from mnist_cli import runtime

            with runtime.native_stderr_captured():  # "INFO: Created ... XNNPACK delegate"
                interpreter.resize_tensor_input(given["index"], list(batch.shape))
                interpreter.allocate_tensors()
                interpreter.set_tensor(given["index"], batch)
                interpreter.invoke()
            return interpreter.get_tensor(returned["index"]).copy()

        self._run = run

    def run(self, batch: np.ndarray) -> np.ndarray:
        """The file's outputs for `batch` (its input's dtype), as float32 NumPy."""
        return np.asarray(self._run(batch), dtype=np.float32)


def _onnx_dtype(type_name: str) -> str:
    """onnxruntime's `tensor(uint8)` as NumPy's `uint8` (`tensor(float)` is float32)."""
    inner = type_name.removeprefix("tensor(").removesuffix(")")
    return {"float": "float32", "double": "float64"}.get(inner, inner)
