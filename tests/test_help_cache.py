"""A plain ``mnist-exp --help`` is Hydra's text, kept until one of its inputs changes."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import cli_env
from mnist_experiments.commands import help_cache


def _help(tmp_path, *args: str) -> subprocess.CompletedProcess:
    env = cli_env(MNIST_EXP_CACHE_DIR=str(tmp_path / "cache"))
    return subprocess.run([sys.executable, "-m", "mnist_experiments", *args], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)


def test_plain_help_is_hydras_text_kept_and_printed_from_the_cache(tmp_path):
    first = _help(tmp_path, "--help")  # Hydra writes it: kept
    assert first.returncode == 0, first.stderr[-3000:]
    assert "== Configuration groups ==" in first.stdout and "optimizer: " in first.stdout
    (kept,) = (tmp_path / "cache" / "help").iterdir()
    assert kept.read_text() == first.stdout
    again = _help(tmp_path, "-h")
    assert (again.returncode, again.stdout, again.stderr) == (0, first.stdout, "")
    # served from the cache: what it holds is what is printed
    kept.write_text("the kept text\n")
    assert _help(tmp_path, "--help").stdout == "the kept text\n"
    # anything besides --help is Hydra's own, and never kept
    composed = _help(tmp_path, "--help", "model=lenet5")
    assert composed.returncode == 0 and "name: lenet5" in composed.stdout
    assert [p.name for p in (tmp_path / "cache" / "help").iterdir()] == [kept.name]
    # a text kept under another key is removed a week later, when a new one is kept
    old, recent = kept.with_name("mnist-exp-old.txt"), kept.with_name("mnist-exp-new.txt")
    old.write_text("old"), recent.write_text("recent")
    os.utime(old, (0, 0))
    kept.unlink()
    assert _help(tmp_path, "--help").stdout == first.stdout
    assert sorted(p.name for p in (tmp_path / "cache" / "help").iterdir()) == sorted(
        [kept.name, recent.name])


def test_the_key_follows_every_input_of_the_text(tmp_path, monkeypatch):
    tree = tmp_path / "tree"
    (tree / "conf").mkdir(parents=True)
    (tree / "conf" / "config.yaml").write_text("seed: 42\n")
    monkeypatch.setattr(help_cache, "_locations", lambda package: [tree])
    before = help_cache._key()
    assert before is not None and help_cache._key() == before
    (tree / "conf" / "config.yaml").write_text("seed: 43\n")  # the same size: the mtime
    os.utime(tree / "conf" / "config.yaml", ns=(1, 1))
    edited = help_cache._key()
    assert edited != before
    (tree / "conf" / "model.yaml").write_text("")  # a new file
    assert help_cache._key() not in (before, edited)
    (tree / "__pycache__").mkdir()  # compiled files are not inputs
    key = help_cache._key()
    (tree / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"")
    assert help_cache._key() == key
