"""mnist-experiments' Optuna sweeper for Hydra (``hydra/sweeper=optuna``)."""
