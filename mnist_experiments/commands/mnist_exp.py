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
    if not help_cache.plain_help(sys.argv[1:]):
        from mnist_experiments.commands import train

        return train.main()
    if help_cache.print_cached():
        return None
    from mnist_experiments.commands import train

    with help_cache.keeping():  # Hydra's text, kept for the next --help
        train.main()
    return None


if __name__ == "__main__":
    main()
