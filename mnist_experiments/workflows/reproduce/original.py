"""The original of a reproduction: where its config is, and what is known about it.

RUN is an MLflow run id, a Hydra run dir (holding ``.hydra/config.yaml``) or a config
file (the full composed config, e.g. a run's downloaded ``config.yaml``, optionally
with ``data.json``, ``overrides.yaml`` and a submitted ``metrics.json`` beside it).
:func:`locate` reads the files; :func:`attach_store` fills in the original run's
tags, metrics and experiment from the tracking store. Every file is someone else's:
read size-capped and parsed with a safe loader.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from mnist_experiments.config.untrusted import MAX_CONFIG_BYTES, read_text
from mnist_experiments.errors import UserError
from mnist_experiments.tracking.preflight import check_store
from mnist_experiments.tracking.store import sqlite_file
from mnist_experiments.workflows.reproduce.verdict import is_compared

log = logging.getLogger("mnist_experiments.workflows.reproduce")


RUN_ID = re.compile(r"^[0-9a-f]{32}$")
# Keys of the config that shape the data split (not which files are read).
SPLIT_KEYS = ("limit", "validation", "val_fraction")
def warn(message: str) -> None:
    print(f"WARNING: {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------- the original
@dataclass
class Original:
    """What is known about the run being reproduced."""
    kind: str  # "run" | "run_dir" | "config_file"
    given: str  # RUN as given: a run id or an absolute path
    config_text: str
    config_where: str  # where the config was read from (for messages)
    run_id: Optional[str] = None
    experiment_name: Optional[str] = None
    tags: Dict[str, str] = field(default_factory=dict)
    metrics: Dict[str, float] = field(default_factory=dict)
    overrides: List[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        """The value of the new run's ``reproduces`` tag."""
        return self.run_id or self.given

    @property
    def data_fingerprint(self) -> Optional[str]:
        return self.tags.get("data.fingerprint")

    @property
    def data_source(self) -> Optional[str]:
        return self.tags.get("data.source")


def _safe_yaml(text: str) -> Any:
    """Plain data from YAML text: safe loader, no aliases (a YAML bomb), or None."""
    try:
        if any(isinstance(e, yaml.AliasEvent) for e in yaml.parse(text, Loader=yaml.SafeLoader)):
            return None
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return None


def _overrides_from(path: Path) -> List[str]:
    """The override list of an ``overrides.yaml`` (a Hydra list or ``{overrides: [...]}``)."""
    if not path.is_file() or path.stat().st_size > MAX_CONFIG_BYTES:
        return []
    data = _safe_yaml(path.read_text(encoding="utf-8", errors="replace"))
    if isinstance(data, dict):
        data = data.get("overrides")
    if isinstance(data, list) and all(isinstance(o, str) for o in data):
        return list(data)
    return []


def _small_json(path: Path) -> Any:
    """The JSON in ``path``, or None when it is missing, too large or not JSON."""
    if not path.is_file() or path.stat().st_size > MAX_CONFIG_BYTES:
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None


def _data_tags_from(path: Path) -> Dict[str, str]:
    """``data.fingerprint`` / ``data.source`` from a run's ``data.json`` artifact."""
    data = _small_json(path)
    tags = {}
    if isinstance(data, dict):
        if isinstance(data.get("fingerprint"), str):
            tags["data.fingerprint"] = data["fingerprint"]
        if isinstance(data.get("source"), str):
            tags["data.source"] = data["source"]
    return tags


def _metrics_from(path: Path) -> Dict[str, float]:
    """A flat ``{"test_accuracy": 0.98, ...}`` JSON file submitted beside a config."""
    data = _small_json(path)
    if not isinstance(data, dict):
        return {}
    return {
        str(k): float(v) for k, v in data.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and is_compared(str(k))
    }


def locate(run: str) -> Original:
    """Read the config (and what files say about the original) for a run dir or file.

    A run id is only recognised here; its config is read from the tracking store by
    :func:`attach_store`.
    """
    path = Path(run).expanduser()
    if path.is_dir():
        path = path.absolute()
        hydra_cfg = path / ".hydra" / "config.yaml"
        if hydra_cfg.is_file():
            original = Original("run_dir", str(path), read_text(hydra_cfg, "config"),
                                str(hydra_cfg), overrides=_overrides_from(
                                    path / ".hydra" / "overrides.yaml"))
            return original
        if (path / "config.yaml").is_file():  # e.g. `mlflow artifacts download` of a run
            return _from_config_file(path / "config.yaml")
        raise UserError(
            f"{path} is a directory but neither a Hydra run dir (no .hydra/config.yaml) nor "
            "a directory of run artifacts (no config.yaml). Give a run id, a run dir such as "
            "outputs/runs/<time>, or a config.yaml file."
        )
    if path.is_file():
        path = path.absolute()
        if path.parent.name == ".hydra" and path.name == "config.yaml":
            return locate(str(path.parent.parent))
        return _from_config_file(path)
    if RUN_ID.match(run.strip().lower()):
        return Original("run", run.strip().lower(), "", "")
    raise UserError(
        f"{run!r} is neither an existing file or directory nor an MLflow run id (32 hex "
        "digits). Give a run id (see `mlflow ui`), a Hydra run dir such as "
        "outputs/runs/<time>, or a config.yaml file."
    )


