"""Checking a composed config before anything is built, loaded or logged.

:func:`validate` is the one gate every command passes (``mnist-exp``, reproduce,
evaluate, grade): it types the ``optimizer`` and ``cv`` options by their registries,
refuses ``_target_`` values off the allow-list and every key the schema does not know
(:mod:`.keys`, also those added with Hydra's ``+``), checks every range rule declared on
the schema's fields (:mod:`.rules`) and the cross-field rules (the image stays at least
1x1, the parameter count stays under :data:`.capacity.MAX_PARAMETERS`, registry names
MLflow accepts, :mod:`.names`), and reports every problem at once, each naming the key,
the bad value and a fix.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, List, Optional

from omegaconf import DictConfig, ListConfig, OmegaConf

from mnist_experiments.config.callbacks import callback_problems
from mnist_experiments.config.capacity import capacity_problems, conv_output_size
from mnist_experiments.config.groups import missing_group_problems
from mnist_experiments.config.keys import check_keys
from mnist_experiments.config.names import registry_problems
from mnist_experiments.config.options import REGISTRIES
from mnist_experiments.config.rules import field_bounds, problem
from mnist_experiments.config.safety import check_targets
from mnist_experiments.config.schedule import schedule_problems
from mnist_experiments.config.schema import IMAGE_SIZE, Config
from mnist_experiments.errors import ConfigError


def field_problems(schema: type, node: Any, prefix: str = "") -> List[str]:
    """Every range rule of ``schema``'s fields (and nested sections) that ``node`` breaks."""
    problems: List[str] = []
    if not isinstance(node, DictConfig):
        return problems
    hints = typing.get_type_hints(schema)
    for f in dataclasses.fields(schema):
        if f.name not in node or OmegaConf.is_missing(node, f.name):
            continue  # a missing value is reported as missing, not as out of range
        value = node[f.name]
        key = f"{prefix}{f.name}"
        bounds = field_bounds(f)
        if bounds is not None:
            message = problem(key, getattr(value, "value", value), bounds, f.default)
            if message:
                problems.append(message)
        nested = _dataclass_of(hints.get(f.name))
        if nested is not None and isinstance(value, DictConfig):
            problems += field_problems(nested, value, f"{key}.")
        item = _list_item_dataclass(hints.get(f.name))
        if item is not None and isinstance(value, ListConfig):
            for i, element in enumerate(value):
                problems += field_problems(item, element, f"{key}.{i}.")
    return problems


def _dataclass_of(hint: Any) -> Optional[type]:
    return hint if dataclasses.is_dataclass(hint) else None


def _list_item_dataclass(hint: Any) -> Optional[type]:
    if typing.get_origin(hint) in (list, List):
        (item,) = typing.get_args(hint) or (None,)
        return item if dataclasses.is_dataclass(item) else None
    return None


def _cross_field_problems(cfg: DictConfig) -> List[str]:
    problems: List[str] = []
    names = list(cfg.data.class_names)
    if len(names) != 10:
        problems.append(f"data.class_names={names!r} is invalid: it must name exactly 10 "
                        "classes. Give one name per label 0-9.")
    m = cfg.model
    size = IMAGE_SIZE
    for i, block in enumerate(m.conv_blocks):
        new_size = conv_output_size(size, block)
        if new_size < 1:
            problems.append(
                f"model '{m.name}' shrinks the 28x28 image below 1x1 at model.conv_blocks.{i} "
                f"(a {size}x{size} input, kernel {block.kernel_size}, padding "
                f"{getattr(block.padding, 'value', block.padding)}, pool {block.pool_size} "
                f"gives {new_size}x{new_size}). Use padding=same, a smaller kernel or pool, "
                "or fewer conv blocks."
            )
            break
        size = new_size
    else:  # the image stays at least 1x1: the sizes are known, so is the cost
        problems += capacity_problems(m, cfg.train.batch_size)
    problems += registry_problems(cfg.mlflow)
    return problems


def validate(cfg: DictConfig) -> DictConfig:
    """Check ranges and cross-field rules of a composed config; type its options.

    ``cfg.optimizer`` and ``cfg.cv`` are replaced by their typed versions (the schema
    their ``_target_`` / ``name`` selects), so an option from a user's own config dir
    is checked exactly like a packaged one.

    Returns
    -------
    DictConfig
        ``cfg`` itself.

    Raises
    ------
    ConfigError
        Naming every bad value and how to fix it. Nothing has been built or logged.
    """
    check_targets(cfg)
    missing = missing_group_problems(cfg)
    if missing:
        raise ConfigError("Invalid config: " + " ".join(missing))
    check_keys(cfg)  # +train.epoch=3 would be ignored: refused, with train.epochs suggested
    problems: List[str] = []
    for registry in REGISTRIES:  # each option typed by the schema it selects
        setattr(cfg, registry.group, registry.typed(cfg.get(registry.group)))
    problems += field_problems(Config, cfg)
    for registry in REGISTRIES:
        for path, option, node in registry.entries(cfg.get(registry.group)):
            problems += field_problems(option.schema, node, f"{path}.")
    problems += schedule_problems(cfg.schedule) + callback_problems(cfg)
    if not problems:  # the shapes are only meaningful once the sizes are
        problems += _cross_field_problems(cfg)
    if problems:
        raise ConfigError("Invalid config: " + " ".join(problems))
    return cfg
