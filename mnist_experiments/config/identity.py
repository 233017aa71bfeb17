"""``config_id``: which configuration a run trained, whatever its seed.

A stable hash of the composed config without ``seed`` and without the keys that only
say how a run is tracked or drawn (``mlflow``, ``viz``): the runs of a seed sweep share
it, so the MLflow UI can group them by the tag ``config_id``, and the sweep's grouped
leaderboard (:mod:`mnist_experiments.workflows.grouped`) aggregates them by it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping

from omegaconf import DictConfig, OmegaConf

# top-level keys that do not change what is trained
NOT_THE_CONFIGURATION = ("seed", "mlflow", "viz", "hydra", "resume")


def config_id(cfg: Any) -> str:
    """12 hex digits of SHA-256 over the configuration's canonical JSON."""
    return hashlib.sha256(canonical(cfg).encode()).hexdigest()[:12]


def canonical(cfg: Any, resolve: bool = True) -> str:
    """The configuration's canonical JSON: ``cfg`` without :data:`NOT_THE_CONFIGURATION`,
    its keys sorted (``resolve=False`` keeps interpolations as written)."""
    container = (OmegaConf.to_container(cfg, resolve=resolve, enum_to_str=True)
                 if isinstance(cfg, DictConfig) else cfg)
    assert isinstance(container, Mapping)
    body = {k: v for k, v in container.items() if k not in NOT_THE_CONFIGURATION}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
