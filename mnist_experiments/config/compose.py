"""Composing a config the way ``mnist-exp`` does, from code (Hydra's Compose API).

Evaluate and grade compose configs from overrides with the packaged ``conf/`` and the
same schema, so an override means what it means for ``mnist-exp``.
"""

from __future__ import annotations

import re
from typing import Any, Optional, Sequence

from hydra import compose, initialize_config_module
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from mnist_experiments.config.groups import check_group_overrides
from mnist_experiments.config.schema import register_configs
from mnist_experiments.config.validation import validate
from mnist_experiments.errors import ConfigError, UserError

CONFIG_MODULE = "mnist_experiments.conf"


def hydra_value(value: Any) -> str:
    """``value`` written as a Hydra override value (strings quoted and escaped)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    text = str(value)
    # Hydra: a backslash is an escape only before a quote (or the closing quote).
    text = re.sub(r"(\\+)(?='|$)", lambda m: m.group(1) * 2, text)
    text = text.replace("'", "\\'").replace("${", "\\${")
    return f"'{text}'"


def compose_config(overrides: Sequence[str], user: Optional[Sequence[str]] = None) -> Any:
    """The config ``mnist-exp`` would compose for ``overrides`` (Hydra's Compose API).

    ``user`` (default: all of ``overrides``) are the overrides the user typed, shown
    in the error message if composition fails.
    """
    register_configs()
    check_group_overrides(overrides)  # data=null: Hydra's bare ValueError otherwise

    try:
        with initialize_config_module(CONFIG_MODULE, version_base="1.3"):
            cfg = compose(config_name="config", overrides=list(overrides))
    except UserError:
        raise
    except (HydraException, OmegaConfBaseException, ValueError) as exc:
        message = " ".join(str(exc).split())
        message = re.sub(r"\s*To append to your config use \+\S+", "", message)
        message = re.sub(r"\s*Config search path:.*$", "", message)
        cause = exc.__cause__ or exc.__context__
        if cause is not None:
            detail = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
            if detail and detail not in message:
                message = f"{message.rstrip('.')}: {detail}"
        shown = list(overrides if user is None else user)
        extra = "" if user is None or len(shown) == len(overrides) else (
            " (applied to the model run's data config)")
        raise ConfigError(
            f"The data overrides {' '.join(shown) or '(none)'}{extra} do not compose: "
            f"{message.rstrip('.')}. "
            "Allowed: data=mnist|fashion_mnist|digits, data.name, data.path, "
            "data.validation, data.val_fraction, data.limit, data.class_names, seed."
        ) from exc
    validate(cfg)
    return cfg
