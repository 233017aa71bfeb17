"""Every key of a config is a key of the schema, however it got there.

Hydra refuses ``train.epoch=3`` (not in the struct config), but ``+train.epoch=3`` and
``+foo=1`` *add* the key, and a hand-written config may carry any key. A key the schema
does not know is never read, so the run would silently use the default instead (the
user asked for 3 epochs and got 5). :func:`unknown_key_problems` walks a composed or
plain config against the schema (the ``optimizer`` and ``cv`` options against the
schema their registry selects) and names each unknown key with the closest valid one
(:mod:`difflib`). Fields typed as a mapping (``Dict[...]``) are free-form and not
walked; the schema has none today. The ``hydra`` node is not part of the config an app
receives (and configs from someone else may not have one, see :mod:`.untrusted`).

Light: no TensorFlow, no MLflow.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

from omegaconf import DictConfig, ListConfig, OmegaConf

from mnist_experiments.config.options import REGISTRIES
from mnist_experiments.config.registry import Registry
from mnist_experiments.config.schema import Config
from mnist_experiments.errors import ConfigError

_CUTOFF = 0.6  # difflib's default similarity for "did you mean"


def _plain(node: Any) -> Any:
    if isinstance(node, (DictConfig, ListConfig)):
        return OmegaConf.to_container(node, resolve=False, throw_on_missing=False)
    return node


def _unwrap(hint: Any) -> Any:
    """``Optional[X]`` -> ``X``."""
    if typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0] if len(args) == 1 else hint
    return hint


def _is_mapping(hint: Any) -> bool:
    return typing.get_origin(hint) in (dict, Dict, typing.Mapping) or hint in (dict, Dict)


def _list_item(hint: Any) -> Optional[type]:
    if typing.get_origin(hint) in (list, List):
        (item,) = typing.get_args(hint) or (None,)
        return item if dataclasses.is_dataclass(item) else None
    return None


def _option_schema(registry: Registry, node: Any) -> Optional[type]:
    try:
        return registry.find(node).schema
    except ConfigError:
        return None  # an unknown option is reported by the registry itself


def _walk(schema: type, node: Mapping, prefix: str) -> Iterator[Tuple[str, List[str], str]]:
    """(unknown full key, the valid keys beside it, the section's group or "")."""
    hints = typing.get_type_hints(schema)
    names = [f.name for f in dataclasses.fields(schema)]
    for key, value in node.items():
        key = str(key)
        full = f"{prefix}{key}"
        if key not in names:
            yield full, [f"{prefix}{n}" for n in names], prefix.split(".")[0]
            continue
        hint = _unwrap(hints.get(key))
        registry = next((r for r in REGISTRIES if not prefix and r.group == key), None)
        if registry is not None:
            named = value.items() if registry.many and isinstance(value, Mapping) else []
            for name, entry in [(None, value)] if not registry.many else named:
                option = _option_schema(registry, entry) if isinstance(entry, Mapping) else None
                if option is not None:
                    yield from _walk(option, entry, f"{full}.{name}." if name else f"{full}.")
        elif _is_mapping(hint):
            continue  # free-form by design
        elif dataclasses.is_dataclass(hint) and isinstance(value, Mapping):
            yield from _walk(hint, value, f"{full}.")
        elif _list_item(hint) is not None and isinstance(value, list):
            for i, element in enumerate(value):
                if isinstance(element, Mapping):
                    yield from _walk(_list_item(hint), element, f"{full}.{i}.")


def all_keys(schema: type = Config, prefix: str = "") -> List[str]:
    """Every dotted key of ``schema`` (list items as ``.0.``), each option's keys too."""
    keys: List[str] = []
    hints = typing.get_type_hints(schema)
    for f in dataclasses.fields(schema):
        full = f"{prefix}{f.name}"
        keys.append(full)
        hint = _unwrap(hints.get(f.name))
        registry = next((r for r in REGISTRIES if not prefix and r.group == f.name), None)
        if registry is not None:
            for option in registry:  # one of many sits under a name: its option's
                where = f"{full}.{option.name}." if registry.many else f"{full}."
                keys += [k for k in all_keys(option.schema, where) if k not in keys]
        elif dataclasses.is_dataclass(hint):
            keys += all_keys(hint, f"{full}.")
        elif _list_item(hint) is not None:
            keys += all_keys(_list_item(hint), f"{full}.0.")
    return keys


def _suggestion(bad: str, siblings: List[str], group: str, node: Any) -> str:
    leaf = bad.rsplit(".", 1)[-1]
    by_leaf = {s.rsplit(".", 1)[-1]: s for s in siblings}
    close = difflib.get_close_matches(leaf, list(by_leaf), n=1, cutoff=_CUTOFF)
    if close:
        return f"did you mean {by_leaf[close[0]]}?"
    registry = next((r for r in REGISTRIES if r.group == group), None)
    if registry is not None:  # a key of another option: optimizer.momentum with adam
        having = [o.name for o in registry
                  if leaf in {f.name for f in dataclasses.fields(o.schema)}]
        if having:
            current = _option_name(registry, node)
            return (f"the {group} '{current}' has no {leaf}; {', '.join(having)} "
                    f"{'has' if len(having) == 1 else 'have'} it ({group}={having[0]}).")
    # elsewhere in the schema: +epochs=3 or +epoch=3 -> train.epochs
    leaves: Dict[str, str] = {}
    for k in all_keys():
        leaves.setdefault(k.rsplit(".", 1)[-1], k)
    close = difflib.get_close_matches(leaf, list(leaves), n=1, cutoff=0.8)
    if close:
        return f"did you mean {leaves[close[0]]}?"
    return ""


def _option_name(registry: Registry, node: Any) -> str:
    section = node.get(registry.group) if isinstance(node, Mapping) else None
    try:
        return registry.find(section).name
    except ConfigError:
        return "?"


def unknown_key_problems(cfg: Any) -> List[str]:
    """One message per key of ``cfg`` that the schema does not have (none: ``[]``)."""
    node = _plain(cfg)
    if not isinstance(node, Mapping):
        return []
    node = {k: v for k, v in node.items() if k != "hydra"}  # Hydra's own, not the app's
    problems = []
    for bad, siblings, group in _walk(Config, node, ""):
        hint = _suggestion(bad, siblings, group, node)
        message = f"{bad} is not a config key" + (f"; {hint}" if hint else ".")
        registry = next((r for r in REGISTRIES if r.group == group), None)
        if registry is not None and bad.count(".") == 1:
            takes = ", ".join(s.split(".", 1)[1] for s in siblings
                              if not s.endswith(f".{registry.key}"))
            message += f" The {group} '{_option_name(registry, node)}' takes {takes}."
        elif not hint:
            where = f"under {bad.rsplit('.', 1)[0]}" if "." in bad else "at the top level"
            message += (f" The keys {where} are "
                        f"{', '.join(s.rsplit('.', 1)[-1] for s in siblings)}.")
        problems.append(message)
    return problems


def check_keys(cfg: Any, where: str = "") -> None:
    """Refuse every unknown key of ``cfg`` (with Hydra's ``+`` or without).

    Raises
    ------
    ConfigError
        Naming each unknown key and the closest valid key.
    """
    problems = unknown_key_problems(cfg)
    if problems:
        raise ConfigError(
            f"{where}Unknown config key{'s' if len(problems) > 1 else ''}: "
            + " ".join(problems)
            + " A key the schema does not know would be ignored, so it is refused (also "
            "when added with Hydra's +key=value); `mnist-exp --cfg job` shows every key."
        )
