"""Comparing the provenance of two runs (what software, machine and data made them).

A run records its provenance as tags (see :func:`mnist_experiments.tracking.runs.provenance_tags`
and :func:`mnist_experiments.workflows.experiment.run_experiment`): ``version.*`` (Python, TensorFlow,
Keras, MLflow, Hydra, NumPy, this package), ``platform.*`` (OS, machine, CPU, CPU count),
``git_commit`` / ``git_dirty`` and ``data.fingerprint`` / ``data.source``. A reproduction
that differs in any of them may legitimately produce different numbers, so
``mnist-exp-reproduce`` names every difference.

This module imports neither TensorFlow nor MLflow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Mapping, Optional

# Tags compared between an original run and its reproduction, in the order reported.
# Any other ``version.*`` / ``platform.*`` / ``env.*`` tag the original recorded is compared too.
PROVENANCE_KEYS = (
    "version.python",
    "version.tensorflow",
    "version.keras",
    "version.mlflow",
    "version.hydra",
    "version.numpy",
    "version.mnist_experiments",
    "platform.platform",
    "platform.machine",
    "platform.cpu",
    "platform.cpu_count",
    "git_commit",
    "git_dirty",
    "git_repo",  # proposed in tracking.git_info; compared once runs record them
    "git_diff_sha256",
    "data.fingerprint",
    "data.source",
)
PROVENANCE_PREFIXES = ("version.", "platform.", "env.")


@dataclass(frozen=True)
class Difference:
    """One provenance tag whose value differs (``None``: not recorded on that run)."""

    key: str
    original: Optional[str]
    reproduction: Optional[str]

    def describe(self) -> str:
        original = "not recorded" if self.original is None else repr(self.original)
        reproduction = "not recorded" if self.reproduction is None else repr(self.reproduction)
        return f"{self.key}: original {original}, reproduction {reproduction}"


def provenance_keys(*tag_sets: Mapping[str, str]) -> List[str]:
    """The provenance keys to compare: the standard ones, then any extra version/platform tag."""
    keys = list(PROVENANCE_KEYS)
    extra = sorted(
        {k for tags in tag_sets for k in tags if k.startswith(PROVENANCE_PREFIXES)} - set(keys)
    )
    return keys + extra


def compare(original: Mapping[str, str], reproduction: Mapping[str, str]) -> List[Difference]:
    """Every provenance tag of the original whose value differs in the reproduction.

    Keys the original did not record are skipped (an older run, or a config file with
    only a ``data.json`` beside it); a key the reproduction lacks is reported.
    """
    differences = []
    for key in provenance_keys(original, reproduction):
        a, b = original.get(key), reproduction.get(key)
        if a is None:
            continue
        if a != b:
            differences.append(Difference(key, a, b))
    return differences
