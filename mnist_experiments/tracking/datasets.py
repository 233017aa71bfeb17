"""A run's data as MLflow datasets: the runs table's Dataset column and its filter.

Every training, fold, evaluation and reproduction run logs the images it used with
``mlflow.log_input`` and a context: ``training``, ``validation``, ``test``. Each dataset
is named ``<data.name>-<context>`` (a fold's ``<data.name>-fold-<k>-<context>``), with
the run's data fingerprint as its digest (its first 36 hex digits: MLflow's digest
column holds 36 characters; the whole fingerprint is the tag ``data.fingerprint``), its
source (the IDX directory or npz file, else the loader, e.g. ``sklearn:load_digits``)
and its shapes in the profile. Logging one costs about 15 ms: the digest is given, so
MLflow hashes nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

import mlflow
import numpy as np
from mlflow.data.code_dataset_source import CodeDatasetSource
from mlflow.exceptions import MlflowException

from mnist_experiments.compat import local_dataset_source

DIGEST_CHARS = 36  # MLflow's datasets.digest column


def _source(source: str):
    kind, _, where = source.partition(":")
    if kind in ("idx", "npz") and where and Path(where).exists():
        return local_dataset_source(where)
    return CodeDatasetSource(tags={"loader": source})


def log_datasets(name: str, fingerprint: str, source: str,
                 splits: Mapping[str, Optional[Tuple[np.ndarray, np.ndarray]]]
                 ) -> Dict[str, Any]:
    """Log each ``context -> (images, labels)`` of ``splits`` (None: skipped) to the
    active run; return the logged datasets by context (to link metrics to them)."""
    logged = {}
    for context, arrays in splits.items():
        if arrays is None or len(arrays[1]) == 0:
            continue
        images, labels = arrays
        dataset = mlflow.data.from_numpy(images, targets=labels, source=_source(source),
                                         name=f"{name}-{context}",
                                         digest=fingerprint[:DIGEST_CHARS])
        _log_input(dataset, context)
        logged[context] = dataset
    return logged


def _log_input(dataset: Any, context: str) -> None:
    """``mlflow.log_input``, once more if another run logged the same dataset at the same
    moment: MLflow's SQL store looks the dataset up, then inserts it, so of two jobs that
    start together (a SLURM job array's tasks) one hit "UNIQUE constraint failed:
    datasets.experiment_id, datasets.name, datasets.digest" and failed. The second try
    finds the dataset the other run inserted."""
    try:
        mlflow.log_input(dataset, context=context)
    except MlflowException as exc:
        if "unique constraint" not in str(exc).lower():
            raise
        mlflow.log_input(dataset, context=context)
