"""Tests of mnist_cli.data: IDX and .npz reading, checks, resolution order, preprocessing and
splits. Everything runs on small arrays made here (no network, no Keras import)."""

from __future__ import annotations

import gzip
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import make_synthetic_mnist

from mnist_cli.config import Config, DataConfig, build_config
from mnist_cli.data import (
    PreparedData,
    load_raw,
    prepare,
    preprocess,
    read_idx,
    resolve_mnist_path,
    write_idx,
)
from mnist_cli.data import sources as data_module
from mnist_cli.errors import ConfigError, DataError

IDX_NAMES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test may download anything or see the machine's own data: the Keras download and
    the OpenML fetch fail, KERAS_HOME is an empty folder and the data variables are unset."""

    def offline(*args: object) -> None:
        raise OSError("network disabled in tests")

    monkeypatch.setattr(data_module, "fetch_with_keras", offline)
    monkeypatch.setattr(data_module, "fetch_openml_mnist", offline)
    keras_home = tmp_path / "keras-home"
    keras_home.mkdir()
    monkeypatch.setenv("KERAS_HOME", str(keras_home))
    monkeypatch.delenv("MNIST_DATA", raising=False)
    monkeypatch.delenv("FASHION_MNIST_DATA", raising=False)


def small_arrays(n_train: int = 60, n_test: int = 20, seed: int = 0) -> dict[str, np.ndarray]:
    return make_synthetic_mnist(n_train, n_test, seed=seed)


def write_npz(path: Path, **overrides: np.ndarray) -> Path:
    arrays = small_arrays()
    arrays.update(overrides)
    np.savez(path, **arrays)
    return path


def write_idx_folder(folder: Path, arrays: dict[str, np.ndarray], suffix: str = ".gz") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for key, name in IDX_NAMES.items():
        write_idx(folder / f"{name}{suffix}", arrays[key])
    return folder


def indexed_dataset(n_train: int, n_test: int) -> dict[str, np.ndarray]:
    """Images that carry their own row number in pixels 0 and 1 (row // 256, row % 256),
    so every prepared row can be traced back to the dataset row it came from."""
    arrays = {}
    for part, count in (("train", n_train), ("test", n_test)):
        images = np.zeros((count, 28, 28), dtype=np.uint8)
        rows = np.arange(count)
        images[:, 0, 0] = rows // 256
        images[:, 0, 1] = rows % 256
        arrays[f"x_{part}"] = images
        arrays[f"y_{part}"] = (rows % 10).astype(np.uint8)
    return arrays


def rows_of(features: np.ndarray) -> np.ndarray:
    """The dataset row numbers of unscaled, flattened `indexed_dataset` features."""
    return (features[:, 0] * 256 + features[:, 1]).astype(np.int64)


def indexed_config(tmp_path: Path, n_train: int = 1000, n_test: int = 300, **data) -> Config:
    path = tmp_path / "indexed.npz"
    if not path.exists():
        np.savez(path, **indexed_dataset(n_train, n_test))
    seed = data.pop("seed", 0)
    settings = {"path": str(path), "scale": False, "flatten": True}
    settings.update(data)
    return build_config({"seed": seed, "data": settings})


# --------------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("suffix", [".gz", ""])
def test_idx_round_trip(tmp_path: Path, suffix: str) -> None:
    images = small_arrays()["x_train"]
    labels = small_arrays()["y_train"]
    write_idx(tmp_path / f"images{suffix}", images)
    write_idx(tmp_path / f"labels{suffix}", labels)

    read_images = read_idx(tmp_path / f"images{suffix}")
    read_labels = read_idx(tmp_path / f"labels{suffix}")

    assert read_images.dtype == np.uint8 and read_images.shape == images.shape
    np.testing.assert_array_equal(read_images, images)
    np.testing.assert_array_equal(read_labels, labels)
    opener = gzip.open if suffix else open
    with opener(tmp_path / f"images{suffix}", "rb") as stream:
        raw_start = stream.read(16)
    assert raw_start == bytes.fromhex("00000803") + np.array([60, 28, 28], ">u4").tobytes()


def test_idx_round_trip_other_dtypes(tmp_path: Path) -> None:
    values = np.arange(-6, 6, dtype=np.int32).reshape(3, 4)
    write_idx(tmp_path / "values.idx", values)
    read = read_idx(tmp_path / "values.idx")
    assert read.dtype == np.int32 and read.dtype.isnative
    np.testing.assert_array_equal(read, values)


@pytest.mark.parametrize(
    "magic",
    [b"PK\x03\x04", b"\x08\x00\x08\x03", b"\x00\x00\x07\x03", b"\x00\x00\x08\x00"],
    ids=["zip", "nonzero-start", "unknown-type", "no-dimensions"],
)
def test_idx_wrong_magic(tmp_path: Path, magic: bytes) -> None:
    path = tmp_path / "train-images-idx3-ubyte"
    write_idx(path, small_arrays()["x_train"])
    contents = bytearray(path.read_bytes())
    contents[0:4] = magic
    path.write_bytes(bytes(contents))
    with pytest.raises(DataError, match=f"wrong magic number 0x{magic.hex().upper()}") as caught:
        read_idx(path)
    assert str(path) in str(caught.value)


def test_idx_labels_where_images_expected(tmp_path: Path) -> None:
    path = tmp_path / "labels"
    write_idx(path, small_arrays()["y_train"])
    with pytest.raises(DataError, match="1-dimensional data but images need 3"):
        read_idx(path, expected_ndim=3)


def test_idx_header_count_larger_than_file(tmp_path: Path) -> None:
    path = tmp_path / "train-images-idx3-ubyte"
    write_idx(path, small_arrays()["x_train"])
    contents = bytearray(path.read_bytes())
    contents[4:8] = (61).to_bytes(4, "big")  # one image more than the file holds
    path.write_bytes(bytes(contents))
    with pytest.raises(DataError, match="truncated: the header promises 61x28x28") as caught:
        read_idx(path)
    assert str(path) in str(caught.value)


def test_idx_absurd_header_count_is_reported_before_allocating(tmp_path: Path) -> None:
    path = tmp_path / "train-images-idx3-ubyte"
    write_idx(path, small_arrays()["x_train"])
    contents = bytearray(path.read_bytes())
    contents[4:8] = (2**32 - 1).to_bytes(4, "big")  # 3 TB of images promised
    path.write_bytes(bytes(contents))
    with pytest.raises(DataError, match="truncated: the header promises 4294967295x28x28"):
        read_idx(path)


def test_idx_gzipped_header_count_larger_than_data(tmp_path: Path) -> None:
    labels = small_arrays()["y_train"]
    path = tmp_path / "labels.gz"
    with gzip.open(path, "wb") as stream:
        stream.write(bytes.fromhex("00000801") + (100).to_bytes(4, "big") + labels.tobytes())
    with pytest.raises(DataError, match="header promises 100 values .* only 60 bytes"):
        read_idx(path)


def test_idx_more_data_than_header(tmp_path: Path) -> None:
    path = tmp_path / "labels"
    write_idx(path, small_arrays()["y_train"])
    path.write_bytes(path.read_bytes() + b"\x00")
    with pytest.raises(DataError, match="more data than the header"):
        read_idx(path)


def test_idx_truncated_gzip(tmp_path: Path) -> None:
    path = tmp_path / "train-images-idx3-ubyte.gz"
    write_idx(path, small_arrays()["x_train"])
    contents = path.read_bytes()
    path.write_bytes(contents[: len(contents) // 2])
    with pytest.raises(DataError, match="truncated or corrupt gzip") as caught:
        read_idx(path)
    assert str(path) in str(caught.value)
    assert caught.value.__suppress_context__  # no chained numpy/gzip traceback


def test_idx_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        read_idx(tmp_path / "absent-idx1-ubyte")


@pytest.mark.parametrize(
    ("suffix", "spelling"),
    [(".gz", "-idx"), ("", "-idx"), ("", ".idx"), (".gz", ".idx")],
)
def test_idx_folder_loads_both_spellings(tmp_path: Path, suffix: str, spelling: str) -> None:
    arrays = small_arrays()
    folder = tmp_path / "mnist"
    folder.mkdir()
    for key, name in IDX_NAMES.items():
        write_idx(folder / (name.replace("-idx", spelling) + suffix), arrays[key])
    raw = load_raw(DataConfig(path=str(folder)))
    for key in IDX_NAMES:
        np.testing.assert_array_equal(getattr(raw, key), arrays[key])
    assert raw.source == f"data.path {folder}"


def test_idx_folder_missing_one_file(tmp_path: Path) -> None:
    folder = write_idx_folder(tmp_path / "mnist", small_arrays())
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"missing t10k-labels-idx1-ubyte\[\.gz\]") as caught:
        load_raw(DataConfig(path=str(folder)))
    assert str(folder) in str(caught.value)
    assert "train-labels" not in str(caught.value).split(";")[0]


# --------------------------------------------------------------------------------- .npz


def test_npz_loads_and_checks_types(tmp_path: Path) -> None:
    arrays = small_arrays()
    path = write_npz(
        tmp_path / "mnist.npz",
        x_train=arrays["x_train"].astype(np.float64),  # whole numbers: accepted, made uint8
        y_train=arrays["y_train"].astype(np.int64),
    )
    raw = load_raw(DataConfig(path=str(path)))
    assert raw.x_train.dtype == np.uint8 and raw.y_train.dtype == np.uint8
    np.testing.assert_array_equal(raw.x_train, arrays["x_train"])
    np.testing.assert_array_equal(raw.y_test, arrays["y_test"])


def test_npz_missing_key(tmp_path: Path) -> None:
    arrays = small_arrays()
    del arrays["y_test"]
    path = tmp_path / "mnist.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match="the .npz has no y_test") as caught:
        load_raw(DataConfig(path=str(path)))
    assert str(path) in str(caught.value) and "x_train, y_train" in str(caught.value)


def test_npz_truncated(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "mnist.npz")
    contents = path.read_bytes()
    path.write_bytes(contents[: len(contents) // 2])
    with pytest.raises(DataError, match="not a readable .npz archive") as caught:
        load_raw(DataConfig(path=str(path)))
    assert str(path) in str(caught.value)


def test_npz_with_a_corrupt_member(tmp_path: Path) -> None:
    path = tmp_path / "mnist.npz"
    np.savez_compressed(path, **small_arrays())
    contents = bytearray(path.read_bytes())
    middle = len(contents) // 3
    contents[middle : middle + 64] = bytes(64)  # zip directory intact, deflate data broken
    path.write_bytes(bytes(contents))
    with pytest.raises(DataError, match=re.escape(str(path))):
        load_raw(DataConfig(path=str(path)))


@pytest.mark.parametrize("bad_label", [10, -1])
def test_npz_label_out_of_range(tmp_path: Path, bad_label: int) -> None:
    labels = small_arrays()["y_train"].astype(np.int64)
    labels[5] = bad_label
    path = write_npz(tmp_path / "mnist.npz", y_train=labels)
    with pytest.raises(DataError, match=r"labels span .*expected class numbers 0-9") as caught:
        load_raw(DataConfig(path=str(path)))
    assert "y_train" in str(caught.value)


def test_npz_count_mismatch(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "mnist.npz", y_test=small_arrays()["y_test"][:-1])
    with pytest.raises(DataError, match="x_test has 20 images but y_test has 19 labels"):
        load_raw(DataConfig(path=str(path)))


def test_npz_scaled_floats_are_refused(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "mnist.npz", x_test=small_arrays()["x_test"] / 255.0)
    with pytest.raises(DataError, match="already scaled"):
        load_raw(DataConfig(path=str(path)))


def test_npz_wrong_image_shape(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "mnist.npz", x_train=np.zeros((60, 32, 32), np.uint8))
    with pytest.raises(DataError, match=r"images have shape \(60, 32, 32\)"):
        load_raw(DataConfig(path=str(path)))


def test_not_an_npz(tmp_path: Path) -> None:
    path = tmp_path / "mnist.npz"
    path.write_text("hello")
    with pytest.raises(DataError, match="not a readable .npz archive"):
        load_raw(DataConfig(path=str(path)))


# --------------------------------------------------------------------------- resolution


def test_explicit_path_that_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="data.path: .*absent.npz does not exist"):
        load_raw(DataConfig(path=str(tmp_path / "absent.npz")))


def test_relative_path_is_relative_to_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_npz(tmp_path / "mine.npz")
    monkeypatch.chdir(tmp_path)
    raw = load_raw(DataConfig(path="mine.npz"))
    assert raw.source == f"data.path {tmp_path / 'mine.npz'}"


def test_explicit_path_beats_environment_beats_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    explicit = write_npz(tmp_path / "explicit.npz", y_test=np.full(20, 1, np.uint8))
    from_environment = write_npz(tmp_path / "environment.npz", y_test=np.full(20, 2, np.uint8))
    cache = tmp_path / "keras-home" / "datasets" / "mnist.npz"
    cache.parent.mkdir()
    write_npz(cache, y_test=np.full(20, 3, np.uint8))
    monkeypatch.setenv("MNIST_DATA", str(from_environment))

    raw = load_raw(DataConfig(path=str(explicit)))
    assert raw.source.startswith("data.path") and raw.y_test[0] == 1

    raw = load_raw(DataConfig())
    assert raw.source == f"MNIST_DATA={from_environment}" and raw.y_test[0] == 2

    monkeypatch.delenv("MNIST_DATA")
    raw = load_raw(DataConfig())
    assert raw.source == f"keras cache {cache}" and raw.y_test[0] == 3


def test_environment_variable_pointing_at_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MNIST_DATA", str(tmp_path / "typo.npz"))
    with pytest.raises(DataError, match="MNIST_DATA=.*typo.npz: no such file or folder"):
        resolve_mnist_path(None)


def test_nothing_found_and_download_impossible() -> None:
    with pytest.raises(DataError) as caught:
        load_raw(DataConfig())
    message = str(caught.value)
    assert "\n" not in message
    assert "network disabled in tests" in message
    assert "MNIST_DATA=/path/to/mnist.npz" in message
    assert "--set" not in message  # each command adds the options it has
    assert caught.value.__suppress_context__


def test_download_is_used_when_nothing_is_local(monkeypatch: pytest.MonkeyPatch) -> None:
    arrays = small_arrays()
    calls = []

    def fake_download(dataset: str) -> tuple:
        calls.append(dataset)
        return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])

    monkeypatch.setattr(data_module, "fetch_with_keras", fake_download)
    raw = load_raw(DataConfig())
    assert calls == ["mnist"] and raw.source.startswith("keras download")
    np.testing.assert_array_equal(raw.x_train, arrays["x_train"])


def test_fashion_mnist_environment_and_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = write_idx_folder(tmp_path / "keras-home" / "datasets" / "fashion-mnist", small_arrays())
    raw = load_raw(DataConfig(dataset="fashion_mnist"))
    assert raw.source == f"keras cache {cache}"

    other = write_npz(tmp_path / "fashion.npz", y_test=np.full(20, 7, np.uint8))
    monkeypatch.setenv("FASHION_MNIST_DATA", str(other))
    monkeypatch.setenv("MNIST_DATA", str(tmp_path / "not-this-one.npz"))
    raw = load_raw(DataConfig(dataset="fashion_mnist"))
    assert raw.source == f"FASHION_MNIST_DATA={other}" and raw.y_test[0] == 7


def test_incomplete_fashion_cache_falls_through_to_download(tmp_path: Path) -> None:
    cache = write_idx_folder(tmp_path / "keras-home" / "datasets" / "fashion-mnist", small_arrays())
    (cache / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DataError, match="FASHION_MNIST_DATA=/path/to/fashion-mnist"):
        load_raw(DataConfig(dataset="fashion_mnist"))


def test_importing_data_does_not_import_keras() -> None:
    code = (
        "import sys, mnist_cli.data; "
        "heavy = [m for m in ('keras', 'tensorflow', 'jax', 'sklearn') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------------------- OpenML


def fake_openml(rows: int = 70000, dtype: type = np.uint8) -> tuple[np.ndarray, np.ndarray]:
    """OpenML's layout: pixels (rows, 784), string labels; pixel 0 = row % 256. (OpenML's
    pixels are float64; the 70000-row fake uses uint8 to stay light.)"""
    features = np.zeros((rows, 784), dtype=dtype)
    features[:, 0] = np.arange(rows) % 256
    return features, (np.arange(rows) % 10).astype(str).astype(object)


def test_openml_official_split(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data_module, "fetch_openml_mnist", fake_openml)
    raw = load_raw(DataConfig(dataset="openml"))
    assert raw.x_train.shape == (60000, 28, 28) and raw.x_test.shape == (10000, 28, 28)
    assert raw.x_train.dtype == np.uint8 and raw.y_train.dtype == np.uint8
    np.testing.assert_array_equal(raw.y_train[:12], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1])
    assert raw.x_test[0, 0, 0] == 60000 % 256 and raw.y_test[0] == 0
    assert raw.source.startswith("openml")


def test_openml_pooled_split_is_seeded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data_module, "fetch_openml_mnist",
                        lambda: fake_openml(10400, np.float64))

    def test_images(seed: int) -> np.ndarray:
        config = Config.model_validate({"seed": seed, "data": {
            "dataset": "openml", "split": "pooled", "validation_split": 0}})
        data = prepare(config)
        assert len(data.y_train) == 7800 and len(data.y_test) == 2600
        return data.x_test

    first, again, other = test_images(1), test_images(1), test_images(2)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_openml_network_failure() -> None:
    with pytest.raises(DataError, match="openml: cannot fetch mnist_784 .*data.path"):
        load_raw(DataConfig(dataset="openml"))


def test_openml_explicit_path_wins(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "mnist.npz")
    raw = load_raw(DataConfig(dataset="openml", path=str(path)))
    assert raw.source == f"data.path {path}" and len(raw.y_train) == 60


# ------------------------------------------------------------------------------ preprocess


def test_preprocess_scale_and_flatten() -> None:
    images = np.array([[[0, 51], [255, 128]]], dtype=np.uint8).repeat(3, axis=0)
    scaled = preprocess(images, DataConfig(scale=True, flatten=True))
    assert scaled.dtype == np.float32 and scaled.shape == (3, 4)
    np.testing.assert_allclose(scaled[0], [0.0, 0.2, 1.0, 128 / 255], rtol=1e-6)

    unscaled = preprocess(images, DataConfig(scale=False, flatten=False))
    assert unscaled.dtype == np.float32 and unscaled.shape == (3, 2, 2)
    np.testing.assert_array_equal(unscaled[0], [[0, 51], [255, 128]])


@pytest.mark.parametrize("scale", [True, False])
def test_preprocess_binarize(scale: bool) -> None:
    images = np.array([[[0, 127], [128, 255]]], dtype=np.uint8)
    features = preprocess(images, DataConfig(binarize=True, scale=scale, flatten=True))
    assert features.dtype == np.float32
    np.testing.assert_array_equal(features, [[0.0, 0.0, 1.0, 1.0]])  # 128/255 > 0.5 > 127/255


def test_preprocess_binarize_threshold_matches_definition() -> None:
    images = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
    for threshold in (0.0, 0.1, 0.2, 0.5, 0.9, 0.999):
        features = preprocess(images, DataConfig(binarize=True, binarize_threshold=threshold))
        expected = (np.arange(256) / 255 > threshold).astype(np.float32)
        np.testing.assert_array_equal(features[0], expected)
        # Non-uint8 input follows the same rule.
        as_floats = preprocess(images.astype(np.float64), DataConfig(binarize=True,
                               binarize_threshold=threshold))
        np.testing.assert_array_equal(as_floats[0], expected)


@pytest.mark.parametrize("settings", [{}, {"scale": False}, {"binarize": True},
                                      {"binarize": True, "binarize_threshold": 0.3}])
def test_preprocess_gives_each_pixel_its_pixel_table_entry_bit_for_bit(settings) -> None:
    """The fast engines and exported models map pixels through `pixel_table`: the features
    `preprocess` computes for training and inference must be the very same float32s."""
    from mnist_cli.data import pixel_table

    data = DataConfig(**settings)
    features = preprocess(np.arange(256, dtype=np.uint8).reshape(1, 16, 16), data)
    np.testing.assert_array_equal(features.reshape(256), pixel_table(data))


def test_preprocess_of_no_images_keeps_the_feature_count() -> None:
    """An empty validation set (`validation_split: 0`) flattens to (0, 784), not an error."""
    features = preprocess(np.zeros((0, 28, 28), dtype=np.uint8), DataConfig(flatten=True))
    assert features.shape == (0, 784) and features.dtype == np.float32


# --------------------------------------------------------------------------------- prepare


def test_prepare_split_sizes_and_types(tmp_path: Path) -> None:
    prepared = prepare(indexed_config(tmp_path, validation_split=0.1))
    assert isinstance(prepared, PreparedData)
    assert prepared.x_train.shape == (900, 784) and prepared.x_val.shape == (100, 784)
    assert prepared.x_test.shape == (300, 784)
    assert prepared.x_train.dtype == np.float32
    assert prepared.y_train.dtype == np.int64 and prepared.y_val.dtype == np.int64
    assert prepared.num_features == 784
    # Stratified: 100 validation samples from balanced classes are 10 of each.
    np.testing.assert_array_equal(np.bincount(prepared.y_val), [10] * 10)


def test_prepare_train_and_validation_are_disjoint_and_complete(tmp_path: Path) -> None:
    prepared = prepare(indexed_config(tmp_path, validation_split=250))
    train_rows, validation_rows = rows_of(prepared.x_train), rows_of(prepared.x_val)
    assert len(validation_rows) == 250
    assert not set(train_rows) & set(validation_rows)
    assert sorted(np.concatenate([train_rows, validation_rows])) == list(range(1000))
    # Labels travel with their images.
    np.testing.assert_array_equal(prepared.y_train, train_rows % 10)
    np.testing.assert_array_equal(prepared.y_val, validation_rows % 10)


def test_prepare_test_set_untouched(tmp_path: Path) -> None:
    prepared = prepare(indexed_config(tmp_path, validation_split=0.2, subset={"test": 120}))
    np.testing.assert_array_equal(rows_of(prepared.x_test), np.arange(120))
    np.testing.assert_array_equal(prepared.test_index, np.arange(120))
    assert prepared.test_index.dtype == np.int64
    np.testing.assert_array_equal(prepared.y_test, np.arange(120) % 10)


def test_prepare_is_seeded(tmp_path: Path) -> None:
    def validation_rows(seed: int) -> np.ndarray:
        return rows_of(prepare(indexed_config(tmp_path, seed=seed, subset=500)).x_val)

    np.testing.assert_array_equal(validation_rows(3), validation_rows(3))
    assert not np.array_equal(validation_rows(3), validation_rows(4))


def test_prepare_subset(tmp_path: Path) -> None:
    prepared = prepare(
        indexed_config(tmp_path, subset={"train": 200, "test": 50}, validation_split=0.25)
    )
    train_rows, validation_rows = rows_of(prepared.x_train), rows_of(prepared.x_val)
    assert len(train_rows) == 150 and len(validation_rows) == 50 and len(prepared.y_test) == 50
    chosen = np.concatenate([train_rows, validation_rows])
    assert len(set(chosen)) == 200 and chosen.max() < 1000
    assert chosen.max() >= 200  # drawn at random, not the first 200
    np.testing.assert_array_equal(np.bincount(chosen % 10), [20] * 10)  # stratified


def test_prepare_without_validation(tmp_path: Path) -> None:
    prepared = prepare(indexed_config(tmp_path, validation_split=0, flatten=False))
    assert prepared.x_train.shape == (1000, 28, 28)
    assert prepared.x_val.shape == (0, 28, 28) and prepared.y_val.shape == (0,)
    assert prepared.num_features == 784
    np.testing.assert_array_equal(rows_of(prepared.x_train.reshape(1000, -1)), np.arange(1000))


def test_prepare_preprocesses_every_part(tmp_path: Path) -> None:
    prepared = prepare(indexed_config(tmp_path, scale=True, validation_split=0.5))
    for part in (prepared.x_train, prepared.x_val, prepared.x_test):
        assert part.dtype == np.float32 and part.shape[1] == 784
        assert 0.0 <= part.min() and part.max() <= 1.0
    # Rows 255, 511, ... carry pixel 1 = 255, which scales to exactly 1.
    assert max(prepared.x_train.max(), prepared.x_val.max()) == 1.0


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"subset": {"train": 1001}}, "data.subset.train"),
        ({"subset": {"test": 301}}, "data.subset.test"),
        ({"validation_split": 1000}, "data.validation_split"),
        ({"subset": 10, "validation_split": 10}, "data.validation_split"),
    ],
)
def test_prepare_impossible_requests(tmp_path: Path, data: dict, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        prepare(indexed_config(tmp_path, **data))
    assert str(caught.value).startswith(f"{key}:")


def test_prepare_tiny_subset_falls_back_to_unstratified(tmp_path: Path) -> None:
    prepared = prepare(indexed_config(tmp_path, subset=5, validation_split=2))
    assert len(prepared.y_train) == 3 and len(prepared.y_val) == 2


# ---------------------------------------------------------------------- shared fixtures


def test_synthetic_mnist_is_balanced_and_learnable() -> None:
    arrays = make_synthetic_mnist(1000, 500, seed=0)
    assert arrays["x_train"].shape == (1000, 28, 28) and arrays["x_train"].dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(arrays["y_train"]), [100] * 10)
    # Nearest class mean, a far weaker learner than any Dense net, is already far above
    # chance (10%): the classes are separable.
    train = arrays["x_train"].reshape(1000, -1) / 255.0
    test = arrays["x_test"].reshape(500, -1) / 255.0
    means = np.stack([train[arrays["y_train"] == digit].mean(0) for digit in range(10)])
    distances = (test**2).sum(1)[:, None] - 2 * test @ means.T + (means**2).sum(1)[None]
    accuracy = (distances.argmin(1) == arrays["y_test"]).mean()
    assert accuracy > 0.6
    same_seed = make_synthetic_mnist(10, 10, seed=0)["x_train"]
    np.testing.assert_array_equal(same_seed, make_synthetic_mnist(10, 10, seed=0)["x_train"])


def test_small_config_dict_prepares(small_config_dict: dict) -> None:
    prepared = prepare(build_config(small_config_dict))
    assert prepared.x_train.shape == (1800, 784) and prepared.x_val.shape == (200, 784)
    assert prepared.x_test.shape == (500, 784)
