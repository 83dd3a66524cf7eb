"""Tests for mnist_cli.images: a user's digit image -> a 28x28 MNIST-style array.

The core property is a round trip: an MNIST digit (28x28), made into a "user photo" (scaled to
200x200, dark ink on light paper, pasted off-centre on a bigger canvas, saved as PNG or JPEG),
must come back close to the original. With `MNIST_DATA` pointing at an .npz in the Keras layout
the digits are real MNIST test digits; without it they are digits drawn here with Pillow and
put in MNIST form by `prepare_digit` (so the round trip then checks consistency across scale,
position, polarity and format rather than fidelity to MNIST itself).
"""

from __future__ import annotations

import os
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, features
from scipy import ndimage

from mnist_cli.errors import ImageError, MnistCliError
from mnist_cli.images import load_digit_image, prepare_digit, save_digit_png

PHOTO_SIDE = 200


# --------------------------------------------------------------------------------------------
# Helpers


def real_mnist_path() -> Path | None:
    """The .npz named by MNIST_DATA, if there is one."""
    value = os.environ.get("MNIST_DATA")
    if value and value.endswith(".npz") and Path(value).is_file():
        return Path(value)
    return None


def draw_synthetic_digit(label: int, side: int = 112, width: int = 11) -> Image.Image:
    """A rough handwritten-like digit drawn light on black, at 4x MNIST resolution."""
    image = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(image)
    s = side / 112  # the shapes below are designed on a 112-pixel canvas

    def box(*coordinates: float) -> list[float]:
        return [value * s for value in coordinates]

    ink = {"fill": 255, "width": round(width * s)}
    if label == 0:
        draw.ellipse(box(34, 16, 78, 96), outline=255, width=ink["width"])
    elif label == 1:
        draw.line(box(60, 16, 52, 96), **ink)
        draw.line(box(60, 16, 46, 30), **ink)
    elif label == 2:
        draw.arc(box(32, 16, 80, 56), 180, 20, **ink)
        draw.line(box(78, 44, 34, 94), **ink)
        draw.line(box(34, 94, 82, 94), **ink)
    elif label == 3:
        draw.arc(box(34, 16, 78, 56), 200, 90, **ink)
        draw.arc(box(30, 54, 80, 96), 270, 160, **ink)
    elif label == 4:
        draw.line(box(66, 16, 30, 70), **ink)
        draw.line(box(30, 70, 84, 70), **ink)
        draw.line(box(66, 40, 66, 96), **ink)
    elif label == 5:
        draw.line(box(76, 18, 40, 18), **ink)
        draw.line(box(40, 18, 36, 52), **ink)
        draw.arc(box(32, 44, 80, 96), 220, 150, **ink)
    elif label == 6:
        draw.arc(box(30, 14, 90, 100), 180, 280, **ink)
        draw.ellipse(box(32, 56, 76, 96), outline=255, width=ink["width"])
    elif label == 7:
        draw.line(box(30, 18, 82, 18), **ink)
        draw.line(box(82, 18, 46, 96), **ink)
    elif label == 8:
        draw.ellipse(box(38, 14, 74, 52), outline=255, width=ink["width"])
        draw.ellipse(box(32, 52, 80, 96), outline=255, width=ink["width"])
    else:
        draw.ellipse(box(34, 14, 78, 56), outline=255, width=ink["width"])
        draw.line(box(76, 36, 70, 96), **ink)
    return image


