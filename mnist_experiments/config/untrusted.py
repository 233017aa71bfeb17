"""Configs from someone else: read, parse and type them without trusting them.

A student submits a config; a grader runs it. Before anything it names is imported,
built, loaded or logged, the text is read with a size cap, parsed with a safe loader
(no Python tags, no YAML aliases), refused if it configures Hydra (``hydra:``,
``defaults:``), names a ``_target_`` off the allow-list or holds ``${...}``
interpolations, then merged onto the typed schema (unknown keys and wrong types
refused, each option typed by its registry) and validated like any composed config.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Dict, Iterator, Sequence, Tuple

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from mnist_experiments.config.keys import check_keys
from mnist_experiments.config.options import REGISTRIES
from mnist_experiments.config.safety import check_targets
from mnist_experiments.config.schema import Config
from mnist_experiments.config.validation import validate
from mnist_experiments.errors import ConfigError, UserError

MAX_CONFIG_BYTES = 1_000_000  # a composed config is a few kB


def read_text(path: Path, what: str) -> str:
    """A small UTF-8 text file written by someone else (size-capped)."""
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(
                f"{what} {path} is {size} bytes; a composed config is a few kilobytes, so it "
                f"is refused (limit {MAX_CONFIG_BYTES} bytes). Give the run's config.yaml."
            )
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} {path} is not UTF-8 text ({exc}). Give a YAML file.") from exc
    except OSError as exc:
        raise UserError(f"Cannot read {what} {path}: {exc.strerror or exc}.") from exc


def _walk(node: Any, path: str = "") -> Iterator[Tuple[str, Any]]:
    """(dotted path, value) of every leaf and container in plain data."""
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}.{i}" if path else str(i))


def parse_config(text: str, where: str) -> Dict[str, Any]:
    """Plain data from a config's YAML text, refusing anything but plain values.

    Raises
    ------
    ConfigError
        For invalid YAML, Python tags, aliases, or a top level that is not a mapping.
    """
    if len(text.encode("utf-8")) > MAX_CONFIG_BYTES:
        raise ConfigError(f"The config {where} is larger than {MAX_CONFIG_BYTES} bytes; refused.")
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                raise ConfigError(
                    f"The config {where} uses a YAML alias (*{event.anchor}); a composed "
                    "config never does, and aliases can blow up in memory, so it is refused. "
                    "Write the values out."
                )
        # OmegaConf's loader is PyYAML's SafeLoader: Python tags (!!python/...) fail here.
        node = OmegaConf.create(text)
    except ConfigError:
        raise
    except Exception as exc:  # yaml.YAMLError, or OmegaConf's own parse errors
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"The config {where} is not plain YAML ({type(exc).__name__}: {first}). Only "
            "plain mappings, lists and scalars are accepted (no !!python tags); give the "
            "config.yaml that a run logged."
        ) from exc
    container = OmegaConf.to_container(node, resolve=False)
    if not isinstance(container, dict):
        raise ConfigError(
            f"The config {where} is a {type(container).__name__}, not a mapping of sections "
            "(seed, data, model, optimizer, cv, train, mlflow, viz)."
        )
    return container


def check_plain(container: Dict[str, Any], where: str) -> None:
    """Refuse what could run code or read the environment, before any schema merge.

    A ``hydra:`` or ``defaults:`` section, a ``_target_`` off the allow-list anywhere,
    and ``${...}`` interpolations (resolvers such as ``oc.env`` would read this
    machine's environment into the logged params) are refused.
    """
    for key in ("hydra", "defaults"):
        if key in container:
            raise ConfigError(
                f"Refusing the config {where}: it has a top-level '{key}:' section. A "
                "reproduction runs the composed config without Hydra, so it must not "
                "configure Hydra (callbacks, launchers, sweepers, output dirs or a defaults "
                f"list could run code or change what is composed). Remove the '{key}' "
                "section; a run's config.yaml and .hydra/config.yaml never have one."
            )
    for path, value in _walk(container):
        if not isinstance(value, dict):
            continue
        for key in value:
            if not isinstance(key, str):
                raise ConfigError(
                    f"Refusing the config {where}: key {key!r} under '{path or '<top>'}' is "
                    "not a string."
                )
    try:
        check_targets(container)
    except ConfigError as exc:
        raise ConfigError(f"In the config {where}: {exc}") from None
    for path, value in _walk(container):
        if isinstance(value, str) and "${" in value:
            raise ConfigError(
                f"Refusing the config {where}: {path}={value!r} is an interpolation. A "
                "composed config is fully resolved, and resolvers such as ${{oc.env:...}} "
                "would read this machine's environment into the logged run. Replace it by "
                "its value."
            )


def _omegaconf_problem(exc: Exception, prefix: str = "") -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    key = getattr(exc, "full_key", None)
    if key:
        return f"{prefix}{key}: {first}"
    return f"{prefix.rstrip('.') + ': ' if prefix else ''}{first}"


def build_config(container: Dict[str, Any], overrides: Sequence[str], where: str):
    """The typed, validated config: ``container`` with ``overrides`` applied.

    Every check runs before anything the config names is imported or built: the plain
    checks of :func:`check_plain` (on the file, then with the overrides), the typed
    schema (:class:`~mnist_experiments.config.schema.Config`, each option typed by its
    registry), then :func:`~mnist_experiments.config.validation.validate`, the same
    checks as ``mnist-exp``'s.

    Raises
    ------
    ConfigError
    """
    check_plain(container, where)
    if overrides:
        merged = OmegaConf.create(copy.deepcopy(container))
        for item in overrides:
            key = item.split("=", 1)[0]
            if "=" not in item or not key or key[0] in "+~" or key.startswith("hydra"):
                raise ConfigError(
                    f"--override {item!r} is not KEY=VALUE for a key of the composed config "
                    "(Hydra's +key, ~key and hydra.* forms are not accepted). Example: "
                    "--override seed=7 or --override optimizer.learning_rate=0.01."
                )
            try:
                merged = OmegaConf.merge(merged, OmegaConf.from_dotlist([item]))
            except OmegaConfBaseException as exc:
                raise ConfigError(
                    f"--override {item!r} cannot be applied: {_omegaconf_problem(exc)}."
                ) from None
        container = OmegaConf.to_container(merged, resolve=False)
        where = f"{where} with --override {' '.join(overrides)}"
        check_plain(container, where)

    # the same refusal of unknown keys as mnist-exp's, before the schema merge
    check_keys(container, where=f"In the config {where}: ")
    body = dict(container)
    options = {registry.group: body.pop(registry.group, None) for registry in REGISTRIES}
    try:
        cfg = OmegaConf.merge(OmegaConf.structured(Config), body)
    except OmegaConfBaseException as exc:
        raise ConfigError(
            f"The config {where} does not match the schema: {_omegaconf_problem(exc)}. "
            "Unknown keys and wrong types are refused; give the config.yaml that a run "
            "logged (or fix the value)."
        ) from None
    for registry in REGISTRIES:
        if options[registry.group] is None and registry.required:
            raise ConfigError(f"The config {where} is incomplete: {registry.group} is missing. "
                              "Give the full composed config (a run's config.yaml or "
                              ".hydra/config.yaml).")
        # the same typed check as mnist-exp's (config.validation): the schema the
        # option's _target_ or name selects, whichever YAML file it came from
        setattr(cfg, registry.group, registry.typed(options[registry.group],
                                                    where=f"In the config {where}: "))
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(
            f"The config {where} is incomplete: {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} missing. Give the full composed config "
            "(a run's config.yaml or .hydra/config.yaml)."
        )
    try:
        validate(cfg)  # ranges, cross-field rules and (again) the _target_ allow-list
    except ConfigError as exc:
        raise ConfigError(f"In the config {where}: {exc}") from None
    return cfg
