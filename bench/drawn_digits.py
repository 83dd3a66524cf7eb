"""How well runs read digits that were never in MNIST: typeset in several fonts, written in
handwriting fonts and drawn by several (simulated) hands, each shown centred, off-centre,
tilted and as a photographed page. Prints one JSON object: each run's accuracy, overall and
per kind of image.

The images are rendered here, dark ink on light paper as a user would draw or photograph
them, saved as files and classified through the real CLI (`mnist predict RUN --json`, one
process per run), so every run sees the very same files. Typeset digits use the fonts that
come with matplotlib; handwriting fonts (`script`) are fonts made from people's handwriting,
found under --font-dir where their Debian packages put them (those missing are listed in
the report: `apt-get install fonts-dkg-handwriting fonts-breip fonts-bwht fonts-humor-sans
fonts-kristi fonts-dancingscript fonts-comic-neue fonts-kaushanscript fonts-klee`);
hand-drawn ones are pen strokes along each digit's usual shape, with a random slant, wobble
and pen width per drawing. The four ways of showing a digit:

- centred: the digit alone on white paper;
- off-centre: small, in a corner of a large page;
- tilted: rotated by 20 to 30 degrees either way;
- photo: grey, unevenly lit paper, grey ink, blur, sensor noise, a small tilt, JPEG.

Example (a run of the Keras tutorial net beside one of configs/dense-augmented.yaml):
    python bench/drawn_digits.py outputs/keras-784-500-10-... outputs/dense-augmented-... \
        --hands 6 --out drawn-digits
"""

from __future__ import annotations

import argparse
import io
import json
import math
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

CANVAS = 200  # side of a rendered digit, in pixels
FONTS = ["DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf",
         "DejaVuSerif-Italic.ttf", "cmr10.ttf", "cmss10.ttf", "STIXGeneralItalic.ttf"]
SHOWINGS = ("centred", "off-centre", "tilted", "photo")
# (Debian package, font file): fonts drawn from someone's handwriting. Not fonts-femkeklaver:
# it draws each digit's outline, which no hand writes.
HANDWRITING_FONTS = (
    ("fonts-dkg-handwriting", "dkg.ttf"), ("fonts-breip", "Breip.ttf"),
    ("fonts-bwht", "BecauseWeLearn-Regular.otf"), ("fonts-bwht", "BecauseWeBuild-Regular.otf"),
    ("fonts-bwht", "BecauseWeCreate-Regular.otf"), ("fonts-humor-sans", "Humor-Sans.ttf"),
    ("fonts-kristi", "Kristi.ttf"), ("fonts-dancingscript", "DancingScript-Regular.otf"),
    ("fonts-comic-neue", "ComicNeue-Regular.otf"),
    ("fonts-kaushanscript", "KaushanScript-Regular.otf"), ("fonts-klee", "KleeOne-Regular.ttf"),
)


def handwriting_fonts(folder: Path) -> tuple[list[Path], list[str]]:
    """The handwriting fonts found under `folder`, and the packages of those missing."""
    found, missing = [], []
    for package, name in HANDWRITING_FONTS:
        paths = sorted(folder.rglob(name)) if folder.is_dir() else []
        if paths:
            found.append(paths[0])
        else:
            missing.append(package)
    return found, sorted(set(missing))


def arc(cx: float, cy: float, rx: float, ry: float, start: float, stop: float,
        points: int = 24) -> list[tuple[float, float]]:
    """Points of an elliptic arc in a 100x100 box (y down; 270 degrees is the top)."""
    angles = np.deg2rad(np.linspace(start, stop, points))
    return [(cx + rx * math.cos(a), cy + ry * math.sin(a)) for a in angles]


# Each digit: strokes (polylines) in a 100x100 box, one or two common ways to write it.
STROKES: dict[int, list[list[list[tuple[float, float]]]]] = {
    0: [[arc(50, 50, 24, 38, 0, 360, 40)]],
    1: [[[(54, 12), (48, 88)]], [[(38, 26), (54, 12), (50, 88)], [(36, 88), (64, 88)]]],
    2: [[arc(50, 32, 22, 20, 190, 380) + [(28, 88), (76, 86)]],
        [arc(48, 30, 20, 18, 200, 390) + [(30, 84)] + arc(40, 82, 8, 6, 270, 630, 12)
         + [(78, 84)]]],
    3: [[arc(48, 30, 20, 18, 200, 450) + arc(48, 67, 24, 21, 270, 520)]],
    4: [[[(62, 12), (24, 64), (80, 64)], [(62, 12), (62, 90)]],
        [[(30, 12), (26, 58), (76, 58)], [(64, 30), (64, 90)]]],
    5: [[[(74, 14), (36, 14), (30, 48)] + arc(48, 64, 24, 22, 220, 510)]],
    6: [[[(66, 12), (46, 30), (32, 56)] + arc(50, 66, 20, 22, 180, 540)]],
    7: [[[(26, 14), (74, 14), (42, 90)]], [[(26, 14), (74, 14), (42, 90)], [(36, 52), (66, 52)]]],
    8: [[arc(50, 30, 18, 17, 90, 450), arc(50, 68, 22, 21, 270, 630)]],
    9: [[arc(50, 32, 20, 19, 0, 360), [(70, 32), (62, 90)]],
        [arc(50, 32, 20, 19, 0, 360), [(70, 32), (68, 62), (58, 86), (40, 90)]]],
}


