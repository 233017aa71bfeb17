"""The config groups a run is made of, and the overrides that would remove one.

``optimizer=null`` (or ``model=null``, ``data=null``) makes Hydra 1.3 raise a bare
``ValueError`` ("Config group override must be a string or a list") from inside its
defaults list, before any app code runs, which reaches the user as a traceback; and
``~optimizer`` composes a config without an optimizer. :func:`check_group_overrides`
refuses the first kind on a command line before Hydra sees it, and
:func:`missing_group_problems` the second in a composed config, each naming the group
and its options.

Light: reads the packaged ``conf/`` directory listing only.
"""

from __future__ import annotations

from importlib import resources
from typing import Any, List, Optional, Sequence

import yaml
from omegaconf import DictConfig, OmegaConf

from mnist_experiments.errors import ConfigError

CONFIG_PACKAGE = "mnist_experiments.conf"
# Every run needs one option of each of these; the others are off unless chosen.
REQUIRED_GROUPS = ("data", "model", "optimizer", "cv", "schedule", "callbacks", "augment",
                   "viz")
OPTIONAL_GROUPS = ("experiment", "hparams_search", "debug")
_NULLS = ("null", "NULL", "Null")


def group_options(group: str) -> List[str]:
    """The packaged options of ``group`` (``conf/<group>/*.yaml``)."""
    try:
        folder = resources.files(CONFIG_PACKAGE).joinpath(group)
        return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))
    except (FileNotFoundError, NotADirectoryError):
        return []


def default_option(group: str) -> Optional[str]:
    """The option ``conf/config.yaml``'s defaults list chooses for ``group``."""
    try:
        text = resources.files(CONFIG_PACKAGE).joinpath("config.yaml").read_text()
        defaults = yaml.safe_load(text).get("defaults") or []
    except (OSError, yaml.YAMLError, AttributeError):
        return None
    chosen = [d[group] for d in defaults if isinstance(d, dict) and group in d]
    return chosen[0] if chosen and isinstance(chosen[0], str) else None


def _needs_one(group: str, what: str) -> str:
    options = group_options(group)
    default = default_option(group)
    return (f"{what}: every run needs one option of the {group} group: "
            f"{', '.join(options)} (e.g. {group}={default or options[0]}"
            f"{', the default' if default else ''}). Leave {group} out for the default; "
            f"your own options go in --config-dir DIR as DIR/{group}/NAME.yaml.")


def null_group_problem(override: str) -> str:
    """The message for one ``GROUP=null`` override, or "" if it is something else."""
    key, sep, value = override.partition("=")
    group = key.lstrip("+~")
    if not sep or value.strip() not in _NULLS or key.startswith("~"):
        return ""
    if group in REQUIRED_GROUPS:
        return _needs_one(group, f"{group}=null cannot be used")
    if group in OPTIONAL_GROUPS:
        return (f"{group}=null cannot be used: {group} is off unless you choose one of "
                f"{', '.join(group_options(group))}; leave it out (or write ~{group}).")
    return ""


def check_group_overrides(overrides: Sequence[str]) -> None:
    """Refuse ``GROUP=null`` among command-line ``overrides`` (flags are skipped).

    Raises
    ------
    ConfigError
        Naming the group and its options.
    """
    problems = [p for p in (null_group_problem(o) for o in overrides
                            if not o.startswith("-")) if p]
    if problems:
        raise ConfigError(" ".join(problems))


def missing_group_problems(cfg: Any) -> List[str]:
    """A message per required section that a composed config lacks (``~optimizer``)."""
    problems: List[str] = []
    for group in ("data", "model", "optimizer", "cv"):
        if isinstance(cfg, DictConfig):
            absent = group not in cfg or OmegaConf.is_missing(cfg, group) or cfg[group] is None
        else:
            absent = not isinstance(cfg, dict) or cfg.get(group) in (None, "???")
        if absent:
            problems.append(_needs_one(group, f"the config has no {group}"))
    return problems
