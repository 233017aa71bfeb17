"""MLflow tracking: where runs go, how they start and end, what is logged with them.

- :func:`ensure_experiment`: create the store and the experiment once and return its
  id; runs are started with that id, never through a racing ``set_experiment``.
- :func:`tracked_run`: a run that always ends FINISHED, FAILED (on an error) or
  KILLED (on Ctrl-C / SIGTERM), never left RUNNING.
"""

from __future__ import annotations

import contextlib
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, Iterator, List, Mapping, Optional

import mlflow
from mlflow.entities import Metric, RunStatus
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
        self.run_id = run_id
        self.client = MlflowClient()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlflow-metrics")
        self._futures: List[Any] = []

    def log(self, metrics: Mapping[str, float], step: int) -> None:
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


def log_params_flat(params: Mapping[str, Any]) -> None:
    """Log parameters, cutting values to MLflow's length limit (MLflow's ``log_batch``
    sends them in batches of its own size)."""
    mlflow.log_params({k[:250]: ("null" if v is None else str(v))[:6000]
                       for k, v in params.items()})


@contextlib.contextmanager
def using_tracking_uri(uri: str) -> Iterator[None]:
    """Point MLflow's global tracking and registry URIs at ``uri``; restore them after.

    ``mlflow.register_model`` and ``models:/`` URIs use the global URIs, and
    ``mlflow.set_tracking_uri`` also exports ``$MLFLOW_TRACKING_URI``: both are put back.
    """
    names = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    saved_env = {name: os.environ.get(name) for name in names}
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(saved_env["MLFLOW_TRACKING_URI"])  # None: unset
        mlflow.set_registry_uri(saved_env["MLFLOW_REGISTRY_URI"])
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
