"""The ``mnist-exp`` console script: a plain ``--help`` answered from
:mod:`~mnist_experiments.commands.help_cache` (without importing Hydra), everything
else by the Hydra app of :mod:`~mnist_experiments.commands.train`.

Light: the standard library and the help cache only, until it hands over.
"""

from __future__ import annotations

import sys

from mnist_experiments.commands import help_cache


def main() -> None:
    """``mnist-exp``."""
    plain = help_cache.plain_help(sys.argv[1:])
    kept = help_cache.entry() if plain else None
    if plain and help_cache.print_cached(kept):
        return None
    from mnist_experiments.commands import train

    if not plain:
        return train.main()
    with help_cache.keeping(kept):  # Hydra's text, kept for the next --help
        train.main()
    return None


if __name__ == "__main__":
    main()
