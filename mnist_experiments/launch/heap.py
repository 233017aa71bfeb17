"""Python's cyclic garbage collector and the heavy imports.

Importing TensorFlow, Keras and MLflow creates about a million long-lived objects
(modules, functions, classes). Python's cyclic collector walks every tracked object on
each full collection, and the allocations of the imports themselves trigger about ten of
them, each slower than the last as the heap grows: measured on a student-sized run (2
cores), 1.1 s of full collections before the first epoch, and 0.45 s more in the run and
0.6 s in the forked child that draws figures, which inherits the heap. None of it finds
garbage worth the time (a few hundred objects each).

:func:`heavy_imports` pauses the collector during such an import and then *freezes* what
it created (:func:`gc.freeze`, meant for exactly this: objects that live as long as the
process). Later collections skip the frozen objects, so they cost what the run's own
objects cost. Only a scope that imported something new freezes, so the garbage of a
sweep's earlier jobs is never frozen with them (it would never be collected).

It also leaves Keras's scikit-learn wrappers out of Keras's import until something uses
them (:func:`~mnist_experiments.compat.lazy.deferred_keras_wrappers`): ~0.5 s less before
the first epoch.

Light: the standard library only.
"""

from __future__ import annotations

import contextlib
import gc
import sys
from typing import Iterator

from mnist_experiments.compat.lazy import deferred_keras_wrappers

# an import that loads fewer modules than this is not a heavy one: nothing is frozen
NEW_MODULES_TO_FREEZE = 100


@contextlib.contextmanager
def heavy_imports() -> Iterator[None]:
    """Run the block with the cyclic collector paused (and Keras's scikit-learn wrappers
    deferred); if it imported new modules, freeze every object it left alive out of later
    collections."""
    enabled = gc.isenabled()
    before = len(sys.modules)
    gc.disable()
    try:
        with deferred_keras_wrappers():
            yield
    finally:
        if len(sys.modules) - before >= NEW_MODULES_TO_FREEZE:
            gc.freeze()
        if enabled:
            gc.enable()
