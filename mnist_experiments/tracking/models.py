"""Logging, finding, loading and registering the models that ``mnist-exp`` logs to MLflow.

A model is named by any of:

* a run id (32 hex digits): the model the run logged, ``runs:/<id>/model``;
* ``runs:/<run id>/<path>``;
* ``models:/<name>/<version>`` or ``models:/<name>@<alias>`` (the model registry);
* ``models:/m-<id>`` or just ``m-<id>`` (an MLflow 3 logged model);
* a local directory holding an ``MLmodel`` file (a downloaded or saved model).

:func:`load` downloads the model and loads its ``.keras`` file with Keras' safe mode
**on** (no ``lambda``/arbitrary code is deserialized, whatever the process' global
Keras setting). MLflow 3.17's Keras flavor calls ``keras.saving.load_model(path,
**load_model_kwargs)`` and never turns safe mode off; we pass ``safe_mode=True``
explicitly and also hold Keras' safe-mode scope while loading, because a global
``keras.config.enable_unsafe_deserialization()`` would otherwise win over the argument.

It also finds the run that logged the model and reads the config that run was trained
with (its ``config.yaml`` artifact): the class names for predictions and the data
config that reproduces the run's test set.

Models are logged (:func:`log_model`) with MLflow's Keras flavor, a signature and
pinned requirements, and registered (:func:`register`) under a name and an alias.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Dict, List, Optional

import mlflow
import mlflow.keras
import yaml
from mlflow.exceptions import MlflowException
from mlflow.models import Model, infer_signature
from mlflow.tracking import MlflowClient

from mnist_experiments.compat import keras_safe_mode, requirements_from_this_environment
from mnist_experiments.errors import UserError
from mnist_experiments.tracking.runs import using_tracking_uri
from mnist_experiments.tracking.store import existing_store_uri

RUN_ID_RE = re.compile(r"^[0-9a-f]{32}$")
MODEL_ID_RE = re.compile(r"^m-[0-9a-f]{32}$")
MODEL_ARTIFACT = "model"  # artifacts.log_model logs with name="model"
DEFAULT_CLASS_NAMES = [str(i) for i in range(10)]

MODEL_FORMS = (
    "a run id, runs:/<run id>/model, models:/<name>/<version>, models:/<name>@<alias>, "
    "models:/m-<model id> or a local model directory"
)


class ModelError(UserError):
    """The model cannot be found or loaded (bad id, wrong store, not a Keras model)."""

@dataclass
class LoadedModel:
    """A Keras model loaded from MLflow, with where it came from.

    Attributes
    ----------
    model : keras.Model
    spec : str
        What the user gave (e.g. a run id).
    uri : str
        The MLflow model URI (or local directory) it was loaded from.
    run_id : str or None
        The run that logged the model (from its ``MLmodel`` file).
    model_id : str or None
        The MLflow 3 logged-model id (``m-...``), if any.
    class_names : list of str
        One name per output unit: the training run's ``data.class_names`` if they
        fit, else ``"0"``, ``"1"``, ...
    run_config : dict or None
        The training run's ``config.yaml`` artifact (the composed config), if found.
    tracking_uri : str or None
        The tracking store used.
    """
    model: Any
    spec: str
    uri: str
    run_id: Optional[str] = None
    model_id: Optional[str] = None
    class_names: List[str] = field(default_factory=lambda: list(DEFAULT_CLASS_NAMES))
    run_config: Optional[Dict[str, Any]] = None
    tracking_uri: Optional[str] = None
    warnings: List[str] = field(default_factory=list)


def _named(spec: str, uri: str) -> str:
    """``'spec'``, plus the URI it resolved to if that differs."""
    return repr(str(spec)) if str(spec) == uri else f"{str(spec)!r} ({uri})"


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "message", None) or exc).strip()
    line = text.splitlines()[0].strip() if text else type(exc).__name__
    if len(line) > 400:
        line = line[:400] + "..."
    return line if line.endswith((".", "!", "?")) else line + "."


# ----------------------------------------------------------------- model URIs
def resolve_model_uri(spec: str) -> str:
    """The MLflow model URI (or local directory) for what the user wrote.

    ``<run id>`` becomes ``runs:/<run id>/model`` and ``m-<id>`` ``models:/m-<id>``;
    ``runs:/...``, ``models:/...`` and an existing directory with an ``MLmodel`` file
    are kept. Anything else raises :class:`ModelError`.
    """
    text = str(spec).strip()
    if RUN_ID_RE.match(text):
        return f"runs:/{text}/{MODEL_ARTIFACT}"
    if MODEL_ID_RE.match(text):
        return f"models:/{text}"
    if text.startswith("runs:/"):
        parts = text[len("runs:/"):].strip("/").split("/", 1)
        if not parts[0] or len(parts) == 1:
            raise ModelError(
                f"The model URI {spec!r} names no model path: write runs:/<run id>/model "
                f"(mnist-exp logs its model as 'model'), or give {MODEL_FORMS}."
            )
        return text
    if text.startswith("models:/"):
        rest = text[len("models:/"):].strip("/")
        if not rest or ("/" not in rest and "@" not in rest and not rest.startswith("m-")):
            raise ModelError(
                f"The model URI {spec!r} is incomplete: a registered model needs a version "
                "or an alias (models:/<name>/<version>, models:/<name>@<alias>); a logged "
                f"model is models:/m-<id>. Give {MODEL_FORMS}."
            )
        return text
    path = Path(text).expanduser()
    if path.is_dir() and (path / "MLmodel").is_file():
        return str(path.resolve())
    if path.exists():
        raise ModelError(
            f"{spec!r} is a local path but not an MLflow model directory (no MLmodel file "
            f"in it). Give {MODEL_FORMS}."
        )
    raise ModelError(
        f"{spec!r} is not a model reference. Give {MODEL_FORMS} (a run id is the 32 hex "
        "digits shown by mnist-exp and in the MLflow UI)."
    )


def _is_local(uri: str) -> bool:
    return "://" not in uri and ":/" not in uri


# ---------------------------------------------------------------------- loading
def load(spec: str, tracking_uri: Optional[str] = None, cwd: Optional[str] = None) -> LoadedModel:
    """Download and load a logged Keras model, with Keras' safe mode on.

    Parameters
    ----------
    spec : str
        A model reference (see the module docstring).
    tracking_uri : str, optional
        The tracking store; default ``$MLFLOW_TRACKING_URI``, else ``./mlflow.db``.
    cwd : str, optional
        The directory a relative SQLite path is resolved against (default: cwd).

    Returns
    -------
    LoadedModel

    Raises
    ------
    ModelError
        If the reference is malformed, the store or the model does not exist, the
        model is not a Keras model, or the Keras file cannot be loaded safely.
    """
    uri = resolve_model_uri(spec)
    local = _is_local(uri)
    store: Optional[str]
    if local:
        try:
            store = existing_store_uri(tracking_uri, cwd, must_exist=True)
        except UserError:  # no ./mlflow.db: a local model works without a store
            if tracking_uri:  # (default class names), but a store asked for must exist
                raise
            store = None
    else:
        store = existing_store_uri(tracking_uri, cwd, must_exist=True)

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

    where = f" in the tracking store {store}" if store else ""
    with contextlib.ExitStack() as stack:
        if store:
            stack.enter_context(using_tracking_uri(store))
        if local:
            model_dir = Path(uri)
        else:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="mnist-exp-model-"))
            try:
                model_dir = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri,
                                                                     dst_path=tmp))
            except (MlflowException, OSError) as exc:
                raise ModelError(
                    f"Cannot find the model {_named(spec, uri)}{where}: {_first_line(exc)} "
                    f"Check the reference (mlflow ui shows run ids and registered models; "
                    f"{MODEL_FORMS} are accepted) and that --tracking-uri / "
                    "$MLFLOW_TRACKING_URI names the store the model was logged to."
                ) from exc
        mlmodel = model_dir / "MLmodel"
        if not mlmodel.is_file():
            raise ModelError(
                f"{_named(spec, uri)}{where} holds no MLmodel file, so it is not a logged "
                "MLflow model (was the run trained with mlflow.log_model=false?). Give a "
                f"run that logged its model, or {MODEL_FORMS}."
            )
        try:
            meta = Model.load(str(mlmodel))
        except Exception as exc:  # malformed YAML and the like
            raise ModelError(
                f"The MLmodel file of {_named(spec, uri)} cannot be read: {_first_line(exc)} "
                "The model is damaged; log it again."
            ) from exc
        flavor = (meta.flavors or {}).get("keras")
        if flavor is None:
            raise ModelError(
                f"{_named(spec, uri)} is a model of flavor(s) "
                f"{', '.join(sorted(meta.flavors or {}))}, "
                "not a Keras model logged with mlflow.keras.log_model (as mnist-exp does). "
                "Give a model logged by mnist-exp."
            )
        if flavor.get("save_exported_model"):
            raise ModelError(
                f"{_named(spec, uri)} was logged as an exported TensorFlow SavedModel "
                "(save_exported_model=True), which cannot be used as a Keras model here. "
                "Log the model in the .keras format (mnist-exp's default)."
            )
        model = _load_keras_safely(model_dir, spec, uri)

    loaded = LoadedModel(model=model, spec=str(spec), uri=uri, run_id=meta.run_id,
                         model_id=getattr(meta, "model_id", None), tracking_uri=store)
    if store and meta.run_id:
        loaded.run_config = run_config(meta.run_id, store)
    n_out = _output_units(model)
    names = class_names_from(loaded.run_config, n_out)
    if loaded.run_config is None:
        loaded.warnings.append(
            f"The model's run has no config.yaml (or it could not be read): class names "
            f"default to 0..{n_out - 1}."
        )
    loaded.class_names = names
    return loaded


def _load_keras_safely(model_dir: Path, spec: str, uri: str) -> Any:
    """``mlflow.keras.load_model`` on a local copy, with safe mode forced on."""
    try:
        with keras_safe_mode():  # beats a global enable_unsafe_deserialization()
            return mlflow.keras.load_model(str(model_dir), load_model_kwargs={"safe_mode": True})
    except Exception as exc:
        text = str(exc)
        if "safe_mode" in text or "enable_unsafe_deserialization" in text:
            first = text.strip().split(". ")[0].strip().rstrip(".")
            raise ModelError(
                f"The Keras model of {_named(spec, uri)} contains serialized Python code, "
                f"which Keras' safe mode refuses to load ({first}). Models are only "
                "loaded with safe mode on, because loading code from a tracking store "
                "can run anything. Rebuild the model from standard Keras layers (as "
                "mnist-exp's configs do) and log it again."
            ) from exc
        raise ModelError(
            f"The Keras model of {_named(spec, uri)} cannot be loaded: {_first_line(exc)} "
            "The model file is damaged or was written by an incompatible Keras version."
        ) from exc


def _output_units(model: Any) -> int:
    try:
        return int(model.outputs[0].shape[-1])
    except Exception:  # pragma: no cover - a model without a known output shape
        return len(DEFAULT_CLASS_NAMES)


def run_config(run_id: str, tracking_uri: str) -> Optional[Dict[str, Any]]:
    """The ``config.yaml`` artifact of ``run_id`` (the composed training config), or None."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    client = MlflowClient(tracking_uri)
    with tempfile.TemporaryDirectory(prefix="mnist-exp-config-") as tmp:
        try:
            path = client.download_artifacts(run_id, "config.yaml", tmp)
            with open(path, encoding="utf-8") as fh:
                config = yaml.safe_load(fh)
        except (MlflowException, OSError, yaml.YAMLError):
            return None
    return config if isinstance(config, dict) else None


