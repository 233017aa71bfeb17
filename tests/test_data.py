"""Tests for mnist_experiments.data: real files in tmp_path, no mocks, no network."""

from __future__ import annotations

import ast
import gzip
import os
import re
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from omegaconf import OmegaConf

from mnist_experiments import data
from mnist_experiments.config.schema import MIN_LIMIT as CONFIG_MIN_LIMIT
from mnist_experiments.data import (
    Dataset,
    RawData,
    fingerprint,
    load_dataset,
    load_digits_28,
    load_idx,
    load_idx_dir,
    load_npz,
    load_raw,
    save_idx,
    split,
)
from mnist_experiments.errors import DataError
from mnist_experiments.config.schema import DataConfig, Validation

REPO = Path(__file__).resolve().parents[1]
IDX_NAMES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


# ---------------------------------------------------------------------- helpers
def balanced_labels(n: int, rng: np.random.Generator) -> np.ndarray:
    """n labels, every class 0-9 (almost) equally often, in random order."""
    return rng.permutation(np.arange(n) % 10).astype(np.int64)


def random_images(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)


def make_raw(n_train: int = 600, n_test: int = 200, seed: int = 0) -> RawData:
    """Synthetic data; image i of each set carries its index in pixels (0, 0) and (0, 1)."""
    rng = np.random.default_rng(seed)
    x_train, x_test = random_images(n_train, rng), random_images(n_test, rng)
    for x in (x_train, x_test):
        x[:, 0, 0] = np.arange(len(x)) // 256
        x[:, 0, 1] = np.arange(len(x)) % 256
    return RawData(
        x_train, balanced_labels(n_train, rng),
        x_test, balanced_labels(n_test, rng),
        source="test:synthetic",
    )


def ids(x: np.ndarray) -> np.ndarray:
    """The index that make_raw wrote into each image."""
    return x[:, 0, 0].astype(int) * 256 + x[:, 0, 1]


def cfg(**kw):
    """A DataConfig as Hydra would compose it (Enum validation)."""
    kw.setdefault("name", "mnist")
    return OmegaConf.structured(DataConfig(**kw))


def write_idx_dir(directory: Path, arrays: dict, suffix: str = ".gz", dotted: bool = False) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for key, name in IDX_NAMES.items():
        if dotted:
            name = name.replace("-idx", ".idx")
        save_idx(directory / (name + suffix), arrays[key])
    return directory


@pytest.fixture
def small_arrays():
    rng = np.random.default_rng(1)
    return {
        "x_train": random_images(60, rng),
        "y_train": balanced_labels(60, rng).astype(np.uint8),
        "x_test": random_images(20, rng),
        "y_test": balanced_labels(20, rng).astype(np.uint8),
    }


@pytest.fixture
def idx_dir(tmp_path, small_arrays):
    """A directory of the four gzipped IDX files: 60 train and 20 test images."""
    return write_idx_dir(tmp_path / "idx", small_arrays)


@pytest.fixture
def npz_file(tmp_path, small_arrays):
    path = tmp_path / "data.npz"
    np.savez(path, **small_arrays)
    return path


# ------------------------------------------------------------------------- IDX
@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize(
    "array",
    [
        np.random.default_rng(0).integers(0, 256, (7, 28, 28), dtype=np.uint8),
        np.arange(10, dtype=np.uint8),
        np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4),
    ],
    ids=["images", "labels", "float32"],
)
def test_idx_round_trip(tmp_path, suffix, array):
    path = tmp_path / ("file" + suffix)
    save_idx(path, array)
    loaded = load_idx(path)
    assert loaded.dtype == array.dtype and loaded.shape == array.shape
    np.testing.assert_array_equal(loaded, array)
    assert loaded.flags.writeable
    raw = gzip.decompress(path.read_bytes()) if suffix else path.read_bytes()
    assert raw[:2] == b"\0\0" and raw[3] == array.ndim


def test_idx_header_is_the_mnist_one(tmp_path):
    save_idx(tmp_path / "images", np.zeros((2, 28, 28), np.uint8))
    save_idx(tmp_path / "labels", np.zeros(2, np.uint8))
    header = bytes.fromhex("00000803 00000002 0000001c 0000001c")  # magic, n, 28, 28
    assert (tmp_path / "images").read_bytes()[:16] == header
    assert (tmp_path / "labels").read_bytes()[:8] == bytes.fromhex("00000801 00000002")


