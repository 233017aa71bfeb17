"""Safe instantiation: a config from someone else must not be able to run code.

Hydra's ``instantiate`` imports and calls whatever ``_target_`` names. Every
``_target_`` in a config this framework runs must therefore be on an allow-list: the
targets of the option registries (:mod:`mnist_experiments.config.options`). :func:`check_targets` walks the whole config
*before* anything is built and refuses any other target; nothing it names is imported.
"""

from __future__ import annotations

from typing import Any, Iterator, Tuple

from omegaconf import DictConfig, ListConfig, OmegaConf

from mnist_experiments.config.options import REGISTRIES, allowed_targets
from mnist_experiments.errors import ConfigError

# Derived from the option registries: a new option there is allowed here.
ALLOWED_TARGETS = frozenset(allowed_targets())


def _walk(node: Any, path: str) -> Iterator[Tuple[str, str, Any]]:
    """Yield (parent path, key, value) for every mapping entry in a plain container."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield path, str(key), value
            yield from _walk(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}.{i}" if path else str(i))


def check_targets(cfg: Any) -> None:
    """Refuse any ``_target_`` that is not on the allow-list, without importing it.

    Raises
    ------
    ConfigError
        Naming the key and the refused target.
    """
    if isinstance(cfg, (DictConfig, ListConfig)):
        # Unresolved on purpose: an interpolated target is refused, not evaluated.
        cfg = OmegaConf.to_container(cfg, resolve=False, throw_on_missing=False)
    for parent, key, value in _walk(cfg, ""):
        if key != "_target_":
            continue
        where = f"{parent}._target_" if parent else "_target_"
        if not isinstance(value, str) or value not in ALLOWED_TARGETS:
            allowed = ", ".join(sorted(ALLOWED_TARGETS))
            raise ConfigError(
                f"Refusing {where}={value!r}: only these targets may be instantiated from a "
                f"config: {allowed}. A config that names anything else could run arbitrary "
                "code, so nothing was imported, built or logged. Remove that key or choose "
                f"an option with {_choices()}."
            )


def safe_instantiate(node: Any, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` after :func:`check_targets` has accepted ``node``."""
    from hydra.utils import instantiate

    check_targets(node)
    return instantiate(node, **kwargs)


def _choices() -> str:
    return " or ".join(f"{r.group}={r.choices()}" for r in REGISTRIES if r.targets)