def class_names_from(config: Optional[Dict[str, Any]], n_out: int = 10) -> List[str]:
    """``data.class_names`` of a training config if there is one per output, else 0..n-1."""
    names = ((config or {}).get("data") or {}).get("class_names")
    if isinstance(names, list) and len(names) == n_out:
        return [str(n) for n in names]
    return [str(i) for i in range(n_out)]


# ----------------------------------------------------------------- registering
def register(run_id_or_uri: str, name: str, alias: Optional[str] = None,
             tracking_uri: Optional[str] = None, cwd: Optional[str] = None) -> Any:
    """Register a logged model as a new version of ``name`` (created if needed).

    Parameters
    ----------
    run_id_or_uri : str
        A run id (its ``model``), ``runs:/...``, or ``models:/m-<id>``.
    name : str
        The registered model name.
    alias : str, optional
        Point this alias (e.g. ``"champion"``) at the new version, so that
        ``models:/<name>@<alias>`` loads it.
    tracking_uri : str, optional
        The store (also used as the registry); default as for :func:`load`.

    Returns
    -------
    mlflow.entities.model_registry.ModelVersion
        With ``.name`` and ``.version``; ``models:/<name>/<version>`` loads it.

    Raises
    ------
    ModelError
        If the model cannot be found or registered, or the name or alias is invalid.
    """
    uri = resolve_model_uri(run_id_or_uri)
    if _is_local(uri):
        raise ModelError(
            f"{run_id_or_uri!r} is a local directory; register a model logged to the "
            "tracking store (a run id, runs:/<run id>/model or models:/m-<id>) instead."
        )
    store = existing_store_uri(tracking_uri, cwd, must_exist=True)

    with using_tracking_uri(store):
        try:
            version = mlflow.register_model(_logged_model_uri(uri, store), name)
            if alias:
                MlflowClient(store, registry_uri=store).set_registered_model_alias(
                    name, alias, str(version.version))
        except MlflowException as exc:
            raise ModelError(
                f"Cannot register {_named(run_id_or_uri, uri)} as {name!r}"
                f"{f' with alias {alias!r}' if alias else ''} in {store}: "
                f"{_first_line(exc)} Check the run id (its model must have been logged) "
                "and the name/alias (an alias may not look like a version, e.g. v1)."
            ) from exc
    return version


