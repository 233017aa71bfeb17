"""Keras's scikit-learn wrappers, imported when first used instead of with Keras.

``import keras`` imports ``keras.wrappers`` (``SKLearnClassifier`` and friends), which
imports scikit-learn and, through it, ``scipy.stats``: about 0.5 s of a ~3.2 s Keras
import on a 2-core machine, paid before the first epoch of every run although nothing in
a run uses the wrappers. Within :func:`deferred_keras_wrappers`, an import of Keras
makes those two modules as module objects whose code runs at the first use of an
attribute they do not have yet, so ``keras.wrappers.SKLearnClassifier`` still works, a
moment later. scikit-learn is then imported where the run first needs it (the test
metrics, after the fit). Not :class:`importlib.util.LazyLoader`: any attribute of its
modules, ``__file__`` included, runs them, and TensorFlow's autograph reads the
``__file__`` of every module in ``sys.modules`` before the first epoch.

Private layout, not API: Keras 3 (checked on 3.15) imports ``keras.wrappers`` and
``keras._tf_keras.keras.wrappers`` from its package ``__init__``. Another layout leaves
this a no-op; ``tests/test_compat.py`` says so.

Light: the standard library only.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import sys
import threading
import types
from typing import Any, ContextManager, Iterator, Tuple

KERAS_WRAPPERS = ("keras.wrappers", "keras._tf_keras.keras.wrappers")
_LOCK = threading.RLock()
_RUNNING = "__mnist_experiments_running__"


class _DeferredModule(types.ModuleType):
    """A module whose code has not run yet: the first attribute it lacks runs it.

    Its ``__file__``, ``__spec__`` and other import attributes are there from the start,
    so code that scans ``sys.modules`` for them (TensorFlow's autograph does, on every
    function it converts) does not run it.
    """

    def __getattr__(self, name: str) -> Any:
        with _LOCK:  # another thread waits here until the code has run
            if type(self) is _DeferredModule:
                if self.__dict__.get(_RUNNING):  # its own code, while it runs
                    raise AttributeError(f"partially initialized module {self.__name__!r} "
                                         f"has no attribute {name!r}")
                self.__dict__[_RUNNING] = True
                try:
                    self.__spec__.loader.run(self)
                    self.__class__ = types.ModuleType
                finally:
                    del self.__dict__[_RUNNING]
        return getattr(self, name)


class _DeferringLoader(importlib.abc.Loader):
    """Makes the module as ``loader`` would and leaves running its code for later."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        module.__class__ = _DeferredModule

    def run(self, module: types.ModuleType) -> None:
        self.loader.exec_module(module)  # (if it fails, the next use tries again)
        module.__spec__.loader = module.__loader__ = self.loader


class _DeferredModules(importlib.abc.MetaPathFinder):
    """Finds ``names`` as the other finders do, with their code left for later."""

    def __init__(self, names: Tuple[str, ...]) -> None:
        self.names = frozenset(names)

    def find_spec(self, name, path, target=None):
        if name not in self.names:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _DeferringLoader(spec.loader)
                return spec
        return None


def deferred_keras_wrappers() -> ContextManager[None]:
    """Within the block, an import of Keras leaves its scikit-learn wrappers for later.

    Nothing changes if Keras was imported before the block.
    """
    return deferred_modules(KERAS_WRAPPERS)


@contextlib.contextmanager
def deferred_modules(names: Tuple[str, ...]) -> Iterator[None]:
    """Within the block, importing one of ``names`` makes its module and leaves running its
    code to the first use of an attribute it does not have yet."""
    finder = _DeferredModules(names)
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