def _from_config_file(path: Path) -> Original:
    """A config file, with ``data.json`` / ``overrides.yaml`` / ``metrics.json`` beside it."""
    folder = path.parent
    original = Original("config_file", str(path), read_text(path, "config file"), str(path),
                        overrides=_overrides_from(folder / "overrides.yaml"))
    original.tags.update(_data_tags_from(folder / "data.json"))
    original.metrics.update(_metrics_from(folder / "metrics.json"))
    return original


# -------------------------------------------------------------- tracking store
def _client(uri: str, required: bool):
    """An MlflowClient on ``uri``, or None when a local store does not exist (yet)."""
    db = sqlite_file(uri)
    if db is not None and not db.is_file():
        if required:
            raise UserError(
                f"There is no MLflow tracking store at {db} (tracking URI {uri}). Run "
                f"mnist-exp-reproduce where the run's mlflow.db is, or pass --tracking-uri "
                "sqlite:////abs/path/mlflow.db (or http://host:5000, or set "
                "$MLFLOW_TRACKING_URI)."
            )
        return None
    check_store(uri, create=False, write=False)  # seconds, not MLflow's minutes of retries
    return MlflowClient(uri)


def _download_text(client: Any, run_id: str, name: str) -> Optional[str]:
    """The text of one small artifact of a run, or None if it has none."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = Path(client.download_artifacts(run_id, name, tmp))
        except Exception:  # missing artifact, unreachable artifact store
            return None
        if not local.is_file():
            return None
        return read_text(local, f"artifact {name} of run {run_id}")


def _run_details(client: Any, run: Any, original: Original) -> None:
    original.run_id = run.info.run_id
    original.tags.update(run.data.tags)
    original.metrics.update({k: v for k, v in run.data.metrics.items() if is_compared(k)})
    experiment = client.get_experiment(run.info.experiment_id)
    original.experiment_name = experiment.name if experiment else None
    if run.info.status != "FINISHED":
        warn(f"the original run {run.info.run_id} has status {run.info.status}, not FINISHED.")


def attach_store(original: Original, uri: str) -> None:
    """Fill in the original run from the tracking store (run id or run dir)."""
    if original.kind == "run":
        client = _client(uri, required=True)
        try:
            run = client.get_run(original.given)
        except MlflowException as exc:
            raise UserError(
                f"There is no run {original.given} in the MLflow tracking store {uri} "
                f"({str(exc).splitlines()[0]}). Pass the store that holds it with "
                "--tracking-uri (or $MLFLOW_TRACKING_URI), or give a run dir or config file."
            ) from None
        text = _download_text(client, original.given, "config.yaml")
        if text is None:
            parent = run.data.tags.get("mlflow.parentRunId")
            hint = (f"It is a child run (e.g. one fold) of run {parent}: reproduce that run. "
                    if parent else "")
            raise UserError(
                f"Run {original.given} has no config.yaml artifact (the composed config "
                f"logged by mnist-exp), so it cannot be reproduced. {hint}Give its Hydra run "
                "dir or a config file instead."
            )
        original.config_text = text
        original.config_where = f"config.yaml of run {original.given}"
        overrides_text = _download_text(client, original.given, "overrides.yaml")
        if overrides_text is not None:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "overrides.yaml"
                path.write_text(overrides_text, encoding="utf-8")
                original.overrides = _overrides_from(path)
        _run_details(client, run, original)
        return

    if original.kind != "run_dir":
        return
    client = _client(uri, required=False)
    if client is None:
        log.info("no tracking store at %s: no original run to compare with", uri)
        return
    candidates = {original.given, os.path.realpath(original.given)}
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = []
    for candidate in candidates:
        if "'" in candidate:  # cannot be quoted in a filter string; no run is found
            continue
        if experiments:
            runs += client.search_runs(
                experiments, filter_string=f"tags.`hydra.output_dir` = '{candidate}'",
                order_by=["attributes.start_time DESC"],
            )
    if not runs:
        log.info("no run in %s has hydra.output_dir=%s: no original metrics", uri,
                 original.given)
        return
    found = {r.info.run_id for r in runs}  # a k-fold parent's children are not the result
    runs = [r for r in runs if r.data.tags.get("mlflow.parentRunId") not in found]
    runs.sort(key=lambda r: r.info.start_time or 0, reverse=True)
    if len({r.info.run_id for r in runs}) > 1:
        warn(f"{len(runs)} runs record the output dir {original.given}; comparing with the "
             f"latest, {runs[0].info.run_id}.")
    _run_details(client, runs[0], original)
    logged = _download_text(client, runs[0].info.run_id, "config.yaml")
    if logged is not None and _safe_yaml(logged) != _safe_yaml(original.config_text):
        warn(f"the run dir's .hydra/config.yaml differs from the config.yaml logged with run "
             f"{runs[0].info.run_id}; reproducing the run dir's config.")


