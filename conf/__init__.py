# Makes conf/ importable as mnist_experiments.conf (see pyproject.toml), so an installed package finds its configs.
