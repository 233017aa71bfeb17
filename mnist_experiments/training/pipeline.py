"""The input pipeline: uint8 images in memory -> shuffled, scaled ``tf.data`` batches."""

from __future__ import annotations

from typing import Optional

import numpy as np
import tensorflow as tf

from mnist_experiments.compat import keras_iterators_per_epoch

# Buffered batches ahead of the model (a background thread fills them).
PREFETCH_BATCHES = 2


def to_float(images: np.ndarray) -> np.ndarray:
    """uint8 (n, 28, 28) images -> float32 (n, 28, 28, 1) in [0, 1]."""
    x = images.astype(np.float32) / np.float32(255.0)
    return x[..., np.newaxis] if x.ndim == 3 else x


def without_autotune(ds: tf.data.Dataset) -> tf.data.Dataset:
    """``ds`` with tf.data's autotuning off.

    Autotuning runs a model thread whose sleep doubles from 10 ms (10, 20, 40 ms ...),
    and destroying an iterator waits for that sleep to end. Keras makes a new iterator
    every epoch, so each epoch ended on the thread's schedule (10.23 s, 20.47 s ...)
    rather than when its last batch was done: measured here on full Fashion-MNIST,
    epochs of 20.3-20.5 s with autotuning vs 17.6 s without, and ~3 s more at the end
    of ``fit``. Nothing here needs tuning: the batches are gathered from memory.
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.with_options(options)


def make_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    shuffle_buffer: Optional[int] = None,
    one_hot: int = 0,
    epochs_done: int = 0,
) -> tf.data.Dataset:
    """A batched, prefetched ``tf.data`` pipeline over uint8 images held in memory.

    The images stay uint8 in one tensor (a quarter of the memory of float32 copies);
    each batch is gathered by index and scaled to [0, 1] on the fly. Only the indices
    are shuffled (seeded, so every epoch's order is the same from run to run), which
    is far cheaper than shuffling the images themselves. ``one_hot``: labels as one-hot
    vectors of that many classes (for the categorical losses), else class indices.

    ``epochs_done``: a resumed fit's epochs so far. Each new iteration draws the next
    order from the shuffle's seeded generator, so the iterations Keras made in those
    epochs (:func:`~mnist_experiments.compat.keras_iterators_per_epoch`) are made
    first, and the next epoch reads the order it would have read.
    """
    x = tf.constant(images[..., np.newaxis] if images.ndim == 3 else images)
    y = tf.constant(labels)
    ds = tf.data.Dataset.range(len(labels))
    if shuffle:
        ds = ds.shuffle(shuffle_buffer or len(labels), seed=seed, reshuffle_each_iteration=True)
        for _ in range(epochs_done * keras_iterators_per_epoch()):
            iter(ds)  # cheap: nothing is read

    def gather(index):
        labels = tf.gather(y, index)
        if one_hot:
            labels = tf.one_hot(labels, one_hot)
        return tf.cast(tf.gather(x, index), tf.float32) / 255.0, labels

    return without_autotune(ds.batch(batch_size).map(gather).prefetch(PREFETCH_BATCHES))


def image_batches(images: np.ndarray, batch_size: int = 512) -> tf.data.Dataset:
    """Unshuffled float batches of uint8 or float images, for prediction."""
    x = to_float(images) if images.dtype == np.uint8 else images
    return without_autotune(tf.data.Dataset.from_tensor_slices(x).batch(batch_size))
