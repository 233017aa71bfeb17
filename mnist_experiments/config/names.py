"""MLflow's rules for registered model names and aliases, written out as data.

``mlflow.register_as`` / ``mlflow.register_alias`` are used only after training, when
the model is registered; a name MLflow refuses would fail a run that has already
FINISHED. :func:`registry_problems` applies the same rules before anything runs, so
:func:`mnist_experiments.config.validation.validate` refuses the name at once.

The rules are those of MLflow 3.17 (``mlflow/utils/validation.py``:
``_validate_model_name``, ``_validate_model_alias_name``,
``_validate_model_alias_name_reserved``; the SQL store's 256-character name column; the
file store's extra refusals of ``%`` and ``\\``), the union of what its stores accept, so
that a name works in any of them. They are data here, not calls into MLflow's private
API; ``tests/test_inputs.py`` checks them against a real MLflow registry.

Light: no MLflow import.
"""

from __future__ import annotations

import posixpath
import re
from typing import Any, List, Optional

MODEL_NAME_FORBIDDEN = ("/", ":", "%", "\\")
MAX_MODEL_NAME_LENGTH = 256  # registered_models.name is VARCHAR(256)
ALIAS_PATTERN = re.compile(r"^[\w\-]+$")  # letters, digits, underscores, dashes
MAX_ALIAS_LENGTH = 255
RESERVED_ALIAS = re.compile(r"^(latest|[vV]\d+)$", re.IGNORECASE)  # "latest", "v1", ...


def model_name_problem(name: str) -> Optional[str]:
    """Why MLflow would refuse ``name`` as a registered model name, or None."""
    if not name.strip():
        return "it is empty"
    bad = [c for c in MODEL_NAME_FORBIDDEN if c in name]
    if bad:
        return f"it contains {' and '.join(repr(c) for c in bad)}"
    norm = posixpath.normpath(name)
    if norm != name or norm == "." or norm.startswith(".."):
        return f"MLflow treats names as paths and this one would resolve to {norm!r}"
    if len(name) > MAX_MODEL_NAME_LENGTH:
        return f"it has {len(name)} characters, more than {MAX_MODEL_NAME_LENGTH}"
    return None


def alias_problem(alias: str) -> Optional[str]:
    """Why MLflow would refuse ``alias`` as a registered model alias, or None."""
    if not ALIAS_PATTERN.match(alias):
        return ("it may only contain letters, digits, underscores (_) and dashes (-)"
                if alias else "it is empty")
    if RESERVED_ALIAS.match(alias):
        return "'latest' and version names such as 'v1' are reserved by MLflow"
    if len(alias) > MAX_ALIAS_LENGTH:
        return f"it has {len(alias)} characters, more than {MAX_ALIAS_LENGTH}"
    return None


def registry_problems(mlflow_cfg: Any) -> List[str]:
    """Messages for ``mlflow.register_as`` / ``register_alias`` that cannot be used."""
    problems: List[str] = []
    name = mlflow_cfg.get("register_as")
    alias = mlflow_cfg.get("register_alias")
    if name is not None:
        why = model_name_problem(str(name))
        if why:
            problems.append(
                f"mlflow.register_as={name!r} is not a name MLflow accepts for a registered "
                f"model: {why}. Use letters, digits, dots, dashes and underscores, e.g. "
                "mlflow.register_as=digits-cnn.")
        elif not mlflow_cfg.get("log_model", True):
            problems.append(
                f"mlflow.register_as={name!r} needs a logged model, but mlflow.log_model is "
                "false. Set mlflow.log_model=true or leave register_as out.")
    if alias is not None:
        why = alias_problem(str(alias))
        if why:
            problems.append(
                f"mlflow.register_alias={alias!r} is not an alias MLflow accepts: {why}. "
                "Example: mlflow.register_alias=champion.")
        elif name is None:
            problems.append(
                f"mlflow.register_alias={alias!r} names an alias, but no model is "
                "registered (mlflow.register_as is null). Give mlflow.register_as=NAME too.")
    return problems
