"""A quiet terminal: TensorFlow's start-up noise, Keras' retracing warnings, temp files.

Installed by ``mnist_experiments/__init__.py``, so every process that imports anything
of this package (every command, the store helper, reproduce's and joblib's workers)
gets it before TensorFlow can be imported:

* ``TF_CPP_MIN_LOG_LEVEL`` defaults to 1 (TensorFlow's C++ INFO lines off; its warnings
  and errors stay visible). TensorFlow 2.21 logs through absl, which writes "WARNING: All
  log messages before absl::InitializeLog() is called are written to STDERR" and the
  INFO line "oneDNN custom operations are on" (twice, once per shared library) while
  ``import tensorflow`` runs, before that level is applied. So the first import of
  TensorFlow runs with file descriptor 2 captured, and what it wrote is replayed
  without the lines below ``TF_CPP_MIN_LOG_LEVEL`` and absl's notice. Everything else
  (Python warnings, C++ warnings and errors) is written to stderr unchanged.
* Keras' ``TensorFlowTrainer`` functions are new ``tf.function`` objects for every
  model, and TensorFlow counts their tracings per Python code object, so k-fold
  cross-validation and Optuna trials (a new model per fold or trial, by design) trigger
  "5 out of the last 5 calls to <function TensorFlowTrainer...> triggered tf.function
  retracing" warnings that point at no problem. Only that warning about Keras' own
  trainer functions is dropped; a retracing warning about any other function stays.
* :func:`remove_autograph_files`: autograph writes ``__autograph_generated_file*.py``
  into the temp dir and removes them at exit, which ``os._exit`` skips.

Light: imports nothing heavy (the standard library only).
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import io
import logging
import os
import re
import sys
import tempfile
from typing import Iterator, List

DEFAULT_TF_LOG_LEVEL = "1"  # TensorFlow's C++ INFO lines off; warnings and errors shown

ABSL_NOTICE = (b"WARNING: All log messages before absl::InitializeLog() is called are "
               b"written to STDERR")
# absl's prefix before its log is initialized ("I0000 00:00:1796236067.453467   10697
# port.cc:153] ...": the seconds since the epoch) and TSL's older one ("2026-12-02
# 18:00:00.123456: I tensorflow/core/...")
_ABSL_LINE = re.compile(rb"^([IWEF])\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\] ")
_TSL_LINE = re.compile(rb"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: ([IWEF]) \S+:\d+\] ")
# the second line of cpu_feature_guard's INFO record
_CONTINUATION = b"To enable the following instructions:"
_SEVERITY = {b"I": 0, b"W": 1, b"E": 2, b"F": 3}


def min_log_level() -> int:
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", DEFAULT_TF_LOG_LEVEL))
    except ValueError:
        return 0


def startup_lines_kept(output: bytes, level: int) -> bytes:
    """``output`` (what ``import tensorflow`` wrote to fd 2) without absl's notice and the
    C++ log lines below ``level``; every other line is kept."""
    kept: List[bytes] = []
    dropped = False
    for line in output.splitlines(keepends=True):
        bare = line.rstrip(b"\r\n")
        match = _ABSL_LINE.match(bare) or _TSL_LINE.match(bare)
        if bare == ABSL_NOTICE:
            dropped = True
        elif match:
            dropped = _SEVERITY[match.group(1)] < level
        else:
            dropped = dropped and bare.startswith(_CONTINUATION)
        if not dropped:
            kept.append(line)
    return b"".join(kept)


@contextlib.contextmanager
def filtered_stderr() -> Iterator[None]:
    """Capture file descriptor 2 (C++ and Python alike) in a temporary file; on the way
    out, write back what :func:`startup_lines_kept` keeps."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no usable stderr: nothing to filter
        yield
        return
    capture = tempfile.TemporaryFile()
    try:
        os.dup2(capture.fileno(), 2)
        yield
    finally:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        capture.seek(0)
        output = capture.read()
        capture.close()
        kept = startup_lines_kept(output, min_log_level())
        if kept:
            os.write(2, kept)


class _QuietLoader(importlib.abc.Loader):
    """Runs TensorFlow's ``__init__`` inside :func:`filtered_stderr`."""

    def __init__(self, loader: importlib.abc.Loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        uninstall()  # once: TensorFlow is being imported
        module.__loader__ = module.__spec__.loader = self.loader  # the real one, afterwards
        with filtered_stderr():
            self.loader.exec_module(module)


class _QuietTensorFlowFinder(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` the regular way and wraps its loader. It stays in place until
    TensorFlow is imported: a library that only asks whether TensorFlow is installed
    (``importlib.util.find_spec``) gets the wrapped spec, which imports nothing."""

    def __init__(self) -> None:
        self._finding = False

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "tensorflow" or self._finding:
            return None
        self._finding = True  # the regular finders, not this one again
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self._finding = False
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


class KerasRetracingFilter(logging.Filter):
    """Drops TensorFlow's retracing warning about Keras' per-model trainer functions."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: let logging report it
            return True
        return not ("triggered tf.function retracing" in message
                    and "TensorFlowTrainer." in message)


_FINDER = _QuietTensorFlowFinder()
_RETRACING = KerasRetracingFilter()


def install() -> None:
    """Set the environment and the hooks above (idempotent; cheap)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", DEFAULT_TF_LOG_LEVEL)
    if "tensorflow" not in sys.modules and _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
    tf_logger = logging.getLogger("tensorflow")
    if _RETRACING not in tf_logger.filters:
        tf_logger.addFilter(_RETRACING)


def dump_on_crash() -> bool:
    """On a native crash (SIGSEGV, SIGABRT, ... in TensorFlow, say), print where every
    Python thread was to stderr (:mod:`faulthandler`) before the process dies, instead of
    nothing (a sweep job's log said only "srun: error: task 0: Aborted"). Called by
    ``mnist-exp`` and in each of its jobs, never on import: a program that imports this
    package keeps its own handlers. False when stderr has no file descriptor."""
    import faulthandler

    if faulthandler.is_enabled():
        return True
    try:
        faulthandler.enable(file=sys.stderr, all_threads=True)
    except (AttributeError, ValueError, OSError, io.UnsupportedOperation):
        return False
    return True


def uninstall() -> None:
    with contextlib.suppress(ValueError):
        sys.meta_path.remove(_FINDER)


def remove_autograph_files() -> int:
    """Remove the temporary ``__autograph_generated_file*.py`` modules TensorFlow wrote
    in this process (it removes them at exit, which ``os._exit`` skips); their number."""
    temp = os.path.realpath(tempfile.gettempdir())
    removed = 0
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if not name.startswith("__autograph_generated_file") or not path:
            continue
        if os.path.dirname(os.path.realpath(path)) != temp:
            continue
        with contextlib.suppress(OSError):
            os.remove(path)
            removed += 1
    return removed
