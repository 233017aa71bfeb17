"""One registry per kind of option: the single source of what a config may choose.

A kind of option (optimizers; cross-validation schemes; later schedules, callbacks,
augmentation layers, sweepers) is a config group of ``conf/``. Its :class:`Registry`
lists the options, each with the structured-config schema that types it. Everything
else is derived from the registries, so a new option is one entry (plus its YAML):

- the schemas stored in Hydra's ConfigStore as ``schema/<group>/<name>``
  (:func:`mnist_experiments.config.schema.register_configs`), which the YAML files of
  the group use in their defaults list;
- the ``_target_`` allow-list (:mod:`mnist_experiments.config.safety`);
- the typed check of an option from any source: a packaged YAML file, a user's own
  ``--config-dir`` option, or an untrusted config given to reproduce or grade. The
  option is typed by the schema its ``_target_`` (or ``name``) selects, so a user's
  ``my_conf/optimizer/nadam.yaml`` with ``_target_: keras.optimizers.Nadam`` is checked
  like a packaged one, in every command, with the same message;
- the error messages that list the choices.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from mnist_experiments.errors import ConfigError


@dataclass(frozen=True)
class Option:
    """One choice of a config group: its name and the dataclass that types it."""
    name: str
    schema: type

    def key_value(self, key: str) -> Any:
        """The schema's default for ``key`` (the ``_target_`` or ``name`` it is chosen by)."""
        return {f.name: f.default for f in dataclasses.fields(self.schema)}[key]


class Registry:
    """The options of one config group, looked up by ``key`` (``_target_`` or ``name``).

    Parameters
    ----------
    group : str
        The config group (``optimizer``), also the config key the option sits under.
    options : sequence of Option
    key : str
        The field that says which option a config node is: ``_target_`` for options
        that Hydra instantiates, ``name`` for the others.
    default : str, optional
        The option a recorded config that predates the group is read with (its
        absence then means what the group's default means); None: the group is
        required in every config.
    many : bool
        The group's section is a mapping of any number of options, each under a name
        of its own (``callbacks.early_stopping``); absent, it is empty.
    """
    def __init__(self, group: str, options: Sequence[Option], key: str = "_target_",
                 default: Optional[str] = None, many: bool = False):
        self.group = group
        self.key = key
        self.default = default
        self.many = many
        self.options: Dict[str, Option] = {o.name: o for o in options}
        self._by_key = {o.key_value(key): o for o in options}

    def __iter__(self) -> Iterator[Option]:
        return iter(self.options.values())

    @property
    def names(self) -> List[str]:
        return list(self.options)

    @property
    def targets(self) -> List[str]:
        """The ``_target_`` values this registry allows (none for a ``name``-keyed one)."""
        return list(self._by_key) if self.key == "_target_" else []

    def choices(self) -> str:
        """``rmsprop|adam|...``: for messages."""
        return "|".join(self.names)

    @property
    def required(self) -> bool:
        """Whether every config must have this group's section."""
        return self.default is None and not self.many

    def find(self, node: Any, where: str = "", path: str = "") -> Option:
        """The option that ``node`` (a mapping) selects with its ``key``; ``path`` is
        where it sits (the group, or ``callbacks.<name>`` for one of many).

        Raises
        ------
        ConfigError
            When ``node`` is not a mapping with a known ``key``.
        """
        path = path or self.group
        value = node.get(self.key) if isinstance(node, Mapping) or hasattr(node, "get") else None
        option = self._by_key.get(value) if isinstance(value, str) else None
        if option is None:
            shown = _plain(node)
            known = ", ".join(sorted(str(k) for k in self._by_key))
            described = (f"{path}.{self.key}={value!r}" if isinstance(value, str)
                         else f"{path}={shown!r}")
            raise ConfigError(
                f"{where}{described} is not a known {self.group}: its {self.key} must be one "
                f"of {known}. Choose one with {self.group}={self.choices()}, or add an "
                f"option to mnist_experiments/config/{self.group}.py."
            )
        return option

    def typed(self, node: Any, where: str = "") -> Any:
        """``node`` merged onto its option's schema: unknown keys and wrong types refused.
        A missing ``node`` is the registry's ``default`` option, if it has one; for a
        registry of ``many``, each entry of the mapping is typed (missing: empty)."""
        if not self.many:
            if node is None and self.default is not None:
                node = {self.key: self.options[self.default].key_value(self.key)}
            return self._typed_one(node, where, self.group)
        if node is None:
            return OmegaConf.create({})
        if not (isinstance(node, Mapping) or isinstance(node, DictConfig)):
            raise ConfigError(
                f"{where}{self.group}={_plain(node)!r} is not a mapping of named "
                f"{self.group}: choose options with {self.group}=[{','.join(self.names)}] "
                f"or {self.group}=none.")
        return OmegaConf.create({str(name): self._typed_one(entry, where, f"{self.group}.{name}")
                                 for name, entry in node.items()})

    def _typed_one(self, node: Any, where: str, path: str) -> Any:
        option = self.find(node, where, path)
        try:
            return OmegaConf.merge(OmegaConf.structured(option.schema), node)
        except OmegaConfBaseException as exc:
            key = getattr(exc, "full_key", None) or getattr(exc, "key", None) or ""
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            allowed = ", ".join(f.name for f in dataclasses.fields(option.schema)
                                if f.name != self.key)
            raise ConfigError(
                f"{where}{path}.{key}: {first}. The {self.group} '{option.name}' takes "
                f"{allowed}; unknown keys and wrong types are refused."
            ) from None

    def entries(self, node: Any) -> Iterator[Any]:
        """(path, option, node) of a typed section: one, or each of ``many``."""
        if self.many:
            for name, entry in (node or {}).items():
                yield f"{self.group}.{name}", self.find(entry), entry
        else:
            yield self.group, self.find(node), node

    def store(self, config_store: Any) -> None:
        """Register every option's schema as ``schema/<group>/<name>`` in Hydra's ConfigStore."""
        for option in self:
            config_store.store(group=f"schema/{self.group}", name=option.name, node=option.schema)


def _plain(node: Any) -> Any:
    if isinstance(node, DictConfig):
        return OmegaConf.to_container(node, resolve=False)
    return node