def test_save_idx_gz_is_reproducible(tmp_path):
    array = np.arange(100, dtype=np.uint8)
    save_idx(tmp_path / "a.gz", array)
    save_idx(tmp_path / "b.gz", array)
    assert (tmp_path / "a.gz").read_bytes() == (tmp_path / "b.gz").read_bytes()


def test_save_idx_rejects_int64(tmp_path):
    with pytest.raises(ValueError, match="astype"):
        save_idx(tmp_path / "labels", np.arange(3, dtype=np.int64))


@pytest.mark.parametrize("suffix,dotted", [(".gz", False), ("", False), ("", True), (".gz", True)])
def test_load_idx_dir(tmp_path, small_arrays, suffix, dotted):
    directory = write_idx_dir(tmp_path / "idx", small_arrays, suffix=suffix, dotted=dotted)
    raw = load_idx_dir(directory)
    assert raw.source == f"idx:{directory.absolute()}"
    for key in IDX_NAMES:
        np.testing.assert_array_equal(getattr(raw, key), small_arrays[key])
    assert raw.x_train.dtype == np.uint8 and raw.x_train.shape == (60, 28, 28)
    assert raw.x_test.shape == (20, 28, 28)
    assert raw.y_train.dtype == np.int64 and raw.y_test.dtype == np.int64


def test_idx_dir_missing_file(idx_dir):
    (idx_dir / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"lacks t10k-labels-idx1-ubyte\[\.gz\]") as info:
        load_idx_dir(idx_dir)
    assert str(idx_dir) in str(info.value)
    assert "train-images-idx3-ubyte" in str(info.value)  # lists the expected layout


def test_idx_dir_not_a_directory(tmp_path):
    with pytest.raises(DataError, match="nowhere.*does not exist"):
        load_idx_dir(tmp_path / "nowhere")


def test_idx_wrong_magic_labels_in_place_of_images(idx_dir, small_arrays):
    save_idx(idx_dir / "train-images-idx3-ubyte.gz", small_arrays["y_train"])
    found, expected = r"0x00000801 \(2049\)", r"0x00000803 \(2051\)"
    with pytest.raises(
        DataError, match=rf"train-images-idx3-ubyte\.gz has magic number {found}.*{expected}"
    ):
        load_idx_dir(idx_dir)


def test_idx_not_an_idx_file(tmp_path):
    path = tmp_path / "page.html"
    path.write_text("<html>Not Found</html>")
    with pytest.raises(DataError, match=r"page\.html is not an IDX file: its magic .* 0x3C68746D"):
        load_idx(path)
    with pytest.raises(DataError, match=r"page\.html has magic number 0x3C68746D.*0x00000801"):
        load_idx(path, expected_magic=data.IDX_LABELS_MAGIC)


def test_idx_truncated(idx_dir, small_arrays):
    (idx_dir / "train-images-idx3-ubyte.gz").unlink()
    path = idx_dir / "train-images-idx3-ubyte"
    save_idx(path, small_arrays["x_train"])
    path.write_bytes(path.read_bytes()[:-100])
    message = r"train-images-idx3-ubyte is truncated: .*shape \(60, 28, 28\).*47040 bytes.*46940"
    with pytest.raises(DataError, match=message):
        load_idx_dir(idx_dir)


def test_idx_truncated_header(tmp_path):
    path = tmp_path / "labels"
    path.write_bytes(bytes.fromhex("00000801 0000"))
    with pytest.raises(DataError, match=r"labels is truncated.*inside the header"):
        load_idx(path)
    path.write_bytes(b"")
    with pytest.raises(DataError, match=r"labels is too short"):
        load_idx(path)


def test_idx_count_mismatch(idx_dir, small_arrays):
    save_idx(idx_dir / "train-labels-idx1-ubyte.gz", small_arrays["y_train"][:59])
    message = r"train-images-idx3-ubyte\.gz holds 60 images but .*labels-idx1-ubyte\.gz holds 59"
    with pytest.raises(DataError, match=message):
        load_idx_dir(idx_dir)