def synthetic_digits(count: int) -> np.ndarray:
    """Drawn digits, anti-aliased down to 28x28, then put in MNIST form by prepare_digit."""
    digits = []
    for index in range(count):
        drawn = draw_synthetic_digit(index % 10, width=9 + 2 * (index // 10 % 3))
        small = np.asarray(drawn.resize((28, 28), Image.Resampling.BOX))
        digits.append(prepare_digit(small))
    return np.stack(digits)


_DIGIT_CACHE: dict[int, np.ndarray] = {}


def mnist_like_digits(count: int) -> np.ndarray:
    """`count` uint8 (28, 28) digits: real MNIST test digits if available, else synthetic."""
    if count not in _DIGIT_CACHE:
        path = real_mnist_path()
        if path is not None:
            with np.load(path) as data:
                _DIGIT_CACHE[count] = np.asarray(data["x_test"][:count], dtype=np.uint8)
        else:
            _DIGIT_CACHE[count] = synthetic_digits(count)
    return _DIGIT_CACHE[count]


def make_photo(
    digit: np.ndarray,
    path: Path,
    image_format: str = "PNG",
    dark_on_light: bool = True,
    side: int = PHOTO_SIDE,
) -> Path:
    """Save an MNIST digit the way a user might: big, off-centre, usually dark on light.

    The canvas is 2.1 x 1.65 times the digit's side (420x330 for 200), and the digit sits
    left of and below the middle, at (0.185, 0.455) of its side from the top-left corner."""
    big = Image.fromarray(digit).resize((side, side), Image.Resampling.BICUBIC)
    canvas = Image.new("L", (round(2.1 * side), round(1.65 * side)), 0)
    canvas.paste(big, (round(0.185 * side), round(0.455 * side)))
    if dark_on_light:
        canvas = Image.eval(canvas, lambda value: 255 - value)
    canvas.save(path, format=image_format)
    return path


def correlation(first: np.ndarray, second: np.ndarray) -> float:
    """Pearson correlation of two images' pixels: 1 = same picture up to brightness."""
    a = first.astype(np.float64).ravel() - first.mean()
    b = second.astype(np.float64).ravel() - second.mean()
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


def aligned_correlation(first: np.ndarray, second: np.ndarray) -> float:
    """The best correlation over whole-pixel shifts of at most one pixel each way.

    Centring moves a digit by a whole number of pixels, as MNIST did; when the centre of mass
    falls near a half pixel, two versions of the same digit (another format, another scale)
    can land one pixel apart. This compares their shapes without that coin toss."""
    return max(
        correlation(np.roll(first, (rows, columns), axis=(0, 1)), second)
        for rows in (-1, 0, 1)
        for columns in (-1, 0, 1)
    )


def ink_box(image: np.ndarray) -> tuple[int, int]:
    """(height, width) of the bounding box of the non-zero pixels."""
    rows = np.flatnonzero(image.any(axis=1))
    columns = np.flatnonzero(image.any(axis=0))
    return int(rows[-1] - rows[0] + 1), int(columns[-1] - columns[0] + 1)


def assert_mnist_form(image: np.ndarray) -> None:
    """What every prepared digit must satisfy, whatever the input."""
    assert image.dtype == np.uint8
    assert image.shape == (28, 28)
    assert image.max() == 255
    height, width = ink_box(image)
    assert 19 <= max(height, width) <= 21, (height, width)
    centre_row, centre_column = ndimage.center_of_mass(image.astype(np.float64))
    assert abs(centre_row - 14) <= 1 and abs(centre_column - 14) <= 1, (centre_row, centre_column)


def write_drawing(path: Path, size: tuple[int, int], shapes, image_format: str = "PNG") -> Path:
    """Black shapes on white paper. `shapes` is a function given an ImageDraw."""
    image = Image.new("L", size, 255)
    shapes(ImageDraw.Draw(image))
    image.save(path, format=image_format)
    return path


# --------------------------------------------------------------------------------------------
# Round trip: an MNIST digit -> a user photo -> load_digit_image -> the digit again


@pytest.mark.parametrize("image_format", ["PNG", "JPEG"])
def test_photo_of_a_digit_comes_back_close_to_the_original(tmp_path, image_format):
    digits = mnist_like_digits(20)
    correlations = []
    for index, digit in enumerate(digits):
        path = make_photo(digit, tmp_path / f"digit{index}.{image_format.lower()}", image_format)
        prepared = load_digit_image(path)
        assert_mnist_form(prepared)
        correlations.append(correlation(prepared, digit))
    # A digit whose centre of mass falls near a half pixel may come back shifted by one pixel
    # (MNIST's shift is a whole number of pixels), which costs some correlation: hence "most".
    assert np.mean(np.array(correlations) > 0.8) >= 0.85, np.round(correlations, 3)
    assert np.mean(correlations) > 0.88


def test_round_trip_on_100_real_mnist_digits(tmp_path, capsys):
    if real_mnist_path() is None:
        pytest.skip("set MNIST_DATA to an MNIST .npz to measure the round trip on real digits")
    digits = mnist_like_digits(100)
    correlations = np.array(
        [
            correlation(load_digit_image(make_photo(digit, tmp_path / "photo.png")), digit)
            for digit in digits
        ]
    )
    with capsys.disabled():
        print(
            f"\nround trip 28 -> {PHOTO_SIDE}x{PHOTO_SIDE} dark-on-light, off-centre on 420x330, "
            f"PNG -> 28 on 100 MNIST test digits: mean correlation {correlations.mean():.4f}, "
            f"median {np.median(correlations):.4f}, min {correlations.min():.4f}, "
            f"{(correlations > 0.8).mean():.0%} above 0.8"
        )
    assert correlations.mean() >= 0.85


def test_prepare_digit_leaves_an_mnist_digit_nearly_unchanged():
    digits = mnist_like_digits(20)
    correlations = [correlation(prepare_digit(digit), digit) for digit in digits]
    assert np.median(correlations) > 0.97
    assert np.mean(np.array(correlations) > 0.9) >= 0.85


def test_light_on_dark_gives_the_same_as_dark_on_light(tmp_path):
    for index, digit in enumerate(mnist_like_digits(5)):
        dark_ink = load_digit_image(make_photo(digit, tmp_path / f"dark{index}.png"))
        light_ink = load_digit_image(
            make_photo(digit, tmp_path / f"light{index}.png", dark_on_light=False)
        )
        difference = np.abs(dark_ink.astype(int) - light_ink.astype(int))
        assert difference.max() <= 1


def test_the_same_digit_at_any_scale_and_position_gives_the_same_result(tmp_path):
    digit = mnist_like_digits(1)[0]
    small = load_digit_image(make_photo(digit, tmp_path / "small.png", side=84))
    large = load_digit_image(make_photo(digit, tmp_path / "large.png", side=300))
    assert aligned_correlation(small, large) > 0.95


# --------------------------------------------------------------------------------------------
# Colour, transparency, formats, orientation


def test_rgb_photo_with_coloured_ink(tmp_path):
    drawn = draw_synthetic_digit(4, side=224, width=12)
    ink = np.asarray(drawn) > 127
    photo = np.zeros((224, 224, 3), dtype=np.uint8)
    photo[:] = (235, 230, 215)  # cream paper
    photo[ink] = (20, 40, 160)  # blue ballpoint
    Image.fromarray(photo).save(tmp_path / "blue.jpg", quality=85)
    expected = prepare_digit(np.asarray(drawn))
    assert correlation(load_digit_image(tmp_path / "blue.jpg"), expected) > 0.95


def _ink_layer(drawn: Image.Image, colour: tuple[int, int, int]) -> Image.Image:
    """RGBA: `colour` where the drawing has ink (its alpha), fully transparent elsewhere. The
    transparent pixels hold black, as exporters often write them."""
    layer = Image.new("RGBA", drawn.size, (0, 0, 0, 0))
    solid = Image.new("RGBA", drawn.size, (*colour, 255))
    layer.paste(solid, mask=drawn)
    return layer


@pytest.mark.parametrize("colour", [(0, 0, 0), (255, 255, 255)], ids=["black", "white"])
@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_transparent_png_with_strokes_of_one_colour(tmp_path, mode, colour):
    drawn = draw_synthetic_digit(7, side=224, width=14)
    _ink_layer(drawn, colour).convert(mode).save(tmp_path / "layer.png")
    expected = prepare_digit(np.asarray(drawn))
    assert correlation(load_digit_image(tmp_path / "layer.png"), expected) > 0.97


def test_palette_png_whose_transparent_colour_equals_the_ink(tmp_path):
    """Black ink, and a "transparent" background that is black too: dropping the alpha would
    leave a black square."""
    drawn = draw_synthetic_digit(2, side=224, width=14)
    indices = (np.asarray(drawn) > 127).astype(np.uint8)  # 0 background, 1 ink
    image = Image.fromarray(indices, mode="P")
    image.putpalette([0, 0, 0, 0, 0, 0])
    image.save(tmp_path / "palette.png", transparency=0)
    with Image.open(tmp_path / "palette.png") as saved:
        assert saved.convert("L").getextrema() == (0, 0)
    expected = prepare_digit(np.asarray(drawn))
    assert correlation(load_digit_image(tmp_path / "palette.png"), expected) > 0.9


def test_scan_with_transparent_margins_keeps_the_paper_as_background(tmp_path):
    drawn = draw_synthetic_digit(3, side=200, width=14)
    paper = Image.new("RGBA", (300, 300), (0, 0, 0, 0))
    sheet = Image.new("RGBA", (200, 200), (250, 250, 250, 255))
    sheet.paste((10, 10, 10, 255), mask=drawn)
    paper.paste(sheet, (50, 50))
    paper.save(tmp_path / "scan.png")
    expected = prepare_digit(np.asarray(drawn))
    assert correlation(load_digit_image(tmp_path / "scan.png"), expected) > 0.95


def test_fully_transparent_png_is_blank(tmp_path):
    Image.new("RGBA", (50, 50), (0, 0, 0, 0)).save(tmp_path / "empty.png")
    with pytest.raises(ImageError, match="blank"):
        load_digit_image(tmp_path / "empty.png")


FORMATS = [("BMP", "bmp"), ("GIF", "gif"), ("TIFF", "tif"), ("JPEG", "jpg")]
if features.check("webp"):
    FORMATS.append(("WEBP", "webp"))


@pytest.mark.parametrize(("image_format", "extension"), FORMATS)
def test_common_formats_give_the_same_digit_as_png(tmp_path, image_format, extension):
    digit = mnist_like_digits(3)[2]
    reference = load_digit_image(make_photo(digit, tmp_path / "reference.png"))
    other = load_digit_image(make_photo(digit, tmp_path / f"digit.{extension}", image_format))
    assert aligned_correlation(other, reference) > 0.9


def test_one_bit_and_sixteen_bit_images(tmp_path):
    drawn = draw_synthetic_digit(5, side=224, width=14)
    dark_on_light = 255 - np.asarray(drawn)
    expected = prepare_digit(np.asarray(drawn))

    Image.fromarray(dark_on_light).convert("1").save(tmp_path / "bilevel.bmp")
    assert correlation(load_digit_image(tmp_path / "bilevel.bmp"), expected) > 0.95

    # Grey paper and grey ink: Pillow's own 16-to-8-bit conversion clips every level above
    # 255 to white, which would leave nothing of this page.
    eight_bit = make_photo(mnist_like_digits(1)[0], tmp_path / "eight.png")
    with Image.open(eight_bit) as saved:
        page = np.asarray(saved).astype(np.uint16)
    sixteen_bit = (60 + page * 140 // 255) * 257
    Image.fromarray(sixteen_bit).save(tmp_path / "sixteen.png")
    with Image.open(tmp_path / "sixteen.png") as saved:
        assert saved.mode.startswith("I")
    Image.fromarray((sixteen_bit // 257).astype(np.uint8)).save(tmp_path / "eight.png")
    difference = load_digit_image(tmp_path / "sixteen.png").astype(int) - load_digit_image(
        tmp_path / "eight.png"
    )
    assert np.abs(difference).max() <= 1


def test_exif_orientation_is_applied(tmp_path):
    """A phone stores the sensor's pixels plus an "rotate me" tag; the digit must be upright."""
    drawn = Image.fromarray(255 - np.asarray(draw_synthetic_digit(7, side=224, width=14)))
    upright = drawn.transpose(Image.Transpose.ROTATE_270)  # what orientation 6 displays
    upright.save(tmp_path / "upright.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    drawn.save(tmp_path / "tagged.jpg", exif=exif, quality=95)

    expected = load_digit_image(tmp_path / "upright.png")
    tagged = load_digit_image(tmp_path / "tagged.jpg")
    assert correlation(tagged, expected) > 0.95
    assert correlation(prepare_digit(255 - np.asarray(drawn)), expected) < 0.6


# --------------------------------------------------------------------------------------------
# Shapes and sizes


def test_a_tall_one_stays_thin(tmp_path):
    path = write_drawing(
        tmp_path / "one.png", (400, 400), lambda draw: draw.rectangle((190, 50, 205, 350), fill=0)
    )
    height, width = ink_box(load_digit_image(path))
    assert height >= 19 and width <= 4, (height, width)


def test_a_wide_digit_keeps_its_aspect_ratio(tmp_path):
    path = write_drawing(
        tmp_path / "wide.png",
        (500, 300),
        lambda draw: draw.ellipse((70, 120, 430, 180), outline=0, width=12),
    )
    prepared = load_digit_image(path)
    assert_mnist_form(prepared)
    height, width = ink_box(prepared)
    assert width >= 19 and 2 <= height <= 5, (height, width)  # 360x60 -> 20x3.3


def test_a_tiny_image(tmp_path):
    pixels = np.full((10, 10), 255, dtype=np.uint8)
    pixels[2, 3:8] = 0  # a little "7"
    pixels[3:8, 7 - np.arange(5) // 2] = 0
    Image.fromarray(pixels).save(tmp_path / "tiny.png")
    assert_mnist_form(load_digit_image(tmp_path / "tiny.png"))


def test_a_large_photo(tmp_path):
    """3000x2000 with a small-ish digit in one corner; it must match the same digit drawn
    small, and the pipeline must not choke on 6 megapixels."""
    drawn = draw_synthetic_digit(8, side=600, width=60)
    canvas = Image.new("L", (3000, 2000), 0)
    canvas.paste(drawn, (2100, 1200))
    Image.eval(canvas, lambda value: 255 - value).save(tmp_path / "large.jpg", quality=90)
    prepared = load_digit_image(tmp_path / "large.jpg")
    assert_mnist_form(prepared)
    small = np.asarray(drawn.resize((112, 112), Image.Resampling.BOX))
    assert aligned_correlation(prepared, prepare_digit(small)) > 0.97


def test_hairline_strokes_are_thickened_to_mnist_width():
    """A digit drawn with a 2-pixel pen on an 800-pixel canvas would shrink to a faint
    sub-pixel line; it must come out with strokes like a thick-pen drawing of the same shape."""

    def ring(width: int) -> np.ndarray:
        image = Image.new("L", (800, 800), 255)
        ImageDraw.Draw(image).ellipse((250, 100, 550, 700), outline=0, width=width)
        return prepare_digit(np.asarray(image))

    # 75 pixels on a 600-pixel-tall digit is 2.5 pixels after the fit: MNIST's median width.
    # (Without thickening the hairline keeps about 40% of the thick ring's ink, and the two
    # correlate at about 0.5; the rings' holes differ in size, so not at 1.0 even with it.)
    hairline, thick = ring(2), ring(75)
    assert 0.8 <= hairline.sum() / thick.sum() <= 1.25
    assert 0.8 <= (hairline > 127).sum() / (thick > 127).sum() <= 1.25
    assert aligned_correlation(hairline, thick) > 0.8


def test_noisy_paper_and_a_speck_of_dust(tmp_path):
    generator = np.random.default_rng(0)
    drawn = np.asarray(draw_synthetic_digit(6, side=240, width=16)).astype(np.float64)
    page = np.full((360, 360), 200.0)  # grey paper under poor light
    page[60:300, 80:320] -= drawn * (160 / 255)  # dark ink
    page += generator.normal(0.0, 8.0, page.shape)  # sensor noise
    page[20:26, 20:26] = 30.0  # a speck far from the digit
    Image.fromarray(np.clip(page, 0, 255).astype(np.uint8)).save(tmp_path / "noisy.jpg")
    prepared = load_digit_image(tmp_path / "noisy.jpg")
    assert_mnist_form(prepared)
    assert correlation(prepared, prepare_digit(drawn)) > 0.9


def test_dim_photo_with_a_glint_of_glare():
    """Paper below mid-grey (a dim photo) and one small glint brighter than the paper: the
    ink is still the dark marks, because they carry far more contrast in all."""
    drawn = np.asarray(draw_synthetic_digit(9, side=240, width=16)).astype(np.float64)
    page = np.full((320, 320), 110.0)
    page[40:280, 40:280] -= drawn * (60 / 255)  # pencil, 60 levels darker than the paper
    page[290:296, 10:16] = 255.0  # glare on the paper's edge
    prepared = prepare_digit(page.astype(np.uint8))
    assert_mnist_form(prepared)
    assert aligned_correlation(prepared, prepare_digit(drawn)) > 0.95


def test_an_unevenly_lit_photo_is_read_and_an_unevenly_lit_empty_page_is_blank(tmp_path):
    """A lamp to one side: the paper goes from 120 to 220 across the page, more than the
    pencil's 70 levels. The lighting is neither ink nor noise."""
    drawn = np.asarray(draw_synthetic_digit(4, side=240, width=16)).astype(np.float64)
    light = np.add.outer(np.linspace(0, 30, 320), np.linspace(120, 190, 320))
    noise = np.random.default_rng(3).normal(0.0, 5.0, light.shape)
    page = light.copy()
    page[40:280, 40:280] -= drawn * (70 / 255)
    Image.fromarray(np.clip(page + noise, 0, 255).astype(np.uint8)).save(
        tmp_path / "lamp.jpg", quality=70)
    prepared = load_digit_image(tmp_path / "lamp.jpg")
    assert_mnist_form(prepared)
    assert aligned_correlation(prepared, prepare_digit(drawn)) > 0.9
    Image.fromarray(np.clip(light + noise, 0, 255).astype(np.uint8)).save(
        tmp_path / "empty.jpg", quality=70)
    with pytest.raises(ImageError, match="blank"):
        load_digit_image(tmp_path / "empty.jpg")


@pytest.mark.parametrize("table", ["left", "bottom", "left and top"])
def test_a_photo_with_the_dark_table_at_its_edge_is_read_as_the_digit_on_the_paper(
        tmp_path, table):
    """The photo shows the table beside the page: the table is not the paper's background,
    nor the digit."""
    drawn = np.asarray(draw_synthetic_digit(7, side=200, width=14)).astype(np.float64)
    page = np.full((300, 400), 205.0)
    page[50:250, 110:310] -= drawn * (130 / 255)
    if "left" in table:
        page[:, :50] = 40.0
    if "bottom" in table:
        page[-60:, :] = 40.0
    if "top" in table:
        page[:30, :] = 40.0
    page += np.random.default_rng(4).normal(0.0, 3.0, page.shape)
    Image.fromarray(np.clip(page, 0, 255).astype(np.uint8)).save(tmp_path / "desk.jpg")
    prepared = load_digit_image(tmp_path / "desk.jpg")
    assert_mnist_form(prepared)
    assert aligned_correlation(prepared, prepare_digit(drawn)) > 0.9


def test_float_input_in_zero_to_one_matches_uint8():
    digit = mnist_like_digits(1)[0]
    from_float = prepare_digit(digit.astype(np.float32) / 255.0)
    from_uint8 = prepare_digit(digit)
    assert np.abs(from_float.astype(int) - from_uint8.astype(int)).max() <= 1


# --------------------------------------------------------------------------------------------
# Errors: one line naming the file, never a Pillow or numpy traceback


def assert_one_line_naming(error: pytest.ExceptionInfo, path: Path) -> None:
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    assert isinstance(error.value, MnistCliError)


@pytest.mark.parametrize("level", [0, 128, 255])
def test_a_uniform_image_is_blank(tmp_path, level):
    path = tmp_path / "uniform.png"
    Image.new("L", (64, 48), level).save(path)
    with pytest.raises(ImageError, match="is blank: no digit found") as error:
        load_digit_image(path)
    assert_one_line_naming(error, path)


def test_a_photo_of_an_empty_page_is_blank(tmp_path):
    generator = np.random.default_rng(1)
    page = np.clip(230 + generator.normal(0, 3, (300, 400)), 0, 255).astype(np.uint8)
    Image.fromarray(page).save(tmp_path / "page.jpg", quality=70)
    with pytest.raises(ImageError, match="blank"):
        load_digit_image(tmp_path / "page.jpg")


def test_a_text_file_named_png_is_not_an_image(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is not a picture\n")
    with pytest.raises(ImageError, match="is not an image Pillow can read") as error:
        load_digit_image(path)
    assert_one_line_naming(error, path)


@pytest.mark.parametrize(("image_format", "extension"), [("PNG", "png"), ("JPEG", "jpg")])
def test_a_truncated_image(tmp_path, image_format, extension):
    generator = np.random.default_rng(2)
    noise = generator.integers(0, 256, (200, 200), dtype=np.uint8)  # incompressible
    whole = tmp_path / f"whole.{extension}"
    Image.fromarray(noise).save(whole, format=image_format)
    path = tmp_path / f"truncated.{extension}"
    path.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(ImageError, match="truncated or corrupt") as error:
        load_digit_image(path)
    assert_one_line_naming(error, path)


def test_a_missing_file_and_a_folder(tmp_path):
    with pytest.raises(ImageError, match="not found") as error:
        load_digit_image(tmp_path / "nowhere.png")
    assert_one_line_naming(error, tmp_path / "nowhere.png")
    with pytest.raises(ImageError, match="is a folder"):
        load_digit_image(tmp_path)


def png_claiming_size(path: Path, width: int, height: int) -> Path:
    """A tiny valid PNG whose header is rewritten to claim `width` x `height` pixels: Pillow
    reads the size from the header alone, so this is how a decompression bomb looks."""
    Image.new("L", (1, 1), 255).save(path)
    data = bytearray(path.read_bytes())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    crc = zlib.crc32(bytes(data[ihdr : ihdr + 17]))
    data[ihdr + 17 : ihdr + 21] = crc.to_bytes(4, "big")
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("side", [10_000, 20_000], ids=["warning-zone", "error-zone"])
def test_a_decompression_bomb_is_refused_before_decoding(tmp_path, recwarn, side):
    """Pillow warns between 1x and 2x its 89-megapixel limit and raises above: both must be
    one clear ImageError, and no warning may reach the user's terminal."""
    path = png_claiming_size(tmp_path / "bomb.png", side, side)
    with pytest.raises(ImageError, match="too large to decode safely") as error:
        load_digit_image(path)
    assert_one_line_naming(error, path)
    assert not [warning for warning in recwarn if "decompression" in str(warning.message)]


def test_the_pixel_limit_holds_even_when_pillow_guard_is_disabled(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    path = png_claiming_size(tmp_path / "bomb.png", 10_000, 10_000)
    with pytest.raises(ImageError, match="too large"):
        load_digit_image(path)


@pytest.mark.parametrize(
    ("array", "problem"),
    [
        (np.zeros((28, 28, 3), dtype=np.uint8), "2-D"),
        (np.zeros((0, 28), dtype=np.uint8), "2-D"),
        (np.full((28, 28), np.nan), "NaN"),
        (np.full((28, 28), -1.0), "negative"),
        (np.array([["a", "b"]]), "numbers"),
        (np.zeros((28, 28), dtype=np.uint8), "blank"),
    ],
)
def test_prepare_digit_rejects_what_is_not_a_grey_digit(array, problem):
    with pytest.raises(ImageError, match=problem):
        prepare_digit(array)


# --------------------------------------------------------------------------------------------
# Saving, and the import contract


def test_save_digit_png_round_trips_and_leaves_no_temporary_file(tmp_path):
    digit = mnist_like_digits(1)[0]
    path = tmp_path / "prepared.png"
    save_digit_png(digit, path)
    save_digit_png(digit, path)  # overwriting is fine
    assert [entry.name for entry in tmp_path.iterdir()] == ["prepared.png"]
    ordinary = tmp_path / "ordinary.txt"
    ordinary.write_text("")  # the permissions any new file gets under the current umask
    assert path.stat().st_mode == ordinary.stat().st_mode
    with Image.open(path) as saved:
        assert saved.mode == "L"
        assert np.array_equal(np.asarray(saved), digit)


def test_save_digit_png_errors(tmp_path):
    with pytest.raises(ImageError, match="28x28"):
        save_digit_png(np.zeros((10, 10), dtype=np.uint8), tmp_path / "small.png")
    missing_folder = tmp_path / "no" / "such" / "folder" / "digit.png"
    with pytest.raises(ImageError, match="cannot write") as error:
        save_digit_png(np.zeros((28, 28), dtype=np.uint8), missing_folder)
    assert_one_line_naming(error, missing_folder)


def test_importing_images_does_not_import_keras_or_tensorflow():
    code = (
        "import sys, mnist_cli.images; "
        "loaded = {'keras', 'tensorflow', 'jax'} & set(sys.modules); "
        "sys.exit(f'imported {sorted(loaded)}' if loaded else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