def hand_drawn(digit: int, rng: np.random.Generator) -> Image.Image:
    """One drawing of `digit`: black pen on white, random slant, rotation, wobble, pen width."""
    variants = STROKES[digit]
    strokes = variants[rng.integers(len(variants))]
    slant, turn = rng.uniform(-0.3, 0.3), math.radians(rng.uniform(-8, 8))
    squash = rng.uniform(0.8, 1.15)
    pen = rng.uniform(7, 13) * CANVAS / 100 / 1.6

    def place(point: tuple[float, float]) -> tuple[float, float]:
        x, y = point[0] - 50, point[1] - 50
        x = squash * (x - slant * y)
        x, y = x * math.cos(turn) - y * math.sin(turn), x * math.sin(turn) + y * math.cos(turn)
        scale = CANVAS / 100 * 0.8
        return CANVAS / 2 + scale * x, CANVAS / 2 + scale * y

    image = Image.new("L", (CANVAS, CANVAS), 255)
    draw = ImageDraw.Draw(image)
    for stroke in strokes:
        # a slow wave along the stroke: a hand wavers, it does not jitter
        along = np.linspace(0, 2 * math.pi, len(stroke))[:, None]
        wobble = rng.uniform(0.5, 3, 2) * np.sin(along + rng.uniform(0, 2 * math.pi, 2))
        points = [place((x + dx, y + dy)) for (x, y), (dx, dy) in zip(stroke, wobble)]
        draw.line(points, fill=0, width=round(pen), joint="curve")
        for x, y in (points[0], points[-1]):  # round pen ends
            draw.ellipse([x - pen / 2, y - pen / 2, x + pen / 2, y + pen / 2], fill=0)
    return image


def typeset(digit: int, path: Path) -> Image.Image:
    """`digit` in a font, black on white, centred on the canvas."""
    font = ImageFont.truetype(str(path), size=int(CANVAS * 0.7))
    image = Image.new("L", (CANVAS, CANVAS), 255)
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = draw.textbbox((0, 0), str(digit), font=font)
    draw.text(((CANVAS - (right - left)) / 2 - left, (CANVAS - (bottom - top)) / 2 - top),
              str(digit), fill=0, font=font)
    return image


def show(image: Image.Image, showing: str, rng: np.random.Generator) -> tuple[Image.Image, str]:
    """The digit as the user's file shows it, and that file's format."""
    if showing == "centred":
        return image, "PNG"
    if showing == "off-centre":
        page = Image.new("L", (480, 360), 255)
        small = image.resize((90, 90), Image.Resampling.LANCZOS)
        corner = [(10, 10), (380, 10), (10, 260), (380, 260)][rng.integers(4)]
        offset = rng.integers(0, 20, 2)
        page.paste(small, (corner[0] + int(offset[0]), corner[1] + int(offset[1])))
        return page, "PNG"
    if showing == "tilted":
        angle = rng.uniform(20, 30) * rng.choice([-1, 1])
        return image.rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=255), "PNG"
    # photo: dark grey ink on uneven grey paper, blurred, noisy, slightly turned, JPEG
    ink = np.asarray(image.rotate(rng.uniform(-8, 8), resample=Image.Resampling.BILINEAR,
                                  fillcolor=255), np.float32) / 255
    side = np.linspace(0, 1, CANVAS)
    light = rng.uniform(150, 190) + rng.uniform(20, 50) * np.add.outer(
        side * rng.uniform(-1, 1), side * rng.uniform(-1, 1))
    pixels = light * (0.35 + 0.65 * ink)
    blurred = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).filter(
        ImageFilter.GaussianBlur(rng.uniform(1.0, 2.0)))
    noisy = np.asarray(blurred, np.float32) + rng.normal(0, 6, (CANVAS, CANVAS))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)), "JPEG"


