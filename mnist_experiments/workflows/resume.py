"""``mnist-exp resume=<run id>``: continue an interrupted run from its last epoch.

Every run of ``mnist-exp`` saves its whole training state after each epoch
(:mod:`mnist_experiments.training.checkpoints`) under its Hydra directory,
``<output dir>/checkpoints/resume/``, and copies the last state into the run's MLflow
artifacts (``checkpoints/resume/``), so that another machine sharing the store can go
on too. Once the run has FINISHED, both are removed, and their size is logged
(``checkpoint_bytes``).

A resumed run is the same MLflow run, RUNNING again: it trains with the config it
recorded (``config.yaml``), from the epoch after its last state, and logs only the
epochs it had not logged. Overrides given with ``resume=`` that would change the result
are refused; those of ``mlflow.*``, ``viz.*`` and ``hydra.*`` apply.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from mlflow.exceptions import MlflowException
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf

from mnist_experiments.config.untrusted import build_config
from mnist_experiments.errors import ConfigError, UserError
from mnist_experiments.launch.context import JobContext
from mnist_experiments.tracking import liveness
from mnist_experiments.tracking.preflight import check_store
from mnist_experiments.tracking.store import resolve_tracking_uri
from mnist_experiments.training.checkpoints import Checkpoints

log = logging.getLogger(__name__)

ARTIFACT_DIR = "checkpoints/resume"  # the last states, in the run's MLflow artifacts
LOCAL_DIR = Path("checkpoints") / "resume"  # ... and under its Hydra output dir
RESUMED_TAG = "resume.count"
# overrides that may differ from the recorded config: they change no number
FREE_PREFIXES = ("mlflow.", "viz.", "hydra.", "hydra/", "resume")


@dataclass
class Resumption:
    """What a resumed run continues: its run, store, recorded config and states."""

    run_id: str
    experiment_id: str
    tracking_uri: str
    cfg: DictConfig  # the recorded config, with the free overrides applied
    count: int  # the how-many-th resume this is
    fingerprint: str  # the recorded data's
    previous_dir: Optional[Path]  # the Hydra output dir of the run's last attempt


def prepare(cfg: DictConfig, context: JobContext) -> Resumption:
    """Check that ``cfg.resume`` names a run this command can continue, and return it.

    Raises
    ------
    UserError, ConfigError
        One paragraph naming the run (or the override) and what to do instead.
    """
    run_id = str(cfg.resume).strip()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    if context.parent_run_id is not None:
        raise ConfigError(
            f"resume={run_id} continues one run, not a sweep's job. To continue an "
            "interrupted sweep, run its command again with hydra.sweep.dir=<its dir>.")
    uri = resolve_tracking_uri(cfg.mlflow.tracking_uri, context.launch_dir)
    check_store(uri)
    client = MlflowClient(uri)
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise UserError(
            f"resume={run_id}: there is no such run in {uri}. Copy the id of the "
            "interrupted run from the line mnist-exp printed when it stopped, or from the "
            "MLflow UI, and give mlflow.tracking_uri=URI if its store is elsewhere."
        ) from None
    if run.info.status == "RUNNING":
        liveness.repair(client, [run.info.experiment_id], f"attributes.run_id = '{run_id}'")
        run = client.get_run(run_id)
    tags = run.data.tags
    what = f"resume={run_id} (run {run.info.run_name!r})"
    if run.info.status == "RUNNING":
        raise UserError(
            f"{what} is still RUNNING, owned by process {tags.get('owner.pid', '?')} on "
            f"{tags.get('owner.host', '?')}. Stop that process first (Ctrl-C), or wait "
            "for it to finish.")
    if run.info.status == "FINISHED":
        raise UserError(
            f"{what} FINISHED: there is nothing to continue. Run mnist-exp without resume= "
            "to train again, or mnist-exp-reproduce to check its numbers.")
    if "fold" in tags or "sweep.job_num" in tags or "sweep.overrides" in tags:
        kind = "a fold of a k-fold run: resume its parent run" if "fold" in tags else \
            "part of a sweep: run the sweep's command again with hydra.sweep.dir=<its dir>"
        raise UserError(f"{what} is {kind}.")
    recorded = _recorded_config(client, run_id, what)
    merged = _apply_overrides(cfg, recorded, context.overrides, what)
    merged["resume"] = run_id
    merged.setdefault("mlflow", {})["tracking_uri"] = uri
    typed = build_config(merged, [], f"the config recorded by run {run_id}")
    return Resumption(run_id=run_id, experiment_id=run.info.experiment_id, tracking_uri=uri,
                      cfg=typed, count=int(tags.get(RESUMED_TAG, "0")) + 1,
                      fingerprint=tags.get("data.fingerprint", ""),
                      previous_dir=Path(tags["hydra.output_dir"]) if tags.get("hydra.output_dir")
                      else None)


def _recorded_config(client: MlflowClient, run_id: str, what: str) -> Dict[str, Any]:
    from mnist_experiments.config.untrusted import parse_config

    with tempfile.TemporaryDirectory(prefix="mnist-exp-resume-") as tmp:
        try:
            path = Path(client.download_artifacts(run_id, "config.yaml", tmp))
        except (MlflowException, OSError):
            raise UserError(
                f"{what} has no config.yaml artifact: it stopped before it recorded its "
                "config, so there is nothing to continue. Run its command again.") from None
        return parse_config(path.read_text(encoding="utf-8"), f"config.yaml of run {run_id}")


def _apply_overrides(cfg: DictConfig, recorded: Dict[str, Any], overrides: List[str],
                     what: str) -> Dict[str, Any]:
    """The recorded config with the user's free overrides applied; any other override
    that changes a recorded value is refused."""
    merged = OmegaConf.create(recorded)
    for item in overrides:
        key = item.lstrip("+~").split("=", 1)[0]
        if key.startswith(("hydra", "resume")):
            continue
        new = OmegaConf.select(cfg, key, default=None)
        old = OmegaConf.select(merged, key, default=None)
        new_plain = OmegaConf.to_container(new, resolve=True) if OmegaConf.is_config(new) else new
        old_plain = OmegaConf.to_container(old, resolve=True) if OmegaConf.is_config(old) else old
        if key.startswith(FREE_PREFIXES):
            OmegaConf.update(merged, key, new_plain, force_add=True)
        elif new_plain != old_plain:
            raise ConfigError(
                f"{what}: the override {item} would change what the run trains "
                f"({key} was {_short(old_plain)}, this would make it {_short(new_plain)}), "
                "so the result would no longer be the run's. Leave it out to continue the "
                "run as it was recorded, or start a new run with it (without resume=).")
    return OmegaConf.to_container(merged, resolve=False)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def metric_steps(client: MlflowClient, run_id: str, key: str = "loss") -> int:
    """The last step of ``key`` the run holds (0: none): its epochs logged so far."""
    try:
        return max((m.step for m in client.get_metric_history(run_id, key)), default=0)
    except MlflowException:
        return 0


class RunCheckpoints(Checkpoints):
    """A run's :class:`Checkpoints`, each new state also copied (in the background) to
    the run's MLflow artifacts, and fetched from there when the Hydra dir is gone."""

    def __init__(self, output_dir: Path, run_id: str, resuming: bool = False,
                 previous_dir: Optional[Path] = None):
        super().__init__(output_dir / LOCAL_DIR, resuming=resuming, on_saved=self._upload)
        self.run_id = run_id
        self.client = MlflowClient()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlflow-checkpoint")
        self._latest: Dict[str, Any] = {}
        self.previous_root = None if previous_dir is None else previous_dir / LOCAL_DIR
        if resuming:
            self._fetch()

    def _fetch(self) -> None:
        """Put the run's last states under ``root``: from the Hydra dir of its last
        attempt if it is on this machine (with the checkpoint callback's files beside
        them), else from its MLflow artifacts."""
        previous = self.previous_root
        if previous is not None and previous.is_dir() and previous != self.root:
            shutil.copytree(previous.parent, self.root.parent, dirs_exist_ok=True)
            log.info("resuming from the states in %s", previous)
            return
        if self.root.is_dir():
            return
        with contextlib.suppress(MlflowException, OSError):
            with tempfile.TemporaryDirectory(prefix="mnist-exp-resume-") as tmp:
                fetched = Path(self.client.download_artifacts(self.run_id, ARTIFACT_DIR, tmp))
                shutil.copytree(fetched, self.root, dirs_exist_ok=True)
                log.info("resuming from the states in the run's MLflow artifacts")
                return
        log.warning("run %s kept no state to resume from: it trains from its first epoch",
                    self.run_id)

    def _upload(self, path: Path, relative: str) -> None:
        # (a state saved meanwhile replaces the file atomically: an upload reading it
        # sends one whole state, this one or the newer)
        where = ARTIFACT_DIR if relative in ("", ".") else f"{ARTIFACT_DIR}/{relative}"
        self._latest[where] = self._pool.submit(  # (the last one per path is checked)
            self.client.log_artifact, self.run_id, str(path), where)

    def close(self) -> None:
        """Wait for the uploads; a failed one is logged (the local state is kept)."""
        self._pool.shutdown(wait=True)
        for where, future in self._latest.items():
            with contextlib.suppress(Exception):
                future.result()
                continue
            log.warning("could not copy the state %s to MLflow; it is kept in %s",
                        where, self.root)

    def remove_all(self) -> None:
        """After the run FINISHED: the states here, in the last attempt's Hydra dir and
        in MLflow."""
        self.remove()
        previous = self.previous_root
        if previous is not None and previous != self.root:
            shutil.rmtree(previous, ignore_errors=True)
            with contextlib.suppress(OSError):
                previous.parent.rmdir()  # checkpoints/, unless a callback's files are there
        try:
            artifact_uri = self.client.get_run(self.run_id).info.artifact_uri
            repository = get_artifact_repository(artifact_uri)
            repository.delete_artifacts(ARTIFACT_DIR)
            if not repository.list_artifacts("checkpoints"):  # no checkpoint callback's files
                repository.delete_artifacts("checkpoints")
        except Exception as exc:  # noqa: BLE001 - a store without deletion keeps them
            log.warning("could not remove the run's resume states from MLflow (%s)",
                        str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__)
