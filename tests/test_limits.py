"""Memory limits (issue 14): work that would exhaust memory is refused, with the limit
named, before the memory is used: a model's parameter count and a batch's layer outputs
(computed from the architecture, checked against Keras), a picture's pixels (from its
header), an IDX file's declared size and counts (from its headers).

The memory of a real command in a fresh process is measured (its own peak RSS).
"""

from __future__ import annotations

import gzip
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from conftest import compose_cfg
from mnist_experiments.config.validation import validate
from test_inputs import CONF_MODELS, MAIN, refused, run_measured


# ----------------------------------------------------------- parameter count
@pytest.mark.slow
@pytest.mark.parametrize("model, overrides", [
    *[(m, []) for m in CONF_MODELS],
    ("seed_cnn", ["model.head=global_avg", "model.dense_layers.0.batch_norm=true"]),
    ("lenet5", ["model.conv_blocks.1.padding=same", "model.conv_blocks.0.pool_size=null"]),
])
def test_the_parameter_count_is_keras_count(model, overrides):
    from mnist_experiments.config.capacity import count_parameters
    from mnist_experiments.models.builder import build_model

    cfg = compose_cfg(f"model={model}", *overrides)
    assert count_parameters(cfg.model) == build_model(cfg.model).count_params()


def test_a_model_over_the_parameter_limit_is_refused():
    from mnist_experiments.config.capacity import MAX_PARAMETERS, count_parameters

    assert count_parameters(compose_cfg("model=seed_cnn").model) == 93_322  # the notebook's
    text = refused("model.dense_layers.0.units=3000000")
    assert "model 'seed_cnn' has 1,761,055,754 parameters" in text, text
    assert f"the limit of {MAX_PARAMETERS:,}" in text
    validate(compose_cfg("model.dense_layers.0.units=1000"))  # 1.6 M parameters: fine


def test_a_batch_whose_layer_outputs_would_not_fit_is_refused():
    """Few parameters (900,000) but 98 million layer outputs per image."""
    from mnist_experiments.config.capacity import MAX_BATCH_ACTIVATIONS, count_activations

    assert count_activations(compose_cfg("model=seed_tiny").model) == 26 * 26 * 2 + 13 * 13 * 2
    text = refused("model.conv_blocks.0.filters=100000", "model.conv_blocks.0.padding=same")
    assert "98,012,608 values per image" in text and "train.batch_size=32" in text, text
    assert f"the limit of {MAX_BATCH_ACTIVATIONS:,}" in text
    validate(compose_cfg("model=bn_cnn", "train.batch_size=4096"))  # 1.0 billion: fine
    assert "train.batch_size=8192" in refused("model=bn_cnn", "train.batch_size=8192")


def test_the_cli_refuses_a_huge_model_in_little_memory(tmp_path):
    result, peak = run_measured(MAIN, "mnist_experiments.commands.train:main",
                                "data=digits", "model.dense_layers.0.units=3000000", cwd=tmp_path)
    assert "EXIT 1" in result.stdout, result.stdout + result.stderr[-2000:]
    assert "1,761,055,754 parameters" in result.stderr
    assert "Traceback" not in result.stderr
    assert peak < 400, peak  # was past 8 GiB; now Hydra and the config only
    assert not list(tmp_path.glob("*mlflow.db*"))