def test_idx_labels_out_of_range(idx_dir, small_arrays):
    labels = small_arrays["y_test"].copy()
    labels[3] = 12
    save_idx(idx_dir / "t10k-labels-idx1-ubyte.gz", labels)
    message = r"t10k-labels-idx1-ubyte\.gz contains labels outside 0-9: 12 \(first at index 3\)"
    with pytest.raises(DataError, match=message):
        load_idx_dir(idx_dir)


def test_idx_images_not_28x28(idx_dir):
    save_idx(idx_dir / "t10k-images-idx3-ubyte.gz", np.zeros((20, 32, 32), np.uint8))
    message = r"t10k-images-idx3-ubyte\.gz has shape \(20, 32, 32\), i\.e\. 32x32 images"
    with pytest.raises(DataError, match=message):
        load_idx_dir(idx_dir)


@pytest.mark.parametrize("damage", ["truncate", "flip", "not_gzip"])
def test_idx_corrupt_gzip(idx_dir, damage):
    path = idx_dir / "train-images-idx3-ubyte.gz"
    content = bytearray(path.read_bytes())
    if damage == "truncate":
        content = content[: len(content) // 2]
    elif damage == "flip":
        content[len(content) // 2] ^= 0xFF
    else:
        content = bytearray(b"definitely not gzip data")
    path.write_bytes(bytes(content))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz is not a valid gzip file"):
        load_idx_dir(idx_dir)


def test_idx_gzip_bomb_fails_fast_in_little_memory(tmp_path):
    """4 MB gzipped IDX files that decompress to 4 GiB: a clear DataError, in under 1 GiB.

    "huge" declares 10**9 images (refused from its header), "long" declares 60000
    images (47 MB) then goes on (reading stops past 47 MB), "short" declares 235 MB
    but holds 1 MB (memory follows what is there, not what the header declares).
    """
    zeros = gzip.compress(bytes(64 << 20), compresslevel=9, mtime=0)  # 64 MiB in ~65 kB
    paths = []
    for name, n, members in (("huge", 10**9, 64), ("long", 60_000, 64), ("short", 300_000, 0)):
        header = struct.pack(">IIII", data.IDX_IMAGES_MAGIC, n, 28, 28)
        body = zeros * members if members else gzip.compress(bytes(1 << 20), mtime=0)
        path = tmp_path / f"{name}-images-idx3-ubyte.gz"
        path.write_bytes(gzip.compress(header, mtime=0) + body)  # gzip members concatenate
        assert path.stat().st_size < 5_000_000
        paths.append(str(path))
    result = run_python(
        """
        import resource, sys, time
        from mnist_experiments.data import load_idx
        from mnist_experiments.errors import DataError
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))  # 1 GiB of address space
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for path in sys.argv[1:]:
            start = time.monotonic()
            try:
                load_idx(path)
            except DataError as exc:
                print("DATAERROR", round(time.monotonic() - start, 2), exc)
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        print("GROWN_MB", grown // 1024)
        """,
        env=dict(os.environ), timeout=60, args=paths,
    )
    lines = result.stdout.splitlines()
    errors = [line.split(" ", 2) for line in lines if line.startswith("DATAERROR ")]
    assert len(errors) == 3, result.stdout + result.stderr
    (_, t_huge, huge), (_, t_long, long_), (_, t_short, short) = errors
    assert "huge-images" in huge and "declares shape (1000000000, 28, 28)" in huge
    assert "256 MiB" in huge and "download it again" in huge
    assert "long-images" in long_ and "longer than declared" in long_
    assert "shape (60000, 28, 28) (47040000 bytes of data) but it holds more than that" in long_
    assert "short-images" in short and "is truncated" in short and "1048576 bytes" in short
    assert max(float(t_huge), float(t_long), float(t_short)) < 5
    grown = int(next(line for line in lines if line.startswith("GROWN_MB ")).split()[1])
    assert grown < 200, grown  # 47 MB for "long" plus a few MiB of buffers


# ------------------------------------------------------------------------- npz
def test_npz_round_trip(npz_file, small_arrays):
    raw = load_npz(npz_file)
    assert raw.source == f"npz:{npz_file.absolute()}"
    for key in data.NPZ_KEYS:
        np.testing.assert_array_equal(getattr(raw, key), small_arrays[key])
    assert raw.x_train.dtype == np.uint8 and raw.y_train.dtype == np.int64


@pytest.mark.parametrize("form", ["float01", "float255", "channel", "int64"])
def test_npz_image_forms_become_uint8(tmp_path, small_arrays, form):
    arrays = dict(small_arrays)
    for key in ("x_train", "x_test"):
        x = small_arrays[key]
        arrays[key] = {
            "float01": (x / 255.0).astype(np.float32),
            "float255": x.astype(np.float64),
            "channel": x[..., None],
            "int64": x.astype(np.int64),
        }[form]
    path = tmp_path / "forms.npz"
    np.savez_compressed(path, **arrays)
    raw = load_npz(path)
    assert raw.x_train.dtype == np.uint8 and raw.x_train.shape == (60, 28, 28)
    np.testing.assert_array_equal(raw.x_train, small_arrays["x_train"])
    np.testing.assert_array_equal(raw.x_test, small_arrays["x_test"])


def save_npz_with(path, small_arrays, **changes):
    arrays = {**small_arrays, **changes}
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def test_npz_missing_key(tmp_path, small_arrays):
    path = save_npz_with(tmp_path / "d.npz", small_arrays, y_test=None)
    message = r"d\.npz lacks the key\(s\) y_test \(it holds: x_train, y_train, x_test\)"
    with pytest.raises(DataError, match=message):
        load_npz(path)


def test_npz_wrong_shape(tmp_path, small_arrays):
    path = save_npz_with(tmp_path / "d.npz", small_arrays, x_train=np.zeros((60, 784), np.uint8))
    with pytest.raises(DataError, match=r"x_train in .*d\.npz has shape \(60, 784\)"):
        load_npz(path)


def test_npz_bad_labels(tmp_path, small_arrays):
    labels = small_arrays["y_train"].astype(np.int64)
    labels[[5, 7]] = [-1, 10]
    path = save_npz_with(tmp_path / "d.npz", small_arrays, y_train=labels)
    message = r"y_train in .*d\.npz contains labels outside 0-9: -1, 10 \(first at index 5\)"
    with pytest.raises(DataError, match=message):
        load_npz(path)


def test_npz_count_mismatch(tmp_path, small_arrays):
    path = save_npz_with(tmp_path / "d.npz", small_arrays, y_test=small_arrays["y_test"][:-1])
    message = r"x_test in .*holds 20 images but y_test in .*holds 19 labels"
    with pytest.raises(DataError, match=message):
        load_npz(path)


def test_npz_standardized_floats_rejected(tmp_path, small_arrays):
    x = (small_arrays["x_test"] - 128.0) / 64.0
    path = save_npz_with(tmp_path / "d.npz", small_arrays, x_test=x)
    with pytest.raises(DataError, match=r"x_test in .*pixel values from -2\.0.*outside 0-255"):
        load_npz(path)


def test_npz_text_file(tmp_path):
    path = tmp_path / "notes.npz"
    path.write_text("this is not an archive\n")
    with pytest.raises(DataError, match=r"notes\.npz is not a valid \.npz archive"):
        load_npz(path)


def test_npz_truncated_zip(npz_file):
    npz_file.write_bytes(npz_file.read_bytes()[:200])
    with pytest.raises(DataError, match=r"data\.npz is not a valid \.npz archive"):
        load_npz(npz_file)


def test_npz_never_unpickles(tmp_path, small_arrays):
    objects = np.array([{"label": 1}] * 60, dtype=object)
    path = save_npz_with(tmp_path / "d.npz", small_arrays, y_train=objects)
    with pytest.raises(DataError, match=r"d\.npz.*pickled objects"):
        load_npz(path)


def test_npy_instead_of_npz(tmp_path):
    path = tmp_path / "single.npz"
    with open(path, "wb") as f:
        np.save(f, np.zeros(3))
    with pytest.raises(DataError, match=r"single\.npz holds a single \.npy array"):
        load_npz(path)


# ---------------------------------------------------------------------- digits
def test_load_digits_28():
    raw = load_digits_28()
    assert raw.source == "sklearn:load_digits"
    assert raw.x_train.shape == (1347, 28, 28) and raw.x_test.shape == (450, 28, 28)
    assert raw.x_train.dtype == np.uint8 and raw.y_train.dtype == np.int64
    assert raw.x_train.max() == 255 and raw.x_train.min() == 0
    # the digit sits in the central 20x20 box, like MNIST
    for x in (raw.x_train, raw.x_test):
        assert x[:, :4].max() == 0 and x[:, 24:].max() == 0
        assert x[:, :, :4].max() == 0 and x[:, :, 24:].max() == 0
    # stratified: every class is split 75/25 to within one image
    for c in range(10):
        n_train, n_test = (raw.y_train == c).sum(), (raw.y_test == c).sum()
        assert abs(n_test - 0.25 * (n_train + n_test)) <= 1
    # fixed: the same split every time, whatever the seed
    again = load_digits_28()
    np.testing.assert_array_equal(again.x_test, raw.x_test)
    np.testing.assert_array_equal(again.y_train, raw.y_train)
    # resized once a process, but each call's arrays are its own to change
    raw.x_test[0] = 7
    assert load_digits_28().x_test[0].max() == again.x_test[0].max() > 7
    a = load_dataset(cfg(name="digits", validation="test_halves"), seed=1)
    b = load_dataset(cfg(name="digits", validation="test_halves"), seed=2)
    assert a.fingerprint == b.fingerprint


# ----------------------------------------------------------------------- split
@pytest.mark.parametrize("n_test", [200, 21])
def test_split_test_halves(n_test):
    raw = make_raw(n_test=n_test)
    ds = split(raw, cfg(validation=Validation.test_halves), seed=0)
    half = n_test // 2
    assert len(ds.x_val) == half and len(ds.x_test) == n_test - half
    np.testing.assert_array_equal(ds.x_val, raw.x_test[:half])
    np.testing.assert_array_equal(ds.y_val, raw.y_test[:half])
    np.testing.assert_array_equal(ds.x_test, raw.x_test[half:])
    np.testing.assert_array_equal(ds.x_train, raw.x_train)
    assert ds.shapes() == {
        "x_train": [600, 28, 28], "y_train": [600],
        "x_val": [half, 28, 28], "y_val": [half],
        "x_test": [n_test - half, 28, 28], "y_test": [n_test - half],
    }
    assert ds.class_names == [str(i) for i in range(10)] and ds.source == "test:synthetic"


def test_split_holdout():
    raw = make_raw(n_train=1000)
    ds = split(raw, cfg(validation="holdout", val_fraction=0.2), seed=3)
    assert len(ds.x_val) == 200 and len(ds.x_train) == 800
    train_ids, val_ids = ids(ds.x_train), ids(ds.x_val)
    assert not set(train_ids) & set(val_ids)
    assert sorted(np.concatenate([train_ids, val_ids])) == list(range(1000))
    np.testing.assert_array_equal(ds.y_train, raw.y_train[train_ids])  # labels follow images
    np.testing.assert_array_equal(ds.y_val, raw.y_train[val_ids])
    np.testing.assert_array_equal(ds.x_test, raw.x_test)  # the test set is kept whole
    overall = np.bincount(raw.y_train, minlength=10) / len(raw.y_train)
    in_val = np.bincount(ds.y_val, minlength=10) / len(ds.y_val)
    np.testing.assert_allclose(in_val, overall, atol=0.01)


def test_split_holdout_seeded():
    raw = make_raw()
    a, b = (split(raw, cfg(validation="holdout"), seed=5) for _ in range(2))
    c = split(raw, cfg(validation="holdout"), seed=6)
    assert a.fingerprint == b.fingerprint
    np.testing.assert_array_equal(a.x_val, b.x_val)
    assert a.fingerprint != c.fingerprint


@pytest.mark.parametrize("validation", ["test_halves", "holdout"])
def test_split_limit(validation):
    raw = make_raw(n_train=600, n_test=200)
    conf = cfg(validation=validation, limit=100)
    ds = split(raw, conf, seed=7)
    if validation == "test_halves":
        assert len(ds.x_train) == 100 and len(ds.x_val) == 50 and len(ds.x_test) == 50
        kept_train, kept_test = ds.y_train, np.concatenate([ds.y_val, ds.y_test])
    else:
        assert len(ds.x_train) + len(ds.x_val) == 100 and len(ds.x_val) == 10
        assert len(ds.x_test) == 100
        kept_train, kept_test = np.concatenate([ds.y_train, ds.y_val]), ds.y_test
    assert set(kept_train.tolist()) == set(range(10))
    assert set(kept_test.tolist()) == set(range(10))
    # stratified: 10 of each class out of the balanced 600 and 200
    assert np.bincount(kept_train).tolist() == [10] * 10
    assert np.bincount(kept_test).tolist() == [10] * 10
    # kept images stay in their original order
    assert np.all(np.diff(ids(ds.x_test)) > 0)
    again = split(raw, conf, seed=7)
    assert again.fingerprint == ds.fingerprint
    np.testing.assert_array_equal(again.x_train, ds.x_train)
    assert split(raw, conf, seed=8).fingerprint != ds.fingerprint


def test_split_limit_larger_than_data_keeps_everything():
    raw = make_raw(n_train=60, n_test=20)
    ds = split(raw, cfg(validation="test_halves", limit=1000), seed=0)
    np.testing.assert_array_equal(ds.x_train, raw.x_train)
    assert len(ds.x_val) + len(ds.x_test) == 20


def test_split_limit_falls_back_when_stratifying_is_impossible():
    raw = make_raw(n_train=60, n_test=20)
    raw.y_train[:] = 0
    raw.y_train[0] = 1  # class 1 has a single image: no stratified subsample
    conf = cfg(validation="test_halves", limit=30)
    ds = split(raw, conf, seed=0)
    assert len(ds.x_train) == 30
    assert np.all(np.diff(ids(ds.x_train)) > 0)
    assert split(raw, conf, seed=0).fingerprint == ds.fingerprint


def test_split_config_errors():
    raw = make_raw()
    with pytest.raises(DataError, match="data.validation='kfold' is unknown"):
        split(raw, SimpleNamespace(validation="kfold", limit=None), seed=0)
    with pytest.raises(DataError, match="data.val_fraction=1.5"):
        split(raw, SimpleNamespace(validation="holdout", val_fraction=1.5, limit=None), seed=0)
    assert data.MIN_LIMIT == 20  # two images per class, the bound the config checks too
    assert CONFIG_MIN_LIMIT == data.MIN_LIMIT
    too_few = SimpleNamespace(validation="test_halves", limit=data.MIN_LIMIT - 1)
    with pytest.raises(DataError, match=r"data\.limit=19 is invalid: it must be at least 20"):
        split(raw, too_few, seed=0)
    ds = split(raw, SimpleNamespace(validation="test_halves", limit=data.MIN_LIMIT), seed=0)
    assert len(ds.y_train) == 20 and np.bincount(ds.y_train).tolist() == [2] * 10


def test_split_accepts_plain_objects():
    conf = SimpleNamespace(validation="test_halves", val_fraction=0.1, limit=None,
                           class_names=list("abcdefghij"))
    ds = split(make_raw(), conf, seed=0)
    assert ds.class_names == list("abcdefghij")


# ----------------------------------------------------------------- fingerprint
def test_fingerprint():
    raw = make_raw()
    ds = split(raw, cfg(), seed=0)
    assert isinstance(ds, Dataset) and len(ds.fingerprint) == 64
    arrays = (ds.x_train, ds.y_train, ds.x_val, ds.y_val, ds.x_test, ds.y_test)
    assert ds.fingerprint == fingerprint(*arrays)
    x = raw.x_train.copy()
    base = fingerprint(x)
    x[17, 14, 14] ^= 1  # one pixel
    assert fingerprint(x) != base
    x[17, 14, 14] ^= 1
    assert fingerprint(x) == base
    assert fingerprint(x.reshape(len(x), -1)) != base  # shape counts
    assert fingerprint(x.view(np.int8)) != base  # dtype counts
    assert fingerprint(x[:, ::-1][:, ::-1]) == base  # layout does not
    assert fingerprint(x, raw.y_train) != fingerprint(raw.y_train, x)  # order counts


# -------------------------------------------------------------------- load_raw
def test_load_raw_dispatch(idx_dir, npz_file):
    assert load_raw(cfg(path=str(idx_dir))).source == f"idx:{idx_dir.absolute()}"
    raw = load_raw(cfg(name="fashion_mnist", path=str(npz_file)))
    assert raw.source == f"npz:{npz_file.absolute()}"
    assert load_raw(cfg(name="my_letters", path=str(npz_file))).x_train.shape == (60, 28, 28)
    assert load_raw(SimpleNamespace(name="digits", path=None)).source == "sklearn:load_digits"
    ds = load_dataset(cfg(path=str(npz_file), validation="test_halves", limit=30), seed=0)
    assert ds.shapes()["x_train"] == [30, 28, 28] and ds.shapes()["x_val"] == [10, 28, 28]


def test_load_raw_errors(tmp_path, npz_file):
    missing = tmp_path / "no_such_dir"
    with pytest.raises(DataError, match=re.escape(f"data.path='{missing}' does not exist")):
        load_raw(cfg(path=str(missing)))
    with pytest.raises(DataError, match="data=digits was given together with data.path.*Drop"):
        load_raw(cfg(name="digits", path=str(npz_file)))
    message = "data.name='cifar10' is not a built-in.*data=mnist, data=fashion_mnist or data=digits"
    with pytest.raises(DataError, match=message):
        load_raw(cfg(name="cifar10"))
    text = tmp_path / "train-images-idx3-ubyte"
    text.write_bytes(b"")
    message = r"is a file but not an \.npz archive.*" + re.escape(f"data.path='{tmp_path}'")
    with pytest.raises(DataError, match=message):
        load_raw(cfg(path=str(text)))


# ----------------------------------------------------- import cost and offline
def run_python(code: str, env: dict, timeout: float = 90, args=()) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args], cwd=REPO, env=env,
        capture_output=True, text=True, timeout=timeout,
    )


