"""``python -m mnist_experiments``: the same Hydra app as ``mnist-exp``."""

from mnist_experiments.commands.mnist_exp import main

if __name__ == "__main__":
    main()
