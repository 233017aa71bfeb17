"""``mnist-exp --help`` without Hydra: Hydra's own text, kept from its last run.

Hydra writes the app's help by composing the whole config: it imports Hydra,
OmegaConf and every installed Hydra plugin, and reads every config file, ~0.5 s on a
small machine, for a text that changes only when its inputs do. A plain
``mnist-exp --help`` (or ``-h``, and no other argument) prints the text that Hydra
wrote the last time, kept in the cache dir (``$MNIST_EXP_CACHE_DIR``, see
:func:`mnist_experiments.tracking.store_template.cache_dir`) under a key of
everything the text depends on:

- this package's files (its ``.py`` files and the config tree): names, sizes, mtimes;
- the Hydra plugins installed (the ``hydra_plugins`` directories' entries);
- Hydra's, OmegaConf's and Python's installed files (their ``__init__``'s size and
  mtime, which every install or upgrade rewrites), and the interpreter's prefix.

Any change to one of them is a new key: Hydra writes the text again (and it is kept).
Any other argument (an override, ``--config-dir``, ``--hydra-help``) takes Hydra's
path and is never cached. A cache that cannot be read or written changes nothing but
the time.

Light: the standard library only.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import sys
import time
from importlib import util
from pathlib import Path
from typing import Iterator, List, Optional

PLAIN_HELP = (["--help"], ["-h"])
SUBDIR = "help"
STALE_SECONDS = 7 * 24 * 3600  # another key's text, kept this long (other venvs)


def plain_help(argv: List[str]) -> bool:
    """Whether ``argv`` (without the program) asks for the app's help and nothing else."""
    return argv in PLAIN_HELP


def print_cached(entry: Optional[Path]) -> bool:
    """Print the kept help text of ``entry`` (:func:`entry`) if there is one; whether it
    did."""
    if entry is None:
        return False
    try:
        text = entry.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    sys.stdout.write(text)
    sys.stdout.flush()
    return True


@contextlib.contextmanager
def keeping(entry: Optional[Path]) -> Iterator[None]:
    """Inside the block, what is printed is also collected; kept as ``entry`` if the
    block ends without an error (Hydra exits with status 0 after the help)."""
    collected = io.StringIO()
    real = sys.stdout

    class _Tee(io.TextIOBase):
        def write(self, text: str) -> int:
            collected.write(text)
            return real.write(text)

        def flush(self) -> None:
            real.flush()

    with contextlib.redirect_stdout(_Tee()):
        try:
            yield
        except SystemExit as exc:
            if exc.code in (None, 0):
                _keep(entry, collected.getvalue())
            raise
        else:
            _keep(entry, collected.getvalue())


def _keep(path: Optional[Path], text: str) -> None:
    if path is None or not text:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}")
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, path)  # atomic: a concurrent --help reads all or nothing
    except OSError:
        return
    for old in path.parent.glob("mnist-exp-*.txt"):  # texts of an edit or install ago
        with contextlib.suppress(OSError):
            if old != path and time.time() - old.stat().st_mtime > STALE_SECONDS:
                old.unlink()


def entry() -> Optional[Path]:
    """The cache file of the current key (None if the key cannot be computed): computed
    once a process, before Hydra runs."""
    from mnist_experiments.tracking.store_template import cache_dir

    key = _key()
    return cache_dir() / SUBDIR / f"mnist-exp-{key}.txt" if key is not None else None


def _key() -> Optional[str]:
    digest = hashlib.sha256()
    digest.update(f"{sys.version}\0{sys.prefix}\0".encode())
    try:
        for name in ("mnist_experiments", "mnist_experiments.conf"):
            for location in _locations(name):
                _add_tree(digest, location)
        for location in _locations("hydra_plugins"):
            _add_tree(digest, location)
        for name in ("hydra", "omegaconf"):
            spec = util.find_spec(name)
            if spec is None or spec.origin is None:
                return None
            _add_file(digest, Path(spec.origin))
    except (OSError, ImportError, ValueError):
        return None
    return digest.hexdigest()[:32]


def _locations(package: str) -> List[Path]:
    spec = util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(package)
    return sorted(Path(p) for p in spec.submodule_search_locations)


def _add_tree(digest, root: Path) -> None:
    """Every file's name, size and mtime under ``root`` (compiled files aside)."""
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if not name.endswith((".pyc", ".pyo")):
                _add_file(digest, Path(folder, name))


def _add_file(digest, path: Path) -> None:
    stat = path.stat()
    digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