def test_import_is_light():
    result = run_python(
        """
        import sys
        import mnist_experiments.data, mnist_experiments.data.images
        heavy = [m for m in ("keras", "tensorflow", "mlflow", "sklearn", "PIL") if m in sys.modules]
        print("HEAVY", heavy)
        """,
        env=dict(os.environ),
    )
    assert "HEAVY []" in result.stdout, result.stdout + result.stderr


def test_data_modules_import_no_framework_and_form_no_cycle():
    """NumPy (sklearn, Pillow, Hydra) only; Keras only inside the Keras loader; no cycle."""
    package = REPO / "mnist_experiments" / "data"
    graph = {}
    for path in sorted(package.glob("*.py")):
        names = []
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.append(node.module)
        roots = {name.split(".")[0] for name in names}
        assert not roots & {"tensorflow", "mlflow"}, path.name
        if "keras" in roots:
            assert path.name == "loaders.py", path.name
        graph[path.stem] = {
            name.split(".")[2] for name in names if name.startswith("mnist_experiments.data.")
        }
    assert {"arrays", "idx", "loaders", "splits", "images"} <= set(graph)
    done: set = set()
    while len(done) < len(graph):  # peel off modules whose data imports are all done
        ready = {m for m, deps in graph.items() if m not in done and deps <= done}
        assert ready, f"import cycle among {sorted(set(graph) - done)}"
        done |= ready


