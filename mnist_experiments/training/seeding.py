"""What makes a run's numbers repeatable: seeds, op determinism and thread counts."""

from __future__ import annotations

from typing import Optional

import keras
import tensorflow as tf

from mnist_experiments.errors import ConfigError
from mnist_experiments.launch.numerics import available_cores


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed Python, NumPy and TensorFlow; optionally make TensorFlow ops deterministic."""
    keras.utils.set_random_seed(int(seed))
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def resolve_threads(configured: Optional[int], parallel: int = 1) -> int:
    """``train.threads`` as a number: the configured count, else this job's share of the
    available cores (``parallel``: the jobs running at once on this machine, e.g. a
    joblib sweep's; two jobs on 2 cores get 1 thread each instead of fighting over 4)."""
    if configured:
        return int(configured)
    return max(1, available_cores() // max(1, int(parallel)))


def apply_threads(threads: int) -> None:
    """Run TensorFlow's ops on ``threads`` intra-op and ``threads`` inter-op threads.

    Must run before TensorFlow executes its first op in this process; TensorFlow cannot
    change its thread pools afterwards. A process that already runs with this count
    (or with TensorFlow's default, which is the available cores) is fine.

    Raises
    ------
    ConfigError
        When TensorFlow already runs with another thread count in this process.
    """
    intra = tf.config.threading.get_intra_op_parallelism_threads()
    inter = tf.config.threading.get_inter_op_parallelism_threads()
    if intra == inter == threads:
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        effective = intra or available_cores()
        if intra == inter and effective == threads:
            return  # TensorFlow's default is this very count
        raise ConfigError(
            f"train.threads={threads} cannot be applied: TensorFlow already runs with "
            f"{effective} thread(s) in this process, and it cannot change them once it has "
            "run an op. Run this config in a new process (e.g. a new mnist-exp command), "
            f"or use train.threads={effective} here."
        ) from None
