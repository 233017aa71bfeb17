"""MLflow tracking: where runs go, how they start and end, what is logged with them.

- :func:`ensure_experiment`: create the store and the experiment once and return its
  id; runs are started with that id, never through a racing ``set_experiment``.
- :func:`tracked_run`: a run that always ends FINISHED, FAILED (on an error) or
  KILLED (on Ctrl-C / SIGTERM), never left RUNNING.
"""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional

import mlflow
from mlflow.entities import RunStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from mnist_experiments.errors import UserError
from mnist_experiments.tracking.store import artifact_root_for


def ensure_experiment(uri: str, name: str) -> str:
    """Create (once) and return the id of experiment ``name`` in the store at ``uri``.

    Safe to call from several processes: a lost creation race reads the winner's id.
    """
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    try:
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            if experiment.lifecycle_stage == "deleted":
                raise UserError(
                    f"The MLflow experiment {name!r} is deleted in {uri}. Restore it "
                    f"(mlflow experiments restore --experiment-id {experiment.experiment_id}) "
                    "or choose another name with mlflow.experiment_name=NAME."
                )
            return experiment.experiment_id
        try:
            return client.create_experiment(name, artifact_location=artifact_root_for(uri))
        except MlflowException:
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
            return experiment.experiment_id
    except MlflowException as exc:
        raise UserError(
            f"Cannot use the MLflow tracking store {uri!r}: {str(exc).splitlines()[0]} "
            "Check mlflow.tracking_uri (or $MLFLOW_TRACKING_URI), e.g. "
            "mlflow.tracking_uri=sqlite:///mlflow.db or http://127.0.0.1:5000."
        ) from exc


@contextlib.contextmanager
def tracked_run(
    experiment_id: str,
    run_name: str,
    tags: Optional[Mapping[str, str]] = None,
    parent_run_id: Optional[str] = None,
    nested: bool = False,
) -> Iterator[mlflow.ActiveRun]:
    """Start a run and end it FINISHED, FAILED or KILLED (never left RUNNING)."""
    run = mlflow.start_run(
        experiment_id=experiment_id,
        run_name=run_name,
        tags=dict(tags or {}),
        parent_run_id=parent_run_id,
        nested=nested,
    )
    status = RunStatus.to_string(RunStatus.FAILED)
    try:
        yield run
        status = RunStatus.to_string(RunStatus.FINISHED)
    except KeyboardInterrupt:
        status = RunStatus.to_string(RunStatus.KILLED)
        raise
    finally:
        mlflow.end_run(status)


class BackgroundMetrics:
    """Log per-epoch metrics from a background thread, so training never waits on the store.

    MLflow's own asynchronous logging (``synchronous=False``) costs about 1 s per run
    at flush and again at ``end_run`` (its worker polls its queue once a second); this
    writer's :meth:`close` returns as soon as the last batch is written.
    """

    def __init__(self, run_id: str):
        from concurrent.futures import ThreadPoolExecutor

        self.run_id = run_id
        self.client = MlflowClient()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlflow-metrics")
        self._futures: List[Any] = []

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        import time

        from mlflow.entities import Metric

        timestamp = int(time.time() * 1000)
        batch = [Metric(key, float(value), timestamp, int(step)) for key, value in metrics.items()]
        self._futures.append(self._pool.submit(self.client.log_batch, self.run_id, metrics=batch))

    def close(self) -> None:
        """Wait for every batch; re-raise the first logging error."""
        self._pool.shutdown(wait=True)
        for future in self._futures:
            future.result()

    def __enter__(self) -> "BackgroundMetrics":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def flatten(node: Any, prefix: str = "") -> Dict[str, Any]:
    """Leaf values of nested dicts and lists, keyed by dotted path."""
    out: Dict[str, Any] = {}
    if isinstance(node, Mapping):
        for key, value in node.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(node, (list, tuple)):
        if not node:
            out[prefix] = "[]"
        for i, value in enumerate(node):
            out.update(flatten(value, f"{prefix}.{i}" if prefix else str(i)))
    else:
        out[prefix] = node
    return out


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
            import hashlib

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
    import hydra
    import keras
    import numpy
    import PIL
    import sklearn
    import tensorflow as tf

    import mnist_experiments

    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "mlflow": mlflow.__version__,
        "hydra": hydra.__version__,
        "numpy": numpy.__version__,
        "sklearn": sklearn.__version__,  # the data splits
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
               "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")


def provenance_tags(launch_dir: str | os.PathLike) -> Dict[str, str]:
    """Tags: versions, platform, git commit and the command line."""
    tags = {f"version.{k}": v for k, v in versions().items()}
    tags.update({f"platform.{k}": v for k, v in platform_info().items()})
    tags.update({f"env.{k}": os.environ[k] for k in NUMERIC_ENV if k in os.environ})
    package_dir = Path(__file__).resolve().parent
    tags.update(git_info(package_dir, launch_dir))
    tags["command"] = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:5000]
    return tags


def log_params_flat(params: Mapping[str, Any]) -> None:
    """Log parameters, cutting values to MLflow's length limit."""
    clean = {k[:250]: ("null" if v is None else str(v))[:6000] for k, v in params.items()}
    items = list(clean.items())
    for start in range(0, len(items), 100):
        mlflow.log_params(dict(items[start:start + 100]))
