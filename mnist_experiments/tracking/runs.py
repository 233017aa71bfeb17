"""MLflow tracking: where runs go, how they start and end, what is logged with them.

- :func:`ensure_experiment`: create the store and the experiment once and return its
  id; runs are started with that id, never through a racing ``set_experiment``.
- :func:`tracked_run`: a run that always ends FINISHED, FAILED (on an error) or
  KILLED (on Ctrl-C / SIGTERM), never left RUNNING.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional

import mlflow
from mlflow.entities import Metric, RunStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from mnist_experiments.errors import UserError
from mnist_experiments.launch import signals
from mnist_experiments.tracking import liveness
from mnist_experiments.tracking.notes import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG, ui_page
from mnist_experiments.tracking.owner import END_REASON_TAG
from mnist_experiments.tracking.preflight import StoreError, check_store
from mnist_experiments.tracking.store import artifact_root_for, install_template, sqlite_file

log = logging.getLogger(__name__)
# MLflow's SQL store logs every database error, with its traceback, before raising it:
# the raised error is what we report (as one paragraph where it is the user's to fix)
logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
# its system-metrics monitor says "Started/Stopping monitoring" at every run: not news
logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)
SYSTEM_METRICS_SECONDS = 2  # sampling interval of MLflow's system metrics

# the last top-level run this process ended: what a stopped command reports
last_ended: Optional[Dict[str, str]] = None
# the runs of this process that have a resume checkpoint (their end says how to resume)
resumable: set = set()


def ensure_experiment(uri: str, name: str) -> str:
    """Create (once) and return the id of experiment ``name`` in the store at ``uri``;
    end the store's runs whose process died (:func:`liveness.repair`)."""
    experiment_id = _create_experiment(uri, name)
    liveness.repair(MlflowClient(uri))
    return experiment_id


def _create_experiment(uri: str, name: str) -> str:
    """Create (once) and return the id of experiment ``name`` in the store at ``uri``.

    Safe to call from several processes: a lost creation race reads the winner's id.
    The store is checked first (:func:`~mnist_experiments.tracking.preflight.check_store`:
    seconds, not MLflow's minutes of retries); any error of the store itself is one
    :class:`~mnist_experiments.tracking.preflight.StoreError` naming it, never a traceback.
    A new SQLite store is a copy of the template of MLflow's schema
    (:func:`~mnist_experiments.tracking.store.install_template`).
    """
    check_store(uri)
    install_template(uri)
    try:
        mlflow.set_tracking_uri(uri)
        client = MlflowClient(uri)
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
            return client.create_experiment(name, artifact_location=artifact_root_for(uri),
                                            tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
        except MlflowException:
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
            return experiment.experiment_id
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - MLflow, SQLAlchemy, requests: the store failed
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:300]
        raise StoreError(
            f"Cannot use the MLflow tracking store {uri}: {type(exc).__name__}: {first}. "
            "Check that it is an MLflow store you may write to, or point mnist-exp at "
            "another one with mlflow.tracking_uri=sqlite:////abs/path/mlflow.db (or "
            "--tracking-uri for the other commands, or $MLFLOW_TRACKING_URI), or "
            "http://host:5000 for a tracking server."
        ) from None


@contextlib.contextmanager
def tracked_run(
    experiment_id: str,
    run_name: str,
    tags: Optional[Mapping[str, str]] = None,
    parent_run_id: Optional[str] = None,
    nested: bool = False,
    system_metrics: bool = False,
    run_id: Optional[str] = None,
) -> Iterator[mlflow.ActiveRun]:
    """Start a run and end it FINISHED, FAILED or KILLED (never left RUNNING).

    The run records its owner (host, pid, process start) and keeps a heartbeat, so
    that if this process dies without ending it (SIGKILL, the OOM killer, a full disk),
    the next command that opens the store ends it (:mod:`.liveness`). The final status
    is written with signals held back (:func:`~mnist_experiments.launch.signals.deferred`);
    a top-level run ends with one line naming it, its status and where to look at it.
    With ``system_metrics``, MLflow samples CPU, memory, disk and network every
    :data:`SYSTEM_METRICS_SECONDS` into ``system/*`` metrics (it needs ``psutil``).
    With ``run_id``, that run (ended) continues, RUNNING again, owned by this process.
    """
    if system_metrics:
        mlflow.set_system_metrics_sampling_interval(SYSTEM_METRICS_SECONDS)
    if run_id is not None:
        with contextlib.suppress(MlflowException):
            MlflowClient().delete_tag(run_id, END_REASON_TAG)  # why it ended before
    status, reason = RunStatus.to_string(RunStatus.FAILED), None
    # (a signal inside MLflow's start_run, which may wait on a server, stops it there:
    # a run it had created is then ended by the next command, see liveness)
    run = _start(experiment_id, run_name, tags, parent_run_id, nested, system_metrics, run_id)
    heartbeat: Optional[liveness.Heartbeat] = None
    try:  # from here on, whatever stops it, the run is ended
        heartbeat = liveness.Heartbeat(run.info.run_id)
        heartbeat.start()
        yield run
        status = RunStatus.to_string(RunStatus.FINISHED)
    except BaseException as exc:
        signum = signals.interrupting(exc)  # also an error that a signal caused
        if signum is not None:
            status = RunStatus.to_string(RunStatus.KILLED)
            reason = f"interrupted by {signal.Signals(signum).name}"
        else:
            first = str(exc).splitlines()[0] if str(exc) else ""
            reason = f"{type(exc).__name__}: {first}"[:500]
        raise
    finally:
        if heartbeat is not None:
            heartbeat.stop()
        with signals.deferred():
            _end(run, status, reason, quiet=nested)


