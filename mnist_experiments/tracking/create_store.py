"""The helper process of :class:`mnist_experiments.tracking.store.StoreCreation`.

    python -m mnist_experiments.tracking.create_store TEMPORARY_DB EXPERIMENT_NAME

builds a complete SQLite store (MLflow's migrations, the experiment) at TEMPORARY_DB;
the job links it into place once it needs the store. It runs only when there is no
template of this MLflow's schema yet (:mod:`~mnist_experiments.tracking.store_template`),
and builds that first, so that the next new store is a copy.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mnist_experiments.tracking.runs import ensure_experiment
from mnist_experiments.tracking.store import SQLITE
from mnist_experiments.tracking.store_template import build_template, copy_template


def create(path: str, name: str) -> None:
    """A complete store with experiment ``name`` at ``path``.

    The experiment's artifact root (``mlruns/`` beside the DB) is the same for the final
    name, which lives in the same directory. Without a usable template (an unwritable
    cache), MLflow migrates the store in place.
    """
    # copied onto ``path`` itself, which the job removes if it stops this helper
    # (ensure_experiment would copy it to a temporary name of this process's first)
    if build_template() is not None:
        copy_template(Path(path))
    ensure_experiment(SQLITE + str(path), name)


if __name__ == "__main__":
    create(sys.argv[1], sys.argv[2])