@pytest.mark.slow  # imports Keras and waits for the download to fail
def test_keras_download_offline_is_a_clear_data_error(tmp_path):
    """No cache (KERAS_HOME=tmp_path) and a proxy on a closed local port: no network at all."""
    closed = "http://127.0.0.1:9"
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("no_proxy", "all_proxy")}
    env.update(KERAS_HOME=str(tmp_path), HTTPS_PROXY=closed, HTTP_PROXY=closed,
               https_proxy=closed, http_proxy=closed, TF_CPP_MIN_LOG_LEVEL="3")
    start = time.monotonic()
    result = run_python(
        """
        import socket, time
        from mnist_experiments.data import load_raw
        from mnist_experiments.errors import DataError
        for name in ("mnist", "fashion_mnist"):
            try:
                load_raw(type("Cfg", (), {"name": name, "path": None})())
            except DataError as exc:
                print("DATAERROR", name, str(exc).replace("\\n", " "))
            else:
                print("LOADED", name)
        print("TIMEOUT", socket.getdefaulttimeout())
        """,
        env=env,
    )
    elapsed = time.monotonic() - start
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    for name in ("mnist", "fashion_mnist"):
        line = next(l for l in out.splitlines() if l.startswith(f"DATAERROR {name} "))
        assert f"data={name}" in line
        assert "data.path=" in line and "data=digits" in line
        assert "dataset-fashion-mnist" in line and "/usr/share/datasets/fashion-mnist" in line
        # the proxy was honoured: the failure is the refused local connection, not DNS
        assert "refused" in line.lower(), line
    assert "TIMEOUT None" in out  # the socket timeout was restored
    assert not [p for p in (tmp_path / "datasets").rglob("*") if p.is_file()]  # no partial files
    assert elapsed < 30