def _start(experiment_id: str, run_name: str, tags: Optional[Mapping[str, str]],
           parent_run_id: Optional[str], nested: bool, system_metrics: bool,
           run_id: Optional[str]) -> mlflow.ActiveRun:
    try:
        return mlflow.start_run(
            run_id=run_id,
            experiment_id=experiment_id,
            run_name=run_name,
            tags={**liveness.owner_tags(), **dict(tags or {})},
            parent_run_id=parent_run_id,
            nested=nested,
            log_system_metrics=system_metrics,
        )
    except MlflowException as exc:
        if exc.error_code != "PERMISSION_DENIED":
            raise
        raise permission_denied(experiment_id, exc) from None


def permission_denied(experiment_id: str, exc: MlflowException) -> UserError:
    """The one paragraph for a tracking server (with accounts) that refuses a new run."""
    account = os.environ.get("MLFLOW_TRACKING_USERNAME") or "this account"
    return UserError(
        f"The MLflow tracking server {mlflow.get_tracking_uri()} refuses to let {account} "
        f"write to experiment {experiment_id} (403 PERMISSION_DENIED: "
        f"{str(exc.message).splitlines()[0][:200]}). On a server with accounts you may "
        "write only to experiments you created or were given EDIT on: choose one of your "
        "own with mlflow.experiment_name=NAME (a new name creates it, and it is yours), or "
        "ask the experiment's owner or the server's admin for access. Nothing was logged."
    )


def _end(run: mlflow.ActiveRun, status: str, reason: Optional[str], quiet: bool) -> None:
    """End the active run; if the store refuses (a full disk), say so in one line and
    leave the run to :func:`liveness.repair` rather than hide the error being raised."""
    run_id = run.info.run_id
    try:
        if reason:
            mlflow.set_tag(END_REASON_TAG, reason)
        mlflow.end_run(status)
    except Exception as exc:  # noqa: BLE001 - the run's own error matters more
        log.error("could not mark run %s %s in the store (%s); the next mnist-exp on this "
                  "host ends it", run_id, status, str(exc).splitlines()[0][:200])
        with contextlib.suppress(Exception):
            mlflow.end_run(status)  # at least leave MLflow's active-run stack clean
        return
    if quiet:
        return
    global last_ended
    where = where_to_look(mlflow.get_tracking_uri(), run.info.experiment_id, run_id)
    if status != "FINISHED" and run_id in resumable:
        where = f"Continue it from its last epoch: mnist-exp resume={run_id}. {where}"
    last_ended = {"run_id": run_id, "status": status, "where": where}
    if status != "KILLED":  # a stopped command says it in its own last line
        log.info("run %s %s. %s", run_id, status, where)


def where_to_look(uri: str, experiment_id: str, run_id: str) -> str:
    """How a user opens a run in the MLflow UI (in its "Model training" view)."""
    page = ui_page(experiment_id, run_id)
    if uri.startswith(("http://", "https://")):
        return f"See it at {uri.rstrip('/')}/{page}"
    db = sqlite_file(uri)
    if db is not None and db == Path.cwd() / "mlflow.db":
        command = "mlflow ui"
    else:
        command = f"mlflow ui --backend-store-uri {uri}"
    return f"See it: {command}, then open http://127.0.0.1:5000/{page}"


class BackgroundMetrics:
    """Log per-epoch metrics from a background thread, so training never waits on the store.

    MLflow's own asynchronous logging (``synchronous=False``) costs about 1 s per run
    at flush and again at ``end_run`` (its worker polls its queue once a second); this
    writer's :meth:`close` returns as soon as the last batch is written.

    ``skip_through``: the last step the run already holds (a resumed run's epochs logged
    before it stopped); those steps are not logged twice.
    """
    def __init__(self, run_id: str, skip_through: int = 0):
        self.run_id = run_id
        self.skip_through = skip_through
        self.client = MlflowClient()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlflow-metrics")
        self._futures: List[Any] = []

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        if step <= self.skip_through:
            return
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
