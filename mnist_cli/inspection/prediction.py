"""`mnist predict`: classify a user's own image files with a run's model, preparing each
as MNIST was made (`images`) and then with the run's own preprocessing (`data.preprocess`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mnist_cli.atomic_files import save_with
from mnist_cli.errors import ImageError
from mnist_cli.inspection.source import ModelSource, Progress, load_model, model_outputs
from mnist_cli.metrics import TOP_COUNT, top_predictions
from mnist_cli.plots import require_png


@dataclass
class ImagePrediction:
    """The top digits for one image file, or why it could not be classified."""

    image: Path
    digits: list[int] = field(default_factory=list)
    probabilities: list[float] = field(default_factory=list)
    preprocessed: Path | None = None
    error: str | None = None
    all_probabilities: list[float] = field(default_factory=list, repr=False)
    network_input: np.ndarray | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        if self.error is not None:
            return {"image": str(self.image), "error": self.error}
        return {
            "image": str(self.image),
            "digit": self.digits[0],
            "probability": self.probabilities[0],
            "top_3": [{"digit": digit, "probability": probability}
                      for digit, probability in zip(self.digits, self.probabilities)],
            "preprocessed": None if self.preprocessed is None else str(self.preprocessed),
        }


def network_input_pixels(features: np.ndarray) -> np.ndarray:
    """Features of one image back as a 28x28 uint8 picture (scaled or binarized inputs are
    0..1, unscaled ones 0..255), for `--save-preprocessed`."""
    pixels = np.asarray(features, dtype=np.float32).reshape(28, 28)
    if pixels.max() <= 1.0:
        pixels = pixels * 255.0
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


def _preprocessed_name(image: Path, taken: set[str]) -> str:
    """`<stem>-preprocessed.png`, numbered when two inputs share a stem (a/1.png, b/1.png)."""
    name = f"{image.stem}-preprocessed.png"
    number = 2
    while name in taken:
        name = f"{image.stem}-{number}-preprocessed.png"
        number += 1
    taken.add(name)
    return name


def predict_images(source: ModelSource, image_paths: Sequence[str | Path],
                   save_preprocessed: str | Path | None = None,
                   on_progress: Progress | None = None) -> list[ImagePrediction]:
    """Classify image files with a run's model, preparing them as MNIST was made.

    Each image goes through `images.load_digit_image` (grey levels, polarity, crop, fit into
    20x20, centre of mass) and then the run's own `data.preprocess` (scaling, binarizing,
    flattening), exactly as the training data did. A file that cannot be read or holds no
    digit gets its `error` and the others are still classified; the images are all read
    before the model is loaded, so a run of typos costs no Keras start-up. `on_progress`
    hears of each image read.
    """
    from mnist_cli.data import preprocess
    from mnist_cli.images import load_digit_image, save_digit_png

    results = [ImagePrediction(Path(path)) for path in image_paths]
    prepared: list[np.ndarray] = []
    readable: list[ImagePrediction] = []
    for number, result in enumerate(results, start=1):
        try:
            prepared.append(load_digit_image(result.image))
            readable.append(result)
        except ImageError as error:
            result.error = str(error)
        if on_progress is not None:
            on_progress(number, len(results))
    if not readable:
        return results
    features = preprocess(np.stack(prepared), source.config.data)
    model = load_model(source)
    outputs = model_outputs(model, features, source.model_path, "a prepared image")
    digits, probabilities = top_predictions(outputs, TOP_COUNT)
    for row, result in enumerate(readable):
        result.digits = [int(digit) for digit in digits[row]]
        result.probabilities = [float(probability) for probability in probabilities[row]]
        result.all_probabilities = [float(probability) for probability in outputs[row]]
        result.network_input = network_input_pixels(features[row])
    if save_preprocessed is not None:
        folder = Path(save_preprocessed)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ImageError(
                f"--save-preprocessed {folder}: cannot create the folder ({error.strerror})"
            ) from None
        inputs = {result.image.resolve() for result in results}
        taken: set[str] = set()
        for result in readable:
            target = folder / _preprocessed_name(result.image, taken)
            while target.resolve() in inputs:  # never write over an image being classified
                target = folder / _preprocessed_name(result.image, taken)
            save_digit_png(result.network_input, target)
            result.preprocessed = target
    return results


def _thumbnail(path: Path, side: int = 160) -> np.ndarray:
    """The image file as a person sees it (upright, grey), small enough for a figure."""
    from PIL import Image, ImageOps

    with Image.open(path) as image:
        image = ImageOps.exif_transpose(image)
        image.draft("L", (side, side))
        image = image.convert("L")
        image.thumbnail((side, side))
        return np.asarray(image)


def write_predictions_figure(results: Sequence[ImagePrediction], path: str | Path,
                             name: str, score: str = "probability") -> Path:
    """`mnist predict --plot`: each classified image, its network input and the probability
    (or, without a softmax, the score) of every digit, saved atomically as a PNG."""
    from mnist_cli import plots

    path = require_png(path, "--plot")
    classified = [result for result in results if result.error is None]
    if not classified:
        raise ImageError("--plot: no image could be classified, so there is nothing to draw")
    figure = plots.predictions_figure(
        [result.image.name for result in classified],
        [_thumbnail(result.image) for result in classified],
        [result.network_input for result in classified],
        [result.all_probabilities for result in classified],
        f"{name}: what the network saw and what it answered",
        score,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    save_with(path, figure.savefig)
    return path


def format_prediction(result: ImagePrediction, width: int = 0,
                      probabilities: bool = True) -> str:
    """`seven.png  7 (98.1%)   then 1 (1.2%), 2 (0.3%)`; scores (a sigmoid or linear output,
    `probabilities` False) as `7 (score 0.912)`, since they are no percentages."""
    def shown(value: float) -> str:
        return f"{value:.1%}" if probabilities else f"score {value:.3f}"

    first = f"{result.digits[0]} ({shown(result.probabilities[0])})"
    others = ", ".join(f"{digit} ({shown(probability)})" for digit, probability
                       in zip(result.digits[1:], result.probabilities[1:]))
    line = f"{str(result.image) + ':':<{width + 1}} {first:<10} then {others}"
    if result.preprocessed is not None:
        line += f"   [network input: {result.preprocessed}]"
    return line
