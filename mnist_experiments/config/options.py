"""Every option registry of this package, in one list.

The ``_target_`` allow-list (:mod:`.safety`) is the union of their targets, and
:func:`mnist_experiments.config.schema.register_configs` stores all their schemas.
A new kind of option adds its module here.
"""

from __future__ import annotations

from typing import List, Optional

from mnist_experiments.config.augment import AUGMENTATIONS
from mnist_experiments.config.callbacks import CALLBACKS
from mnist_experiments.config.cv import CROSS_VALIDATION
from mnist_experiments.config.optimizer import OPTIMIZERS
from mnist_experiments.config.registry import Registry
from mnist_experiments.config.schedule import SCHEDULES

REGISTRIES: List[Registry] = [OPTIMIZERS, CROSS_VALIDATION, SCHEDULES, CALLBACKS,
                               AUGMENTATIONS]


def allowed_targets() -> List[str]:
    """Every ``_target_`` a config may name."""
    return sorted(t for registry in REGISTRIES for t in registry.targets)


def registry_for(group: str) -> Optional[Registry]:
    return next((r for r in REGISTRIES if r.group == group), None)