def render(folder: Path, hands: int, seed: int, scripts: list[Path]) -> dict[Path, dict]:
    """Every image, written into `folder`; the truth about each."""
    import matplotlib

    fonts = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    rng = np.random.default_rng(seed)
    truth = {}
    for digit in range(10):
        sources = [(f"font-{Path(name).stem}", typeset(digit, fonts / name)) for name in FONTS]
        sources += [(f"script-{path.stem}", typeset(digit, path)) for path in scripts]
        sources += [(f"hand-{index}", hand_drawn(digit, rng)) for index in range(hands)]
        for source, image in sources:
            for showing in SHOWINGS:
                shown, file_format = show(image, showing, rng)
                path = folder / f"{digit}-{source}-{showing}.{file_format.lower()[:3]}"
                buffer = io.BytesIO()
                shown.save(buffer, format=file_format, **({"quality": 60}
                                                          if file_format == "JPEG" else {}))
                path.write_bytes(buffer.getvalue())
                truth[path] = {"digit": digit, "source": source.split("-")[0],
                               "showing": showing}
    return truth


def predict(run: Path, truth: dict[Path, dict]) -> dict[Path, int]:
    """`mnist predict RUN --json` on every image: the digit it reads in each."""
    command = [sys.executable, "-m", "mnist_cli", "predict", str(run), *map(str, truth),
               "--json"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"mnist predict failed on {run}: {done.stderr.strip()}")
    return {Path(answer["image"]): answer["digit"] for answer in json.loads(done.stdout)}


def score(answers: dict[Path, int], truth: dict[Path, dict]) -> dict:
    """Accuracy overall and per kind of image."""
    right: dict[str, list[bool]] = defaultdict(list)
    for path, digit in answers.items():
        facts = truth[path]
        correct = digit == facts["digit"]
        for key in ("all", facts["source"], facts["showing"],
                    f"{facts['source']}/{facts['showing']}"):
            right[key].append(correct)
    return {key: round(float(np.mean(values)), 4) for key, values in sorted(right.items())}


def draw_misread(answers: dict[str, dict[Path, int]], truth: dict[Path, dict], path: Path,
                 per_row: int = 12) -> None:
    """One block per run: every image it misread, titled 'true -> read'."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    blocks = [(name, [image for image, digit in read.items()
                      if digit != truth[image]["digit"]]) for name, read in answers.items()]
    rows = [1 + max(1, math.ceil(len(misread) / per_row)) for _, misread in blocks]
    figure, axes = plt.subplots(sum(rows), per_row, squeeze=False,
                                figsize=(per_row * 1.1, sum(rows) * 1.25),
                                gridspec_kw={"hspace": 0.45, "wspace": 0.1})
    for axis in axes.ravel():
        axis.axis("off")
    top = 0
    for (name, misread), count in zip(blocks, rows):
        axes[top, 0].text(0, 0.2, f"{name}: {len(misread)} misread of {len(truth)}",
                          transform=axes[top, 0].transAxes, fontsize=11)
        for index, image in enumerate(sorted(misread)):
            axis = axes[top + 1 + index // per_row, index % per_row]
            axis.imshow(Image.open(image).convert("L"), cmap="gray", vmin=0, vmax=255)
            axis.set_title(f"{truth[image]['digit']} read as {answers[name][image]}", fontsize=8)
        top += count
    figure.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories of `mnist train`")
    parser.add_argument("--hands", type=int, default=6, help="drawings of each digit")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="keep the images in this folder")
    parser.add_argument("--sheet", type=Path, help="draw each run's misread images into this PNG")
    parser.add_argument("--font-dir", type=Path, default=Path("/usr/share/fonts"),
                        help="where to look for the handwriting fonts (/usr/share/fonts)")
    arguments = parser.parse_args()
    scripts, missing = handwriting_fonts(arguments.font_dir)
    with tempfile.TemporaryDirectory() as scratch:
        folder = arguments.out or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        truth = render(folder, arguments.hands, arguments.seed, scripts)
        answers = {run.name: predict(run, truth) for run in arguments.runs}
        report = {"images": len(truth), "fonts": len(FONTS),
                  "handwriting_fonts": [path.stem for path in scripts],
                  "handwriting_font_packages_missing": missing, "hands": arguments.hands,
                  "per_digit": len(truth) // 10, "seed": arguments.seed,
                  "accuracy": {name: score(read, truth) for name, read in answers.items()}}
        if arguments.sheet:
            draw_misread(answers, truth, arguments.sheet)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
