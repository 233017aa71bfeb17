"""Figures drawn on two cores: the forked child's files are the parent's, and a child
that dies or hangs costs time, never a figure."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from mnist_experiments import figures
from mnist_experiments.tracking import drawing

PARENT = os.getpid()


def tasks(trap=None):
    """Four small figures; ``trap`` runs in place of the third one's builder in the child."""
    history = {"accuracy": [0.5, 0.7], "val_accuracy": [0.4, 0.6],
               "loss": [1.0, 0.6], "val_loss": [1.1, 0.8]}
    confusion = np.array([[5, 1], [2, 4]])
    images = np.linspace(0, 1, 4 * 28 * 28).reshape(4, 28, 28)

    def third():
        if trap is not None and os.getpid() != PARENT:
            trap()
        return figures.confusion_matrix_figure(confusion, ["a", "b"])

    return [("plots/curves.png", "curves", lambda: figures.training_curves(history)),
            ("plots/samples.png", "samples",
             lambda: figures.sample_grid(images, [0, 1, 0, 1], ["a", "b"], n=4)),
            ("plots/confusion_matrix.png", "confusion_matrix", third),
            ("activations/conv1.png", "activations:conv1",
             lambda: figures.activation_grid(images.transpose(1, 2, 0), "conv1"))]


def files(directory):
    return {str(p.relative_to(directory)): p.read_bytes()
            for p in directory.rglob("*") if p.is_file()}


def test_two_workers_draw_the_same_files_as_one(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    seconds_one = drawing.draw_files(tasks(), one, dpi=50, workers=1)
    seconds_two = drawing.draw_files(tasks(), two, dpi=50, workers=2)
    assert files(one) == files(two)  # byte for byte, half of them drawn by the child
    assert sorted(files(two)) == sorted(path for path, _, _ in tasks())
    assert set(seconds_one) == set(seconds_two) == {
        "curves", "samples", "confusion_matrix", "activations:conv1",
        *(f"save:{path}" for path, _, _ in tasks())}


def test_a_child_that_dies_leaves_its_figures_to_the_parent(tmp_path):
    expected = files_of_one(tmp_path)
    out = tmp_path / "died"
    drawing.draw_files(tasks(trap=lambda: os._exit(3)), out, dpi=50, workers=2)
    assert files(out) == expected


def test_a_child_that_hangs_is_stopped_and_its_figures_drawn_here(tmp_path, monkeypatch):
    monkeypatch.setattr(drawing, "CHILD_TIMEOUT", 1.0)
    expected = files_of_one(tmp_path)
    out = tmp_path / "hung"
    start = time.monotonic()
    drawing.draw_files(tasks(trap=lambda: time.sleep(60)), out, dpi=50, workers=2)
    assert time.monotonic() - start < 30
    assert files(out) == expected


def files_of_one(tmp_path):
    drawing.draw_files(tasks(), tmp_path / "reference", dpi=50, workers=1)
    return files(tmp_path / "reference")


@pytest.mark.parametrize("workers", [1, 2])
def test_a_builder_error_in_the_parent_is_raised(tmp_path, workers):
    def broken():
        raise ValueError("no such figure")

    with pytest.raises(ValueError, match="no such figure"):
        drawing.draw_files([("plots/x.png", "x", broken), *tasks()], tmp_path, 50, workers)