def _logged_model_uri(uri: str, store: str) -> str:
    """``runs:/<run>/<name>`` as ``models:/m-<id>`` when the run logged it as an MLflow 3
    logged model: registered by its run URI, MLflow warns that the run "has no artifacts
    at artifact path 'model'" (the model lives under the logged model) before it looks."""
    if not uri.startswith("runs:/"):
        return uri
    run_id, _, name = uri[len("runs:/"):].partition("/")
    client = MlflowClient(store)
    with contextlib.suppress(MlflowException):
        for output in reversed(client.get_run(run_id).outputs.model_outputs):
            if client.get_logged_model(output.model_id).name == name.strip("/"):
                return f"models:/{output.model_id}"
    return uri


# ------------------------------------------------------------------ logging models
def requirements() -> List[str]:
    """Pinned requirements of the logged model (inferring them costs ~10 s a run)."""
    pins = []
    for dist in ("mlflow", "keras", "tensorflow-cpu", "tensorflow", "numpy"):
        try:
            pins.append(f"{dist}=={metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            continue
    if any(p.startswith("tensorflow-cpu==") for p in pins):
        pins = [p for p in pins if not p.startswith("tensorflow==")]
    return pins


def log_model(model: Any, x_example: Any, proba_example: Any) -> Optional[str]:
    """Log ``model`` with MLflow's Keras flavor and a signature from float32 examples;
    return its ``models:/`` URI."""
    signature = infer_signature(x_example, proba_example)
    with requirements_from_this_environment():  # pinned from here: nothing to check
        info = mlflow.keras.log_model(model, name="model", signature=signature,
                                      pip_requirements=requirements())
    return getattr(info, "model_uri", None)
