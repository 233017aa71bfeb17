"""Provenance: what software, machine, code and data made a run, and how two runs differ.

A run records its provenance as tags (:func:`provenance_tags`, plus the data tags of
:func:`mnist_experiments.workflows.experiment.run_experiment`): ``version.*`` (Python,
TensorFlow, Keras, MLflow, Hydra, NumPy, this package), ``platform.*`` (OS, machine,
CPU, CPU count and vector flags), ``env.*`` (variables that change the numerics),
``git_*`` and ``data.fingerprint`` / ``data.source``. A reproduction that differs in
any of them may legitimately produce different numbers, so ``mnist-exp-reproduce``
names every difference (:func:`compare`).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional

import hydra

import mnist_experiments

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
    "platform.cpu_flags",
    "git_commit",
    "git_dirty",
    "git_repo",  # proposed in tracking.git_info; compared once runs record them
    "git_diff_sha256",
    "data.fingerprint",
    "data.source",
)
PROVENANCE_PREFIXES = ("version.", "platform.", "env.", "runtime.")


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


def _git(args: List[str], cwd: Path) -> Optional[str]:
    try:
        result = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def git_info(*candidates: str | os.PathLike) -> Dict[str, str]:
    """Commit and dirty flag of the first git checkout among ``candidates``."""
    for directory in candidates:
        directory = Path(directory)
        if not directory.is_dir():
            continue
        commit = _git(["rev-parse", "HEAD"], directory)
        if commit:
            dirty = _git(["status", "--porcelain"], directory)
            diff = _git(["diff", "HEAD"], directory) or ""
            return {
                "git_commit": commit,
                "mlflow.source.git.commit": commit,
                "git_repo": _git(["rev-parse", "--show-toplevel"], directory) or str(directory),
                "git_dirty": str(bool(dirty)).lower(),
                "git_diff_sha256": hashlib.sha256(diff.encode()).hexdigest(),
            }
    return {}


def versions() -> Dict[str, str]:
    """Versions of the software that decides the numbers."""
    # imported here: a sweep's launcher process reads git_info only, and must not pay
    # TensorFlow's import (seconds) for it
    import keras
    import mlflow
    import numpy
    import PIL
    import tensorflow as tf

    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "mlflow": mlflow.__version__,
        "hydra": hydra.__version__,
        "numpy": numpy.__version__,
        # the data splits; read from its metadata: importing it costs ~0.5 s before the
        # first epoch of a run that needs it only after the fit
        "sklearn": importlib.metadata.version("scikit-learn"),
        "pillow": PIL.__version__,  # the digits resize
        "mnist_experiments": mnist_experiments.__version__,
    }


def platform_info() -> Dict[str, str]:
    cpu = platform.processor() or platform.machine()
    flags: List[str] = []
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name") and cpu in ("", platform.machine()):
                    cpu = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    # the vector instruction sets decide which kernels TensorFlow runs
                    wanted = ("avx", "avx2", "avx512f", "fma", "amx_tile", "sse4_2")
                    flags = [f for f in line.split(":", 1)[1].split() if f in wanted]
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu,
        "cpu_count": str(os.cpu_count()),
        "cpu_flags": " ".join(sorted(flags)),
    }


# Environment variables that change TensorFlow's numerics or threading.
NUMERIC_ENV = ("TF_ENABLE_ONEDNN_OPTS", "TF_DETERMINISTIC_OPS", "OMP_NUM_THREADS",
               "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "ONEDNN_MAX_CPU_ISA",
               "DNNL_MAX_CPU_ISA", "ONEDNN_DEFAULT_FPMATH_MODE", "TF_ONEDNN_ASSUME_FROZEN_WEIGHTS")


def runtime_info() -> Dict[str, str]:
    """What this process' TensorFlow actually runs with: thread pools and oneDNN."""
    import tensorflow as tf

    return {
        "intra_op_threads": str(tf.config.threading.get_intra_op_parallelism_threads()),
        "inter_op_threads": str(tf.config.threading.get_inter_op_parallelism_threads()),
        # TensorFlow 2.x on x86-64 Linux turns oneDNN's kernels on unless this says 0
        "onednn": "off" if os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1") in ("0", "false")
        else "on",
    }


def provenance_tags(launch_dir: str | os.PathLike) -> Dict[str, str]:
    """Tags: versions, platform, git commit and the command line."""
    tags = {f"version.{k}": v for k, v in versions().items()}
    tags.update({f"platform.{k}": v for k, v in platform_info().items()})
    tags.update({f"env.{k}": os.environ[k] for k in NUMERIC_ENV if k in os.environ})
    tags.update({f"runtime.{k}": v for k, v in runtime_info().items()})
    package_dir = Path(mnist_experiments.__file__).resolve().parent
    tags.update(git_info(package_dir, launch_dir))
    tags["command"] = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:5000]
    return tags