# ------------------------------------------------------------------ memory bombs
def png_bomb(path: Path, width: int, height: int) -> None:
    """A real grayscale PNG of black pixels, compressed row by row (never in memory)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    compressor, row, parts = zlib.compressobj(9), bytes(1 + width), []
    for _ in range(height):
        parts.append(compressor.compress(row))
    parts.append(compressor.flush())
    path.write_bytes(b"\x89PNG\r\n\x1a\n"
                     + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b""))


def test_a_huge_picture_is_refused_before_it_is_decoded(tmp_path):
    """13000x13000 pixels in 164 kB: it took 5.3 GiB and 26 s; now refused from its header."""
    from PIL import Image

    bomb = tmp_path / "bomb.png"
    png_bomb(bomb, 13000, 13000)
    assert bomb.stat().st_size < 300_000
    with pytest.warns(Image.DecompressionBombWarning), Image.open(bomb) as img:
        assert img.size == (13000, 13000)  # a real PNG, with the size it claims
    result, peak = run_measured(MAIN, "mnist_experiments.commands.predict:main",
                                "0123456789abcdef0123456789abcdef", str(bomb), cwd=tmp_path)
    assert "EXIT 1" in result.stdout, result.stdout + result.stderr
    assert "13000x13000 pixels (169.0 megapixels), more than the limit of 16.8" in result.stderr
    assert "MAX_PIXELS" in result.stderr and "Traceback" not in result.stderr
    assert peak < 200, peak


def test_predict_checks_the_files_before_loading_the_model(tmp_path):
    """A missing file is reported at once: the model (here a run id no store holds) is
    not even looked up, let alone loaded for ~10 s."""
    result, peak = run_measured(MAIN + "print('HEAVY', sorted(m for m in sys.modules if "
                                "m.split('.')[0] in ('tensorflow', 'keras', 'mlflow')))\n",
                                "mnist_experiments.commands.predict:main",
                                "0123456789abcdef0123456789abcdef",
                                str(tmp_path / "missing.png"), "--json", cwd=tmp_path)
    assert "EXIT 1" in result.stdout, result.stdout + result.stderr
    assert "missing.png: no such file" in result.stderr
    assert "the model was not loaded" in result.stderr
    assert "HEAVY []" in result.stdout
    listed = json.loads(result.stdout.split("\nEXIT")[0])
    assert listed == [{"file": str(tmp_path / "missing.png"),
                       "error": f"{tmp_path / 'missing.png'}: no such file. Check the path."}]
    assert not list(tmp_path.glob("*mlflow.db*"))


def idx_bomb(path: Path, declared: int, images: int) -> None:
    """An IDX header declaring ``declared`` 28x28 images, then ``images`` images of
    zeros, gzipped as they are written (never in memory)."""
    with gzip.open(path, "wb", compresslevel=9) as f:
        f.write(struct.pack(">IIII", 0x803, declared, 28, 28))
        left, block = images * 784, bytes(1 << 20)
        while left > 0:
            f.write(block[:min(left, len(block))])
            left -= len(block)


@pytest.mark.parametrize("images", [10**9, 2_700_000, 300_000])
def test_a_gzip_bomb_in_an_idx_directory_fails_in_little_memory(tmp_path, images):
    """Headers of 10**9 (784 GB), 2.7 M (2.1 GB: it took 2.0 GiB and 27 s before its
    error) and 300,000 images (235 MB, under the limit, but 60,000 labels): refused from
    the headers, before any data are read."""
    from mnist_experiments.data.idx import save_idx

    idx_bomb(tmp_path / "train-images-idx3-ubyte.gz", images, min(images, 2_700_000))
    save_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(60_000, np.uint8))
    save_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((100, 28, 28), np.uint8))
    save_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(100, np.uint8))
    assert (tmp_path / "train-images-idx3-ubyte.gz").stat().st_size < 3_000_000
    result, peak = run_measured("""
        import sys
        from mnist_experiments.data.idx import load_idx_dir
        from mnist_experiments.errors import DataError
        try:
            load_idx_dir(sys.argv[1])
        except DataError as exc:
            print("DATAERROR", exc)
        """, str(tmp_path))
    assert "DATAERROR" in result.stdout, result.stdout + result.stderr
    if images > 300_000:
        assert f"declares shape ({images}, 28, 28)" in result.stdout
        assert "256 MiB, MAX_IDX_BYTES" in result.stdout
    else:
        assert "holds 300000 images but" in result.stdout and "holds 60000 labels" in result.stdout
    assert peak < 150, peak
