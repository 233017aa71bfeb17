"""Reproducing a recorded result on this machine (``mnist-exp-reproduce``, grading).

- :mod:`.original`: the original run, config file or Hydra run dir, and what is known
  about it;
- :mod:`.run`: the checks, the exact re-run and the calibration runs;
- :mod:`.workers`: the fresh processes those runs run in;
- :mod:`.verdict`: REPRODUCED, CONSISTENT or INCONSISTENT, and why.
"""

from mnist_experiments.workflows.reproduce.run import Request, Result, reproduce

__all__ = ["Request", "Result", "reproduce"]
